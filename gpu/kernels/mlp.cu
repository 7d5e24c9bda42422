// mlp.cu - batch scoring with the int8 MLP, bit-exact with hftaccel.golden.mlp.IntegerMLP.run.
//
// One thread per sample (grid-stride). The whole model (packed int8 weights, int32 biases,
// requantization shifts, the layer program) is staged in shared memory once per block, then
// every sample runs: float32 grid of the int32 features -> input requantization
// (rne_shift by the per-feature shift, clip to the int8 range) -> per dense layer:
// int8 x int8 -> int32 dot products four at a time (__dp4a; exact: the model loader bounds
// every partial sum by 2**24), optional ReLU, optional requantization (rne_shift, clip) back to
// int8 for the next layer -> the last layer's int32 outputs are the logits.
//
// The program (i32, built by hftaccel.backends.gpu from IntegerMLP.layers):
//   [0] layers  [1] n_in  [2] input lo  [3] input hi, then per layer HFT_MLP_LAYER_FIELDS:
//   n_in, n_out, relu, post (0 none, 1 rne_shift + clip, 2 clip), lo, hi, weight word offset,
//   bias offset, shift offset. Input shifts sit at shifts[0 .. n_in). Weights are row-major
//   (out, in) int8, each row padded with zeros to a multiple of 4 and packed little-endian into
//   i32 words.
//
// Fused path: hft_mlp_int8 reads the feature matrix where the feature kernels left it in
// device memory (same stream, no copy in between); only features and logits come back. Fusing
// it further, into the last feature kernel, was considered and left out: the feature columns
// come from several kernels separated by grid-wide scans, so the earliest place every column of
// a row exists is a kernel of its own anyway; folding the MLP into it would save one launch and
// a 76-byte re-read per record while adding ~26 KiB of shared memory to the window blocks.
#include "hft_common.cuh"

#define HFT_MLP_LAYER_FIELDS 9

static __device__ __forceinline__ i32 hft_pack_byte(i32 word, int k, i64 v) {
    return (i32)((u32)word | ((u32)(v & 0xff) << (8 * k)));
}

extern "C" __global__ void hft_mlp_int8(int n, const i32* x, int x_stride, i32* logits,
                                        const i32* prog, int n_prog, const i32* wq,
                                        int n_words, const i32* bias, int n_bias,
                                        const i32* shifts, int n_shifts) {
    __shared__ i32 s_prog[HFT_MLP_MAX_PROG];
    __shared__ i32 s_w[HFT_MLP_MAX_WORDS];
    __shared__ i32 s_b[HFT_MLP_MAX_BIAS];
    __shared__ i32 s_sh[HFT_MLP_MAX_SHIFTS];
    for (int k = threadIdx.x; k < n_prog; k += blockDim.x) s_prog[k] = prog[k];
    for (int k = threadIdx.x; k < n_words; k += blockDim.x) s_w[k] = wq[k];
    for (int k = threadIdx.x; k < n_bias; k += blockDim.x) s_b[k] = bias[k];
    for (int k = threadIdx.x; k < n_shifts; k += blockDim.x) s_sh[k] = shifts[k];
    __syncthreads();

    const int layers = s_prog[0], n_in = s_prog[1];
    const i64 in_lo = s_prog[2], in_hi = s_prog[3];
    i32 act[HFT_MLP_MAX_WIDTH / 4];
    i32 nxt[HFT_MLP_MAX_WIDTH / 4];
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (i64)gridDim.x * blockDim.x) {
        const i32* xi = x + i * x_stride;
        for (int w = 0; w < (n_in + 3) / 4; ++w) act[w] = 0;
        for (int f = 0; f < n_in; ++f) {
            i64 v = hft_rne_shift(hft_float32_grid(xi[f]), s_sh[f]);
            act[f >> 2] = hft_pack_byte(act[f >> 2], f & 3, hft_saturate(v, in_lo, in_hi));
        }
        for (int l = 0; l < layers; ++l) {
            const i32* L = s_prog + 4 + HFT_MLP_LAYER_FIELDS * l;
            const int li = L[0], lo_ = L[1], relu = L[2], post = L[3];
            const i64 lo = L[4], hi = L[5];
            const i32* W = s_w + L[6];
            const i32* B = s_b + L[7];
            const i32* SH = s_sh + L[8];
            const int words = (li + 3) / 4;
            const bool last = l == layers - 1;
            for (int w = 0; w < (lo_ + 3) / 4; ++w) nxt[w] = 0;
            for (int o = 0; o < lo_; ++o) {
                i32 acc = B[o];
                const i32* row = W + o * words;
                for (int w = 0; w < words; ++w) acc = __dp4a(act[w], row[w], acc);
                i64 v = acc;
                if (relu && v < 0) v = 0;
                if (post == 1) v = hft_saturate(hft_rne_shift(v, SH[o]), lo, hi);
                else if (post == 2) v = hft_saturate(v, lo, hi);
                if (last) logits[i * lo_ + o] = (i32)v;
                else nxt[o >> 2] = hft_pack_byte(nxt[o >> 2], o & 3, v);
            }
            if (!last)
                for (int w = 0; w < (lo_ + 3) / 4; ++w) act[w] = nxt[w];
        }
    }
}
