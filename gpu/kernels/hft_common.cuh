// hft_common.cuh - integer types and the fixed-point primitives shared by the kernels.
//
// Every constant comes from hftaccel.spec: the host (hftaccel.backends.gpu.spec_defines) passes
// them as -D definitions to NVRTC, nvcc and g++ alike, so nothing here restates the spec. The
// primitives are those of the hftaccel.spec.features docstring (round_shift, saturate, log2q,
// imbalance, to_ticks) and of hftaccel.golden.mlp (rne_shift, float32 grid), written for int64
// exactly as the golden model computes them.
#pragma once

#ifndef __CUDACC__
#include "hft_emu.cuh"
#endif

typedef long long i64;
typedef unsigned long long u64;
typedef int i32;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef signed char i8;

#ifndef HFT_SPEC_DEFINES
#error "compile with the -D definitions of hftaccel.backends.gpu.spec_defines()"
#endif

#define HFT_HISTORY (HFT_WINDOW_LONG - 1)   // window values carried per symbol across chunks

// Per-symbol scalar state (i64 columns), the device twin of the golden FeatureEngine state.
#define HFT_S_COUNT 0
#define HFT_S_LAST_TS 1
#define HFT_S_LAST_MID2 2
#define HFT_S_IBUY 3
#define HFT_S_ISELL 4
#define HFT_S_LAST_TRADE 5
#define HFT_S_PREV 6                                  // bid p, bid q, ask p, ask q per OFI level
#define HFT_NS (HFT_S_PREV + 4 * HFT_OFI_LEVELS)

// Book record layout (byte offsets and stride), passed per launch: the depth is a run-time value.
#define HFT_L_STRIDE 0
#define HFT_L_TS 1
#define HFT_L_SHARES 2
#define HFT_L_MT 3
#define HFT_L_SIDE 4
#define HFT_L_BP 5
#define HFT_L_BQ 6
#define HFT_L_AP 7
#define HFT_L_AQ 8
#define HFT_L_N 9

static __device__ __forceinline__ const u8* hft_rec(const u8* rec, const i32* lay, i64 r) {
    return rec + r * (i64)lay[HFT_L_STRIDE];
}
static __device__ __forceinline__ u32 hft_u32(const u8* p, int off) {
    return *(const u32*)(p + off);
}
static __device__ __forceinline__ i64 hft_level(const u8* p, int off, int level) {
    return (i64)*(const u32*)(p + off + 4 * level);
}

static __device__ __forceinline__ i64 hft_round_shift(i64 x, int s) {
    if (s == 0) return x;
    i64 h = (i64)1 << (s - 1);
    if (x >= 0) return (x + h) >> s;
    return -((-x + h) >> s);
}

static __device__ __forceinline__ i64 hft_saturate(i64 x, i64 lo, i64 hi) {
    return x > hi ? hi : (x < lo ? lo : x);
}

static __device__ __forceinline__ int hft_bit_length(i64 x) {
    return x <= 0 ? 0 : 64 - __clzll(x);
}

static __device__ __forceinline__ i64 hft_log2q(i64 x, const i32* table) {
    int e = hft_bit_length(x) - 1;
    const i64 mask = ((i64)1 << HFT_LOG2_MANT_BITS) - 1;
    i64 m = e >= HFT_LOG2_MANT_BITS ? (x >> (e - HFT_LOG2_MANT_BITS)) & mask
                                    : (x << (HFT_LOG2_MANT_BITS - e)) & mask;
    return (i64)e * ((i64)1 << HFT_LOG2_FRAC_BITS) + (i64)__ldg(table + m);
}

static __device__ __forceinline__ i64 hft_imbalance(i64 b, i64 a, const i32* log2t,
                                                    const i32* tanht) {
    if (b == a) return 0;
    if (a == 0) return HFT_IMB_ONE;
    if (b == 0) return -HFT_IMB_ONE;
    i64 d = hft_log2q(b, log2t) - hft_log2q(a, log2t);
    i64 k = (d >= 0 ? d : -d) >> HFT_IMB_INDEX_SHIFT;
    i64 v = k < HFT_IMB_TABLE_SIZE ? (i64)__ldg(tanht + k) : (i64)HFT_IMB_ONE;
    return d > 0 ? v : (d < 0 ? -v : 0);
}

static __device__ __forceinline__ i64 hft_to_ticks(i64 x, int frac_bits, int half) {
    return hft_round_shift(x * (i64)HFT_TICK_RECIP, HFT_TICK_RECIP_SHIFT - frac_bits + half);
}

// rne(a * 2**-n), round half to even; n <= 0 multiplies by 2**-n (golden _rne_shift1).
static __device__ __forceinline__ i64 hft_rne_shift(i64 a, int n) {
    if (n <= 0) return a * ((i64)1 << -n);
    i64 q = a >> n;
    i64 r = a - q * ((i64)1 << n);
    i64 h = (i64)1 << (n - 1);
    if (r > h || (r == h && (q & 1) == 1)) q += 1;
    return q;
}

// The integer value of float32(x) (RNE to 24 significant bits), golden float32_grid.
static __device__ __forceinline__ i64 hft_float32_grid(i64 v) {
    i64 m = v < 0 ? -v : v;
    if (m >= ((i64)1 << HFT_FLOAT32_EXACT_BITS)) {
        int e = hft_bit_length(m) - HFT_FLOAT32_EXACT_BITS;
        m = hft_rne_shift(m, e) * ((i64)1 << e);
    }
    return v < 0 ? -m : m;
}
