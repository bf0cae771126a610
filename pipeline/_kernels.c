/* Single-pass reductions over activation tensors: see pipeline/kernels.py, which loads this
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

/* Min and max order keys of float32 values given as bit patterns: keys[0] = min, keys[1] = max.
 * Keys order like the values (NaNs beyond the infinities); integer min/max vectorise. */
KERNEL void fc_minmax(const int32_t *bits, int64_t n, int32_t *keys) {
    int32_t lo[LANES], hi[LANES];
    for (int k = 0; k < LANES; k++) {
        lo[k] = INT32_MAX;
        hi[k] = INT32_MIN;
    }
    int64_t m = n - n % LANES;
    for (int64_t i = 0; i < m; i += LANES) {
        for (int k = 0; k < LANES; k++) {
            int32_t key = order_key(bits[i + k]);
            lo[k] = key < lo[k] ? key : lo[k];
            hi[k] = key > hi[k] ? key : hi[k];
        }
    }
    for (int64_t i = m; i < n; i++) {
        int32_t key = order_key(bits[i]);
        lo[0] = key < lo[0] ? key : lo[0];
        hi[0] = key > hi[0] ? key : hi[0];
    }
    for (int k = 1; k < LANES; k++) {
        lo[0] = lo[k] < lo[0] ? lo[k] : lo[0];
        hi[0] = hi[k] > hi[0] ? hi[k] : hi[0];
    }
    keys[0] = lo[0];
    keys[1] = hi[0];
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
        if (keys != NULL) {
            const int32_t *bb = (const int32_t *)(const void *)xb;
            for (int i = 0; i < m; i++) {
                int32_t key = order_key(bb[i]);
                kmin = key < kmin ? key : kmin;
                kmax = key > kmax ? key : kmax;
            }
        }
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

/* A reference tensor x and the tensors compared with it, in one pass over blocks of x.
 *
 * out[0..2]: sum of x^2 (float64), count of x outside [lo, hi], max |x|.
 * For each of the nv compared tensors ys[v], out[3 + 3v ..]: sum of e^2 and of y^2 (float64)
 * and max |e|, e = x - y in float32. Where fq[v] is non-zero, y is first fake-quantized with
 * params[6v ..] = (min, max, scale, shift, offset, half_even) as the simulation graph does it:
 * clip(y, min, max) / scale + shift, then floor (shift = 0.5 - offset) or round half to even
 * (shift = -offset), + offset, * scale, all in float32.
 *
 * Lanes: plain comparisons and the reference add element i to lane i % 8 up to the last whole
 * group of 8 and the rest to lane 0; fake-quant comparisons add element i to lane i % 8. */
KERNEL void fc_compare(const float *x, int64_t n, float lo, float hi, int32_t nv, const float **ys,
                const int32_t *fq, const double *params, double *out) {
    double sxx[LANES] = {0}, see[nv][LANES], syy[nv][LANES];
    int64_t outside[LANES] = {0};
    float peak = 0.0f, worst[nv][LANES];
    memset(see, 0, sizeof see);
    memset(syy, 0, sizeof syy);
    memset(worst, 0, sizeof worst);
    const int64_t whole = n - n % LANES;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        int64_t b1 = b0 + BLOCK < n ? b0 + BLOCK : n;
        int64_t end = b1 < whole ? b1 : whole; /* lane-grouped part of this block */
        for (int64_t i = b0; i < end; i += LANES) {
            for (int k = 0; k < LANES; k++) {
                float v = x[i + k];
                double d = v;
                sxx[k] += d * d;
                outside[k] += (v < lo) | (v > hi);
                float a = fabsf(v);
                peak = a > peak ? a : peak;
            }
        }
        for (int64_t i = end; i < b1; i++) {
            float v = x[i];
            sxx[0] += (double)v * (double)v;
            outside[0] += (v < lo) | (v > hi);
            float a = fabsf(v);
            peak = a > peak ? a : peak;
        }
        for (int32_t t = 0; t < nv; t++) {
            const float *y = ys[t];
            double *se = see[t], *sy = syy[t];
            float *w = worst[t];
            if (!fq[t]) {
                for (int64_t i = b0; i < end; i += LANES) {
                    for (int k = 0; k < LANES; k++) {
                        float yv = y[i + k];
                        float e = x[i + k] - yv;
                        double d = e, f = yv;
                        se[k] += d * d;
                        sy[k] += f * f;
                        float a = fabsf(e);
                        w[k] = a > w[k] ? a : w[k];
                    }
                }
                for (int64_t i = end; i < b1; i++) {
                    float yv = y[i];
                    float e = x[i] - yv;
                    se[0] += (double)e * (double)e;
                    sy[0] += (double)yv * (double)yv;
                    float a = fabsf(e);
                    w[0] = a > w[0] ? a : w[0];
                }
                continue;
            }
            const double *p = params + 6 * t;
            const float a = (float)p[0], b = (float)p[1], s = (float)p[2], h = (float)p[3],
                        o = (float)p[4];
            const int half_even = p[5] != 0.0;
            for (int64_t i = b0; i < b1; i++) {
                int k = (int)(i & (LANES - 1));
                float c = y[i];
                c = c < a ? a : c;
                c = c > b ? b : c;
                float tq = c / s + h;
                float q = half_even ? rintf(tq) : floorf(tq);
                float yq = (q + o) * s;
                float e = x[i] - yq;
                double d = e, f = yq;
                se[k] += d * d;
                sy[k] += f * f;
                float m = fabsf(e);
                w[k] = m > w[k] ? m : w[k];
            }
        }
    }
    int64_t total = 0;
    for (int k = 0; k < LANES; k++) total += outside[k];
    out[0] = lane_sum(sxx);
    out[1] = (double)total;
    out[2] = peak;
    for (int32_t t = 0; t < nv; t++) {
        float m = 0.0f;
        for (int k = 0; k < LANES; k++) m = worst[t][k] > m ? worst[t][k] : m;
        out[3 + 3 * t] = lane_sum(see[t]);
        out[4 + 3 * t] = lane_sum(syy[t]);
        out[5 + 3 * t] = m;
    }
}
