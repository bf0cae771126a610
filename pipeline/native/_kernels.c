/* Single-pass reductions over activation tensors: see pipeline/native/kernels.py, which loads this
 * file's shared library with ctypes and documents every function.
 *
 * Determinism: float64 sums run over LANES fixed lanes in a fixed order, then the lanes are
 * added in order; counts are integers. Built without fast-math and with -ffp-contract=off
 * (setup.py): no reassociation, no fused multiply-add, so every machine gets the same bits. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 8
#define BLOCK 2048
/* Each kernel is compiled twice, for AVX2 and for the baseline, and the loader picks per CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(FIELDCAL_NO_CLONES)
#define KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define KERNEL
#endif
#define SUBS 8 /* interleaved sub-histograms: 8 x 514 int32 stay in L1 */

static inline int32_t order_key(int32_t b) { return b ^ ((b >> 31) & 0x7FFFFFFF); }

static inline double lane_sum(const double *acc) {
    double s = 0.0;
    for (int k = 0; k < LANES; k++) s += acc[k];
    return s;
}

/* Widens [*lo, *hi] to the order keys of m float32 values given as bit patterns. Keys order
 * like the values (NaNs beyond the infinities); integer min/max vectorise in any order. */
static inline void key_range(const int32_t *bits, int64_t m, int32_t *lo, int32_t *hi) {
    int32_t kmin = *lo, kmax = *hi;
    for (int64_t i = 0; i < m; i++) {
        int32_t key = order_key(bits[i]);
        kmin = key < kmin ? key : kmin;
        kmax = key > kmax ? key : kmax;
    }
    *lo = kmin;
    *hi = kmax;
}

/* Min and max order keys of float32 values given as bit patterns: keys[0] = min, keys[1] = max. */
KERNEL void fc_minmax(const int32_t *bits, int64_t n, int32_t *keys) {
    keys[0] = INT32_MAX;
    keys[1] = INT32_MIN;
    key_range(bits, n, &keys[0], &keys[1]);
}

/* Counts of x in `bins` bins of `width` from `start`, bin index floor((x - start) / width) in
 * float32 (libpymo's); values outside and NaNs are not counted. Returns 0, or -1 when out of
 * memory. Bin indices are computed a block at a time (vectorised; floor as truncation corrected
 * for negatives, exact on the clamped range), then counted into SUBS interleaved sub-histograms:
 * runs of equal values (ReLU zeros) would otherwise make every increment wait for the last.
 * With `keys` non-NULL, the same pass also gives fc_minmax's keys (x read once). */
KERNEL int fc_histogram(const float *x, int64_t n, float start, float width, int32_t bins,
                        int64_t *counts, int32_t *keys) {
    int64_t stride = (int64_t)bins + 2;
    int32_t *sub = calloc((size_t)(SUBS * stride), sizeof(int32_t));
    if (sub == NULL) return -1;
    int32_t idx[BLOCK];
    const float low = -1.0f, top = (float)bins;
    int32_t kmin = INT32_MAX, kmax = INT32_MIN;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        int m = (int)(n - b0 < BLOCK ? n - b0 : BLOCK);
        const float *xb = x + b0;
        if (keys != NULL) key_range((const int32_t *)(const void *)xb, m, &kmin, &kmax);
        for (int i = 0; i < m; i++) {
            float q = (xb[i] - start) / width;
            q = q > low ? q : low; /* NaN lands here, below the support */
            q = q < top ? q : top;
            int32_t c = (int32_t)q;
            c -= (float)c > q;
            idx[i] = c + 1;
        }
        int i = 0;
        for (; i + SUBS <= m; i += SUBS) {
            for (int k = 0; k < SUBS; k++) sub[k * stride + idx[i + k]] += 1;
        }
        for (; i < m; i++) sub[idx[i]] += 1;
    }
    for (int32_t j = 0; j < bins; j++) {
        int64_t c = 0;
        for (int k = 0; k < SUBS; k++) c += sub[k * stride + j + 1];
        counts[j] = c;
    }
    free(sub);
    if (keys != NULL) {
        keys[0] = kmin;
        keys[1] = kmax;
    }
    return 0;
}

struct fq {
    float lo, hi, scale, shift, offset;
};

/* fq(y) for y[b0 .. b1) into out (at most BLOCK values); `half_even` is a constant at each
 * call site, so both versions of this plain elementwise loop vectorise. */
static inline __attribute__((always_inline)) void fake_quant_block(
    const float *restrict y, int64_t b0, int64_t b1, const struct fq *f, int half_even,
    float *restrict out) {
    const float a = f->lo, b = f->hi, s = f->scale, h = f->shift, o = f->offset;
    const int m = (int)(b1 - b0);
    const float *yb = y + b0;
    for (int i = 0; i < m; i++) {
        float c = yb[i];
        c = c < a ? a : c;
        c = c > b ? b : c;
        float tq = c / s + h;
        float q = half_even ? rintf(tq) : floorf(tq);
        out[i] = (q + o) * s;
    }
}

typedef float v8f __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Eight float32 lanes, and the same lanes widened to float64 in two halves (lanes 0-3, 4-7):
 * GCC vector extensions, so both builds vectorise and each lane keeps its own order. */
static inline v8f load8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline v4d low4(v8f v) {
    return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4d);
}
static inline v4d high4(v8f v) {
    return __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4d);
}
static inline v8f vabs(v8f v) { return (v8f)((v8i)v & 0x7FFFFFFF); }
static inline v8f vmax(v8f acc, v8f a) { /* a > acc ? a : acc, lane by lane (NaN: acc) */
    v8i m = a > acc;
    return (v8f)(((v8i)a & m) | ((v8i)acc & ~m));
}

struct sums {
    v4d se0, se1, sy0, sy1;
    v8f worst;
};

static inline double lane_sum4(v4d a, v4d b) {
    double lanes[LANES] = {a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]};
    return lane_sum(lanes);
}

/* Keep the `ntop` largest keys seen so far, in descending order, in best[0 .. *filled). */
static inline void keep_top(uint32_t key, uint32_t *best, int32_t ntop, int32_t *filled) {
    int32_t j = *filled;
    if (j == ntop) {
        if (key <= best[ntop - 1]) return;
        j = ntop - 1;
    } else {
        (*filled)++;
    }
    for (; j > 0 && best[j - 1] < key; j--) best[j] = best[j - 1];
    best[j] = key;
}

/* A reference tensor x and the tensors compared with it, in one pass over blocks of x.
 *
 * out[0..2]: sum of x^2 (float64), count of x outside [lo, hi], max |x|.
 * For each of the nv compared tensors ys[v], out[3 + 3v ..]: sum of e^2 and of y^2 (float64)
 * and max |e|, e = x - y in float32. Where fq[v] is non-zero, y is first fake-quantized with
 * params[6v ..] = (min, max, scale, shift, offset, half_even) as the simulation graph does it:
 * clip(y, min, max) / scale + shift, then floor (shift = 0.5 - offset) or round half to even
 * (shift = -offset), + offset, * scale, all in float32.
 *
 * tops[0 .. ntop): the ntop largest |x[i]| over i = 0, step, 2 step, ... in descending order
 * (NaN above +inf, as a sort puts it; fewer than ntop samples leave the rest 0); step >= 1.
 *
 * Lanes: plain comparisons and the reference add element i to lane i % 8 up to the last whole
 * group of 8 and the rest to lane 0; fake-quant comparisons add element i to lane i % 8. */
KERNEL void fc_compare(const float *x, int64_t n, float lo, float hi, int32_t nv, const float **ys,
                       const int32_t *fq, const double *params, double *out, int64_t step,
                       int32_t ntop, float *tops) {
    v4d sxx0 = {0}, sxx1 = {0};
    v8i outside = {0};
    v8f peak = {0};
    struct sums acc[nv > 0 ? nv : 1];
    memset(acc, 0, sizeof acc);
    float yq[BLOCK];
    uint32_t best[ntop > 0 ? ntop : 1];
    int32_t filled = 0;
    const int64_t whole = n - n % LANES;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        int64_t b1 = b0 + BLOCK < n ? b0 + BLOCK : n;
        int64_t end = b1 < whole ? b1 : whole; /* lane-grouped part of this block */
        for (int64_t i = b0; i < end; i += LANES) {
            v8f v = load8(x + i);
            v4d d0 = low4(v), d1 = high4(v);
            sxx0 += d0 * d0;
            sxx1 += d1 * d1;
            outside -= (v < lo) | (v > hi);
            peak = vmax(peak, vabs(v));
        }
        for (int64_t i = end; i < b1; i++) {
            float v = x[i];
            sxx0[0] += (double)v * (double)v;
            outside[0] += (v < lo) | (v > hi);
            float a = fabsf(v);
            peak[0] = a > peak[0] ? a : peak[0];
        }
        for (int64_t i = (b0 + step - 1) / step * step; ntop > 0 && i < b1; i += step) {
            uint32_t key;
            float a = fabsf(x[i]);
            memcpy(&key, &a, sizeof key); /* |x| as bits: ordered, NaN above +inf */
            keep_top(key, best, ntop, &filled);
        }
        for (int32_t t = 0; t < nv; t++) {
            const float *y = ys[t]; /* y[i] for i in [b0, b1) */
            if (fq[t]) {
                const double *p = params + 6 * t;
                const struct fq f = {(float)p[0], (float)p[1], (float)p[2], (float)p[3],
                                     (float)p[4]};
                if (p[5] != 0.0)
                    fake_quant_block(y, b0, b1, &f, 1, yq);
                else
                    fake_quant_block(y, b0, b1, &f, 0, yq);
                y = yq - b0;
            }
            struct sums a = acc[t];
            for (int64_t i = b0; i < end; i += LANES) {
                v8f yv = load8(y + i);
                v8f e = load8(x + i) - yv;
                v4d e0 = low4(e), e1 = high4(e), y0 = low4(yv), y1 = high4(yv);
                a.se0 += e0 * e0;
                a.se1 += e1 * e1;
                a.sy0 += y0 * y0;
                a.sy1 += y1 * y1;
                a.worst = vmax(a.worst, vabs(e));
            }
            for (int64_t i = end; i < b1; i++) {
                /* the last elements: lane 0 for plain comparisons, lane i % 8 for fake-quant */
                int k = fq[t] ? (int)(i & (LANES - 1)) : 0;
                float yv = y[i];
                float e = x[i] - yv;
                double d = e, g = yv;
                if (k < 4) {
                    a.se0[k] += d * d;
                    a.sy0[k] += g * g;
                } else {
                    a.se1[k - 4] += d * d;
                    a.sy1[k - 4] += g * g;
                }
                float m = fabsf(e);
                a.worst[k] = m > a.worst[k] ? m : a.worst[k];
            }
            acc[t] = a;
        }
    }
    int64_t total = 0;
    float top = 0.0f;
    for (int k = 0; k < LANES; k++) {
        total += outside[k];
        top = peak[k] > top ? peak[k] : top;
    }
    out[0] = lane_sum4(sxx0, sxx1);
    out[1] = (double)total;
    out[2] = top;
    for (int32_t k = 0; k < ntop; k++) {
        uint32_t key = k < filled ? best[k] : 0;
        memcpy(&tops[k], &key, sizeof key);
    }
    for (int32_t t = 0; t < nv; t++) {
        float m = 0.0f;
        for (int k = 0; k < LANES; k++) m = acc[t].worst[k] > m ? acc[t].worst[k] : m;
        out[3 + 3 * t] = lane_sum4(acc[t].se0, acc[t].se1);
        out[4 + 3 * t] = lane_sum4(acc[t].sy0, acc[t].sy1);
        out[5 + 3 * t] = m;
    }
}
