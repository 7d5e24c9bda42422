// features.cu - the fixed-point microstructure features of hftaccel.spec.features, bit-exact
// with hftaccel.golden.features, for many symbols x many events.
//
// Layout (built by the host, hftaccel.backends.gpu): a chunk of n book records is visited in
// symbol-major order: perm[i] is the chunk index of the i-th record once the records are
// stably sorted by stock locate; segment s (one symbol) holds i in [seg_start[s],
// seg_start[s+1]) and owns state slot seg_slot[s] (state persists across chunks). The "ext"
// arrays put HFT_HISTORY slots before every segment, holding what the symbol carries from
// earlier chunks (its last HFT_HISTORY window values; the last valid mid and trade time in the
// slot right before the segment): element i of segment s sits at ext position
// p = i + HFT_HISTORY * (s + 1), and its segment's ext region starts at
// seg_start[s] + HFT_HISTORY * s. Every look-back of a feature then stays inside one region.
//
// Kernels, in launch order:
//   hft_feat_history    carry-in: state -> history slots              (thread per slot)
//   hft_feat_point      stateless features, OFI, signed volume, mid, trade marks, dt bucket
//                                                                       (thread per record)
//   hft_scan_max_*      inclusive max-scan of "index of the last valid mid / last trade":
//                       a plain (unsegmented) scan is enough because indices increase and a
//                       result before the region start means "none in this symbol"
//                       (block scan in shared memory, block carries, apply)
//   hft_feat_mid        mid change and time since the last trade        (thread per record)
//   hft_feat_windows    window sums: block-local prefix scan over a tile plus a
//                       HFT_WINDOW_LONG halo in shared memory; S_K = P[p] - P[p-K] (exact:
//                       integer sums, and the halo covers the longest window)
//   hft_feat_intensity  decayed intensities: the recurrence rounds and saturates at every step,
//                       so it is not an affine map and a scan would not be bit-exact; it runs
//                       sequentially within runs that start at a symbol's first record of the
//                       chunk or at an exact reset (a dt bucket whose decay factor is 0:
//                       round_shift(I * 0) = 0 whatever I was), parallel over those runs
//   hft_feat_carry      carry-out: the symbol's state after its last record (thread per symbol)
#include "hft_common.cuh"

// HFT_FEAT_BLOCK (threads per block of every feature kernel) and HFT_SCAN_ITEMS (elements per
// thread in the max-scan) come with the -D definitions: the host sizes its grids with them.
#define HFT_WIN_TILE HFT_FEAT_BLOCK              // ext positions per window block
#define HFT_WIN_SPAN (HFT_WIN_TILE + HFT_WINDOW_LONG)
#define HFT_SCAN_TILE (HFT_FEAT_BLOCK * HFT_SCAN_ITEMS)
#define HFT_EMPTY_ASK ((i64)1 << 32)

#if HFT_WIN_SPAN > 2 * HFT_FEAT_BLOCK
#error "a window block owns at most two shared entries per thread"
#endif

static __device__ __forceinline__ i64 hft_ofi_event(i64 pb, i64 qb, i64 pa, i64 qa, i64 pb0,
                                                    i64 qb0, i64 pa0, i64 qa0) {
    i64 e = 0;
    if (pb >= pb0) e += qb;
    if (pb <= pb0) e -= qb0;
    if (pa <= pa0) e -= qa;
    if (pa >= pa0) e += qa0;
    return e;
}

static __device__ __forceinline__ bool hft_is_trade(int mt) {
    return mt == HFT_MT_E || mt == HFT_MT_C || mt == HFT_MT_P;
}

extern "C" __global__ void hft_feat_history(int nseg, const i32* seg_start, const i32* seg_slot,
                                            const i64* st, const i64* ring, i64* ext_v,
                                            i64* ext_mid2, i32* ext_midx, i64* ext_trade,
                                            i32* ext_tidx, i32* ext_elem) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (i64)nseg * HFT_HISTORY) return;
    int s = (int)(t / HFT_HISTORY);
    int h = (int)(t % HFT_HISTORY);
    i64 slot = seg_slot[s];
    i64 p = (i64)seg_start[s] + (i64)HFT_HISTORY * s + h;
    for (int q = 0; q < HFT_NQ; ++q)
        ext_v[p * HFT_NQ + q] = ring[(slot * HFT_HISTORY + h) * HFT_NQ + q];
    ext_elem[p] = -1;
    if (h == HFT_HISTORY - 1) {
        i64 mid2 = st[slot * HFT_NS + HFT_S_LAST_MID2];
        i64 trade = st[slot * HFT_NS + HFT_S_LAST_TRADE];
        ext_mid2[p] = mid2;
        ext_midx[p] = mid2 != 0 ? (i32)p : -1;
        ext_trade[p] = trade;
        ext_tidx[p] = trade >= 0 ? (i32)p : -1;
    } else {
        ext_mid2[p] = 0;
        ext_midx[p] = -1;
        ext_trade[p] = -1;
        ext_tidx[p] = -1;
    }
}

extern "C" __global__ void hft_feat_point(int n, const u8* rec, const i32* lay, const i32* perm,
                                          const i32* seg_of, const i32* seg_start,
                                          const i32* seg_slot, const i64* st, const i32* log2t,
                                          const i32* tanht, i32* out, i64* ext_v, i64* ext_mid2,
                                          i32* ext_midx, i64* ext_trade, i32* ext_tidx,
                                          i32* ext_elem, i32* bucket, u64* anomalies) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int s = seg_of[i];
    i64 p = (i64)i + (i64)HFT_HISTORY * (s + 1);
    i64 r = perm[i];
    const u8* x = hft_rec(rec, lay, r);
    i64 ts = (i64)*(const u64*)(x + lay[HFT_L_TS]);
    int mt = x[lay[HFT_L_MT]];
    int side = x[lay[HFT_L_SIDE]];
    i64 shares = (i64)hft_u32(x, lay[HFT_L_SHARES]);
    i64 bid1 = hft_level(x, lay[HFT_L_BP], 0);
    i64 ask1 = hft_level(x, lay[HFT_L_AP], 0);
    bool two_sided = bid1 != 0 && ask1 != 0;
    i32* o = out + r * HFT_N_FEATURES;

    // spread, imbalances, micro-price
    i64 spread = two_sided ? hft_saturate(hft_to_ticks(ask1 - bid1, HFT_SPREAD_FRAC, 0),
                                          HFT_SPREAD_LO, HFT_SPREAD_HI)
                           : (i64)HFT_SPREAD_HI;
    o[HFT_C_SPREAD] = (i32)spread;
    i64 imb1 = hft_imbalance(hft_level(x, lay[HFT_L_BQ], 0), hft_level(x, lay[HFT_L_AQ], 0),
                             log2t, tanht);
    o[HFT_C_IMB1] = (i32)hft_saturate(imb1, HFT_IMB_LO, HFT_IMB_HI);
    i64 bw = 0, aw = 0;
    for (int l = 0; l < HFT_DEPTH_IMB_LEVELS; ++l) {
        bw += hft_level(x, lay[HFT_L_BQ], l) << (HFT_DEPTH_IMB_LEVELS - 1 - l);
        aw += hft_level(x, lay[HFT_L_AQ], l) << (HFT_DEPTH_IMB_LEVELS - 1 - l);
    }
    o[HFT_C_IMBD] = (i32)hft_saturate(hft_imbalance(bw, aw, log2t, tanht), HFT_IMB_LO,
                                      HFT_IMB_HI);
    o[HFT_C_MPM] = two_sided ? (i32)hft_saturate(hft_round_shift(spread * imb1, HFT_MPM_SHIFT),
                                                 HFT_MPM_LO, HFT_MPM_HI)
                             : 0;

    // order-flow imbalance against the symbol's previous record (this chunk or carried)
    bool first = i == seg_start[s];
    const i64* prev_state = st + (i64)seg_slot[s] * HFT_NS;
    const u8* y = first ? x : hft_rec(rec, lay, perm[i - 1]);
    i64* v = ext_v + p * HFT_NQ;
    for (int m = 0; m < HFT_OFI_LEVELS; ++m) {
        i64 pb = hft_level(x, lay[HFT_L_BP], m), qb = hft_level(x, lay[HFT_L_BQ], m);
        i64 pa = hft_level(x, lay[HFT_L_AP], m), qa = hft_level(x, lay[HFT_L_AQ], m);
        if (pa == 0) pa = HFT_EMPTY_ASK;
        i64 pb0, qb0, pa0, qa0;
        if (first) {
            pb0 = prev_state[HFT_S_PREV + m];
            qb0 = prev_state[HFT_S_PREV + HFT_OFI_LEVELS + m];
            pa0 = prev_state[HFT_S_PREV + 2 * HFT_OFI_LEVELS + m];
            qa0 = prev_state[HFT_S_PREV + 3 * HFT_OFI_LEVELS + m];
        } else {
            pb0 = hft_level(y, lay[HFT_L_BP], m);
            qb0 = hft_level(y, lay[HFT_L_BQ], m);
            pa0 = hft_level(y, lay[HFT_L_AP], m);
            qa0 = hft_level(y, lay[HFT_L_AQ], m);
            if (pa0 == 0) pa0 = HFT_EMPTY_ASK;
        }
        v[m] = hft_ofi_event(pb, qb, pa, qa, pb0, qb0, pa0, qa0);
    }

    // signed traded volume
    i64 tv = 0;
    bool trade = hft_is_trade(mt);
    if (trade) {
        if (side == HFT_SIDE_BUY) tv = -shares;
        else if (side == HFT_SIDE_SELL) tv = shares;
        else atomicAdd(anomalies + 1, 1ULL);
    }
    v[HFT_OFI_LEVELS] = tv;

    // marks for the last-valid-mid and last-trade scans
    ext_mid2[p] = two_sided ? bid1 + ask1 : 0;
    ext_midx[p] = two_sided ? (i32)p : -1;
    ext_trade[p] = ts;
    ext_tidx[p] = trade ? (i32)p : -1;
    ext_elem[p] = i;

    // decay bucket of dt
    i64 dt = 0;
    if (!first) {
        dt = ts - (i64)*(const u64*)(y + lay[HFT_L_TS]);
    } else if (prev_state[HFT_S_COUNT] > 0) {
        dt = ts - prev_state[HFT_S_LAST_TS];
    }
    if (dt < 0) {
        atomicAdd(anomalies + 0, 1ULL);
        dt = 0;
    }
    int b = 0;
    if (dt >= ((i64)1 << HFT_DECAY_MIN_LOG2)) {
        b = hft_bit_length(dt) - HFT_DECAY_MIN_LOG2;
        if (b > HFT_DECAY_BUCKETS - 1) b = HFT_DECAY_BUCKETS - 1;
    }
    bucket[i] = b;
}

// ---- inclusive max-scan of an i32 array (three launches) -----------------------------------

// part[t] <- max(x of threads 0..t): Hillis-Steele steps in shared memory, a barrier around
// each; every thread of the block must call it.
static __device__ __forceinline__ void hft_block_max_scan(i32* part, i32 x) {
    part[threadIdx.x] = x;
    __syncthreads();
    for (int off = 1; off < HFT_FEAT_BLOCK; off <<= 1) {
        i32 left = threadIdx.x >= (unsigned)off ? part[threadIdx.x - off] : -1;
        __syncthreads();
        if (left > part[threadIdx.x]) part[threadIdx.x] = left;
        __syncthreads();
    }
}

// Block-level inclusive max-scan over a tile of HFT_SCAN_TILE elements; agg[b] = tile maximum.
extern "C" __global__ void hft_scan_max_block(i64 m, i32* a, i32* agg) {
    __shared__ i32 part[HFT_FEAT_BLOCK];
    i64 base = (i64)blockIdx.x * HFT_SCAN_TILE + (i64)threadIdx.x * HFT_SCAN_ITEMS;
    i32 run = -1;
    for (int k = 0; k < HFT_SCAN_ITEMS; ++k) {
        if (base + k < m) {
            i32 x = a[base + k];
            run = x > run ? x : run;
            a[base + k] = run;
        }
    }
    hft_block_max_scan(part, run);
    i32 carry = threadIdx.x > 0 ? part[threadIdx.x - 1] : -1;
    for (int k = 0; k < HFT_SCAN_ITEMS; ++k)
        if (base + k < m && carry > a[base + k]) a[base + k] = carry;
    if (threadIdx.x == HFT_FEAT_BLOCK - 1) agg[blockIdx.x] = part[threadIdx.x];
}

// One block: agg[b] <- max of agg[0..b-1] (exclusive), tile by tile with a running carry.
extern "C" __global__ void hft_scan_max_carry(int nb, i32* agg) {
    __shared__ i32 part[HFT_FEAT_BLOCK];
    __shared__ i32 carry;
    if (threadIdx.x == 0) carry = -1;
    __syncthreads();
    for (int base = 0; base < nb; base += HFT_FEAT_BLOCK) {
        int j = base + threadIdx.x;
        hft_block_max_scan(part, j < nb ? agg[j] : -1);
        i32 before = threadIdx.x > 0 ? part[threadIdx.x - 1] : -1;
        if (carry > before) before = carry;
        if (j < nb) agg[j] = before;
        __syncthreads();
        if (threadIdx.x == HFT_FEAT_BLOCK - 1 && part[threadIdx.x] > carry)
            carry = part[threadIdx.x];
        __syncthreads();
    }
}

extern "C" __global__ void hft_scan_max_apply(i64 m, i32* a, const i32* agg) {
    i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= m) return;
    i32 c = agg[j / HFT_SCAN_TILE];
    if (c > a[j]) a[j] = c;
}

// ---- mid change, time since trade ----------------------------------------------------------

extern "C" __global__ void hft_feat_mid(int n, const i32* perm, const i32* seg_of,
                                        const i32* seg_start, const i64* ext_mid2,
                                        const i32* ext_midx, const i64* ext_trade,
                                        const i32* ext_tidx, i64* ext_v, i32* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int s = seg_of[i];
    i64 p = (i64)i + (i64)HFT_HISTORY * (s + 1);
    i64 region = (i64)seg_start[s] + (i64)HFT_HISTORY * s;
    i64 dm = 0;
    if (ext_midx[p] == (i32)p) {               // two-sided now
        i32 last = ext_midx[p - 1];            // last valid mid before this record
        if (last >= region) dm = ext_mid2[p] - ext_mid2[last];
    }
    ext_v[p * HFT_NQ + HFT_OFI_LEVELS + 1] = dm;
    ext_v[p * HFT_NQ + HFT_OFI_LEVELS + 2] = dm >= 0 ? dm : -dm;

    i32* o = out + (i64)perm[i] * HFT_N_FEATURES;
    i32 lt = ext_tidx[p];
    if (lt >= region) {
        i64 age = ext_trade[p] - ext_trade[lt];
        if (age < 0) age = 0;
        o[HFT_C_TAGE] = (i32)hft_saturate(hft_bit_length(age), HFT_TA_LO, HFT_TA_HI);
    } else {
        o[HFT_C_TAGE] = HFT_TRADE_AGE_NONE;
    }
}

// ---- window sums ---------------------------------------------------------------------------

extern "C" __global__ void hft_feat_windows(i64 m, const i64* ext_v, const i32* ext_elem,
                                            const i32* perm, i32* out) {
    __shared__ i64 pre[HFT_NQ][HFT_WIN_SPAN];
    i64 tile0 = (i64)blockIdx.x * HFT_WIN_TILE;
    i64 first = tile0 - HFT_WINDOW_LONG;       // pre[.][k] covers ext position first + k
    int t = threadIdx.x;
    int k1 = t + HFT_FEAT_BLOCK;               // second entry owned by this thread, if any
    bool own1 = k1 < HFT_WIN_SPAN;
    for (int q = 0; q < HFT_NQ; ++q) {
        i64 p0 = first + t, p1 = first + k1;
        pre[q][t] = (p0 >= 0 && p0 < m) ? ext_v[p0 * HFT_NQ + q] : 0;
        if (own1) pre[q][k1] = (p1 >= 0 && p1 < m) ? ext_v[p1 * HFT_NQ + q] : 0;
    }
    __syncthreads();
    // Hillis-Steele inclusive prefix sums over HFT_WIN_SPAN entries
    for (int off = 1; off < HFT_WIN_SPAN; off <<= 1) {
        i64 add0[HFT_NQ], add1[HFT_NQ];
        for (int q = 0; q < HFT_NQ; ++q) {
            add0[q] = t >= off ? pre[q][t - off] : 0;
            add1[q] = (own1 && k1 >= off) ? pre[q][k1 - off] : 0;
        }
        __syncthreads();
        for (int q = 0; q < HFT_NQ; ++q) {
            pre[q][t] += add0[q];
            if (own1) pre[q][k1] += add1[q];
        }
        __syncthreads();
    }
    i64 p = tile0 + t;
    if (p >= m) return;
    i32 e = ext_elem[p];
    if (e < 0) return;                         // a history slot
    i32* o = out + (i64)perm[e] * HFT_N_FEATURES;
    int k = t + HFT_WINDOW_LONG;
    for (int w = 0; w < 2; ++w) {
        int kw = w == 0 ? HFT_WINDOW_SHORT : HFT_WINDOW_LONG;
        int base = w == 0 ? HFT_C_WIN_S : HFT_C_WIN_L;
        i64 sum[HFT_NQ];
        for (int q = 0; q < HFT_NQ; ++q) sum[q] = pre[q][k] - pre[q][k - kw];
        for (int q = 0; q < HFT_OFI_LEVELS; ++q)
            o[base + q] = (i32)hft_saturate(sum[q], HFT_OFI_LO, HFT_OFI_HI);
        o[base + HFT_OFI_LEVELS] = (i32)hft_saturate(sum[HFT_OFI_LEVELS], HFT_TV_LO, HFT_TV_HI);
        o[base + HFT_OFI_LEVELS + 1] = (i32)hft_saturate(
            hft_to_ticks(sum[HFT_OFI_LEVELS + 1], HFT_DM_FRAC, 1), HFT_DM_LO, HFT_DM_HI);
        o[base + HFT_OFI_LEVELS + 2] = (i32)hft_saturate(
            hft_to_ticks(sum[HFT_OFI_LEVELS + 2], HFT_DM_FRAC, 1), HFT_RV_LO, HFT_RV_HI);
    }
}

// ---- intensities ---------------------------------------------------------------------------

extern "C" __global__ void hft_feat_intensity(int n, const u8* rec, const i32* lay,
                                              const i32* perm, const i32* seg_of,
                                              const i32* seg_start, const i32* seg_slot,
                                              const i64* st, const i32* bucket,
                                              const i32* decay, int reset_bucket, i32* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int s = seg_of[i];
    int start = seg_start[s];
    if (i != start && bucket[i] != reset_bucket) return;   // not the head of a run
    int end = seg_start[s + 1];
    i64 ib = 0, is = 0;
    if (i == start) {
        ib = st[(i64)seg_slot[s] * HFT_NS + HFT_S_IBUY];
        is = st[(i64)seg_slot[s] * HFT_NS + HFT_S_ISELL];
    }
    for (int j = i; j < end; ++j) {
        if (j != i && bucket[j] == reset_bucket) break;    // the next run's head
        i64 r = perm[j];
        int side = hft_rec(rec, lay, r)[lay[HFT_L_SIDE]];
        i64 dec = __ldg(decay + bucket[j]);
        ib = hft_round_shift(ib * dec, HFT_DECAY_FRAC_BITS);
        is = hft_round_shift(is * dec, HFT_DECAY_FRAC_BITS);
        if (side == HFT_SIDE_BUY) ib += (i64)1 << HFT_INTENSITY_FRAC_BITS;
        else if (side == HFT_SIDE_SELL) is += (i64)1 << HFT_INTENSITY_FRAC_BITS;
        ib = hft_saturate(ib, HFT_IN_LO, HFT_IN_HI);
        is = hft_saturate(is, HFT_IN_LO, HFT_IN_HI);
        out[r * HFT_N_FEATURES + HFT_C_IBUY] = (i32)ib;
        out[r * HFT_N_FEATURES + HFT_C_ISELL] = (i32)is;
    }
}

// ---- carry-out -----------------------------------------------------------------------------

extern "C" __global__ void hft_feat_carry(int nseg, const u8* rec, const i32* lay,
                                          const i32* perm, const i32* seg_start,
                                          const i32* seg_slot, const i64* ext_v,
                                          const i64* ext_mid2, const i32* ext_midx,
                                          const i64* ext_trade, const i32* ext_tidx,
                                          const i32* out, i64* st, i64* ring) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= nseg) return;
    int first = seg_start[s], last = seg_start[s + 1] - 1;
    i64 region = (i64)first + (i64)HFT_HISTORY * s;
    i64 pl = (i64)last + (i64)HFT_HISTORY * (s + 1);
    i64 slot = seg_slot[s];
    i64* S = st + slot * HFT_NS;
    i64 r = perm[last];
    const u8* x = hft_rec(rec, lay, r);
    S[HFT_S_COUNT] += last - first + 1;
    S[HFT_S_LAST_TS] = (i64)*(const u64*)(x + lay[HFT_L_TS]);
    i32 lm = ext_midx[pl];
    S[HFT_S_LAST_MID2] = lm >= region ? ext_mid2[lm] : 0;
    i32 lt = ext_tidx[pl];
    S[HFT_S_LAST_TRADE] = lt >= region ? ext_trade[lt] : -1;
    S[HFT_S_IBUY] = out[r * HFT_N_FEATURES + HFT_C_IBUY];
    S[HFT_S_ISELL] = out[r * HFT_N_FEATURES + HFT_C_ISELL];
    for (int m = 0; m < HFT_OFI_LEVELS; ++m) {
        i64 pa = hft_level(x, lay[HFT_L_AP], m);
        S[HFT_S_PREV + m] = hft_level(x, lay[HFT_L_BP], m);
        S[HFT_S_PREV + HFT_OFI_LEVELS + m] = hft_level(x, lay[HFT_L_BQ], m);
        S[HFT_S_PREV + 2 * HFT_OFI_LEVELS + m] = pa == 0 ? HFT_EMPTY_ASK : pa;
        S[HFT_S_PREV + 3 * HFT_OFI_LEVELS + m] = hft_level(x, lay[HFT_L_AQ], m);
    }
    for (int h = 0; h < HFT_HISTORY; ++h)
        for (int q = 0; q < HFT_NQ; ++q)
            ring[(slot * HFT_HISTORY + h) * HFT_NQ + q] =
                ext_v[(pl - (HFT_HISTORY - 1) + h) * HFT_NQ + q];
}
