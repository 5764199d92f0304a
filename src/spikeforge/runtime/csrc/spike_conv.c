/* Event-driven float32 convolution over binary spikes, for training (spikeforge/spike_conv.py).
 *
 * Input x: NHWC float32 [n][h][w][ci] whose values are exactly 0 or 1 (a neuron's spikes); weights
 * wt: [kh][kw][ci][cop] float32, the output channels zero-padded to cop (a multiple of 16). Padding is
 * zeros, dilation 1, one group. With e = (image i, position (iy, ix), channel c) the events of x:
 *
 *   forward       out[i][y][x][o] = Σ_{e in the window of (y, x)} wt[iy − y·sh + ph][ix − x·sw + pw][c][o]
 *   weight grad   dw[a][b][c][o]  = Σ_{e} g[i][(iy + ph − a) / sh][(ix + pw − b) / sw][o]
 *                                   (where the division is exact and the position inside the output)
 *
 * i.e. the dense convolution and the weight half of its backward, with only additions, and only for the
 * inputs that spiked. The forward gathers per output (accumulators in registers): for each kernel row,
 * the events of the kw input positions it covers are contiguous in a position-major event list, so one
 * loop covers them, each event carrying its weight row's offset within that kernel row. The weight
 * gradient buckets an image's events by channel and stride phase and, per (channel, tap), sums the gradient
 * rows of the outputs the tap's phase reached (an out-of-range output reads a zero row instead of branching).
 *
 * Order of sums: a forward output adds its events in kernel-row, then position, then channel order, on one
 * thread: the result does not depend on the thread count. The weight gradient sums each thread's images
 * (dealt round-robin) and then the threads' partial sums in thread order: deterministic for a given
 * thread count, like the dense kernels it replaces.
 *
 * Threads: the OpenMP team of the caller (torch's pool, as in events.c). Return values: the number of
 * events (forward), 0 (weight grad), −1 if a value of x is neither 0 nor 1, −2 if memory ran out.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#define MEMBER omp_get_thread_num()
#define TEAM omp_get_num_threads()
#define TEAM_CAP omp_get_max_threads()
#else
#define MEMBER 0
#define TEAM 1
#define TEAM_CAP 1
#endif

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
#define ONE_BITS 0x3F800000u /* 1.0f */
#define LANES 16             /* floats per vector */
#define MAX_VECTORS 8        /* output channels per pass: 8 vectors = 128 channels of accumulators */
#define FIRST_LOOK 4096 /* entries checked on one thread before the parallel count */
#define NOT_BINARY (-1)
#define NO_MEMORY (-2)
#define POS(iy, ix) ((int32_t)(((iy) << 16) | (ix))) /* a position packed in 32 bits (h, w < 32768) */

/* Nonzero entries of x[0 .. len), or NOT_BINARY if one is neither 0.0f nor 1.0f (bit patterns; −0 counts
 * as not binary). */
int64_t spike_count(const float *restrict x, int64_t len) {
    const uint32_t *b = (const uint32_t *)x;
    for (int64_t i = 0; i < len && i < FIRST_LOOK; ++i) /* most non-spike inputs show it at once */
        if (b[i] != 0 && b[i] != ONE_BITS) return NOT_BINARY;
    int64_t total = 0, bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, bad)
    for (int64_t i = 0; i < len; ++i) {
        const uint32_t v = b[i];
        total += v != 0;
        bad += v != 0 && v != ONE_BITS;
    }
    return bad ? NOT_BINARY : total;
}

/* Position-major events of one image: start[p] .. start[p + 1] index position p's, ch[] their channels. */
static int64_t scan_image(const float *restrict x, int64_t hw, int64_t ci, int32_t *restrict start,
                          int32_t *restrict ch) {
    const uint32_t *b = (const uint32_t *)x;
    int64_t k = 0;
#if defined(__AVX512F__)
    const __m512i one = _mm512_set1_epi32((int)ONE_BITS);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __mmask16 bad = 0;
#endif
    for (int64_t p = 0; p < hw; ++p) {
        start[p] = (int32_t)k;
        const uint32_t *row = b + p * ci;
        int64_t c = 0;
#if defined(__AVX512F__)
        for (; c + LANES <= ci; c += LANES) { /* branch-free: the spiking lanes' channels, stored compressed */
            const __m512i v = _mm512_loadu_si512(row + c);
            const __mmask16 nz = _mm512_test_epi32_mask(v, v);
            bad |= _mm512_mask_cmpneq_epi32_mask(nz, v, one);
            _mm512_mask_compressstoreu_epi32(ch + k, nz, _mm512_add_epi32(lanes, _mm512_set1_epi32((int)c)));
            k += __builtin_popcount(nz);
        }
        if (bad) return NOT_BINARY;
#endif
        for (; c < ci; ++c) {
            const uint32_t v = row[c];
            if (!v) continue;
            if (v != ONE_BITS) return NOT_BINARY;
            ch[k++] = (int32_t)c;
        }
    }
    start[hw] = (int32_t)k;
    return k;
}

typedef struct {
    int64_t h, w, ci, co, cop, kh, kw, sh, sw, ph, pw, oh, ow;
} Geometry;

/* One image's outputs, channels [t, t + NV·16): per output and kernel row, one loop over the events of the
 * covered input positions; key[e] = ix·ci·cop + c·cop (the event's weight row within a kernel row). */
#define DEFINE_GATHER(NV)                                                                                    \
    static void gather_##NV(const Geometry *g, const int32_t *restrict start, const int32_t *restrict key,  \
                            const float *restrict wt, int64_t t, float *restrict out) {                      \
        const int64_t colstep = g->ci * g->cop, rowstep = g->kw * colstep;                                   \
        for (int64_t y = 0; y < g->oh; ++y)                                                                  \
            for (int64_t x = 0; x < g->ow; ++x) {                                                            \
                v16 acc[NV];                                                                                 \
                for (int q = 0; q < NV; ++q) acc[q] = (v16){0};                                              \
                const int64_t x0 = x * g->sw - g->pw;                                                        \
                const int64_t lo = x0 < 0 ? 0 : x0, hi = x0 + g->kw > g->w ? g->w : x0 + g->kw;              \
                for (int64_t a = 0; a < g->kh && lo < hi; ++a) {                                             \
                    const int64_t iy = y * g->sh - g->ph + a;                                                \
                    if (iy < 0 || iy >= g->h) continue;                                                      \
                    const int64_t shift = t + a * rowstep - x0 * colstep; /* ≥ 0 once key[e] is added */   \
                    const int32_t *p = start + iy * g->w;                                                    \
                    for (int32_t e = p[lo]; e < p[hi]; ++e) {                                                \
                        const v16u *r = (const v16u *)(wt + (shift + key[e]));                               \
                        for (int q = 0; q < NV; ++q) acc[q] += r[q];                                         \
                    }                                                                                        \
                }                                                                                            \
                float *dst = out + (y * g->ow + x) * g->co + t;                                              \
                if (g->co - t >= NV * LANES) {                                                               \
                    for (int q = 0; q < NV; ++q) ((v16u *)dst)[q] = acc[q];                                  \
                } else {                                                                                     \
                    float tmp[NV * LANES];                                                                   \
                    memcpy(tmp, acc, sizeof tmp);                                                            \
                    memcpy(dst, tmp, (size_t)(g->co - t) * sizeof(float));                                   \
                }                                                                                            \
            }                                                                                                \
    }
DEFINE_GATHER(1)
DEFINE_GATHER(2)
DEFINE_GATHER(3)
DEFINE_GATHER(4)
DEFINE_GATHER(5)
DEFINE_GATHER(6)
DEFINE_GATHER(7)
DEFINE_GATHER(8)
typedef void (*gather_fn)(const Geometry *, const int32_t *, const int32_t *, const float *, int64_t, float *);
static const gather_fn GATHER[MAX_VECTORS + 1] = {0,        gather_1, gather_2, gather_3, gather_4,
                                                  gather_5, gather_6, gather_7, gather_8};

static inline int64_t vectors_at(int64_t cop, int64_t t) {
    const int64_t nv = (cop - t) / LANES;
    return nv > MAX_VECTORS ? MAX_VECTORS : nv;
}

int64_t spike_conv_forward(const float *restrict x, int64_t n, int64_t h, int64_t w, int64_t ci,
                           const float *restrict wt, int64_t co, int64_t cop, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw, int64_t oh, int64_t ow, float *restrict out) {
    const Geometry g = {h, w, ci, co, cop, kh, kw, sh, sw, ph, pw, oh, ow};
    int64_t total = 0, bad = 0, failed = 0;
#pragma omp parallel reduction(+ : total, bad, failed)
    {
        int32_t *start = malloc(sizeof(int32_t) * (size_t)(h * w + 1));
        int32_t *key = malloc(sizeof(int32_t) * (size_t)(h * w * ci));
        if (!start || !key) failed = 1;
#pragma omp for schedule(static, 1)
        for (int64_t i = 0; i < n; ++i) {
            if (failed || bad) continue;
            const int64_t events = scan_image(x + i * h * w * ci, h * w, ci, start, key);
            if (events < 0) {
                bad = 1;
                continue;
            }
            total += events;
            for (int64_t iy = 0; iy < h; ++iy) /* channel -> offset of its weight row within a kernel row */
                for (int64_t ix = 0; ix < w; ++ix)
                    for (int32_t e = start[iy * w + ix]; e < start[iy * w + ix + 1]; ++e)
                        key[e] = (int32_t)((ix * ci + key[e]) * cop);
            for (int64_t t = 0; t < cop; t += MAX_VECTORS * LANES)
                GATHER[vectors_at(cop, t)](&g, start, key, wt, t, out + i * oh * ow * co);
        }
        free(start);
        free(key);
    }
    return failed ? NO_MEMORY : bad ? NOT_BINARY : total;
}

/* One image's weight gradient, channels [t, t + NV·16), added to d: per channel c and tap (a, b), the sum of
 * the gradient rows rows[o] (cop floats apart) of the outputs reached by c's events of the one stride phase
 * the tap connects (ytab/xtab: the output row·ow / column an input row/column reaches through a tap, −1 past
 * the border; −1 reads the zero row `zrow` instead of branching). */
#define DEFINE_WEIGHT_GRAD(NV)                                                                               \
    static void weight_grad_##NV(const Geometry *g, const int32_t *restrict cstart, const int32_t *restrict cpos, \
                                 const int32_t *restrict ytab, const int32_t *restrict xtab,                 \
                                 const int32_t *restrict phase, const float *restrict rows,                  \
                                 const float *restrict zrow, int64_t t, float *restrict d) {                 \
        for (int64_t c = 0; c < g->ci; ++c)                                                                  \
            for (int64_t a = 0; a < g->kh; ++a)                                                              \
                for (int64_t b = 0; b < g->kw; ++b) {                                                        \
                    const int64_t k = c * g->sh * g->sw + phase[a * g->kw + b];                              \
                    if (cstart[k] == cstart[k + 1]) continue;                                                \
                    v16 acc[NV];                                                                             \
                    for (int q = 0; q < NV; ++q) acc[q] = (v16){0};                                          \
                    for (int32_t e = cstart[k]; e < cstart[k + 1]; ++e) {                                    \
                        const int32_t ty = ytab[(cpos[e] >> 16) * g->kh + a];                                \
                        const int32_t tx = xtab[(cpos[e] & 0xFFFF) * g->kw + b];                             \
                        const float *row = (ty | tx) < 0 ? zrow : rows + ((int64_t)ty + tx) * g->cop;        \
                        const v16u *r = (const v16u *)(row + t);                                             \
                        for (int q = 0; q < NV; ++q) acc[q] += r[q];                                         \
                    }                                                                                        \
                    v16u *dr = (v16u *)(d + ((a * g->kw + b) * g->ci + c) * g->cop + t);                     \
                    for (int q = 0; q < NV; ++q) dr[q] += acc[q];                                            \
                }                                                                                            \
    }
DEFINE_WEIGHT_GRAD(1)
DEFINE_WEIGHT_GRAD(2)
DEFINE_WEIGHT_GRAD(3)
DEFINE_WEIGHT_GRAD(4)
DEFINE_WEIGHT_GRAD(5)
DEFINE_WEIGHT_GRAD(6)
DEFINE_WEIGHT_GRAD(7)
DEFINE_WEIGHT_GRAD(8)
typedef void (*weight_grad_fn)(const Geometry *, const int32_t *, const int32_t *, const int32_t *,
                               const int32_t *, const int32_t *, const float *, const float *, int64_t, float *);
static const weight_grad_fn WEIGHT_GRAD[MAX_VECTORS + 1] = {
    0, weight_grad_1, weight_grad_2, weight_grad_3, weight_grad_4,
    weight_grad_5, weight_grad_6, weight_grad_7, weight_grad_8};

/* Buckets an image's position-major events by channel and stride phase: bucket (c·sh + iy mod sh)·sw + ix mod sw
 * holds, in position order, the packed positions of channel c's events whose row/column have that remainder
 * (with a stride, a tap reaches an output only from one phase: the others need not be visited). */
static void by_channel(const int32_t *restrict start, const int32_t *restrict ch, const Geometry *g,
                       int32_t *restrict cstart, int32_t *restrict cpos) {
    const int64_t buckets = g->ci * g->sh * g->sw;
    memset(cstart, 0, sizeof(int32_t) * (size_t)(buckets + 1));
    for (int pass = 0; pass < 2; ++pass) { /* count, then place */
        for (int64_t iy = 0, ry = 0; iy < g->h; ++iy, ry = ry + 1 == g->sh ? 0 : ry + 1)
            for (int64_t ix = 0, rx = 0; ix < g->w; ++ix, rx = rx + 1 == g->sw ? 0 : rx + 1) {
                const int64_t phase = ry * g->sw + rx, stride = g->sh * g->sw;
                for (int32_t e = start[iy * g->w + ix]; e < start[iy * g->w + ix + 1]; ++e) {
                    const int64_t k = ch[e] * stride + phase;
                    if (pass == 0) cstart[k + 1]++;
                    else cpos[cstart[k]++] = POS(iy, ix);
                }
            }
        if (pass == 0)
            for (int64_t k = 0; k < buckets; ++k) cstart[k + 1] += cstart[k];
    }
    for (int64_t k = buckets; k > 0; --k) cstart[k] = cstart[k - 1];
    cstart[0] = 0;
}

int64_t spike_conv_weight_grad(const float *restrict x, int64_t n, int64_t h, int64_t w, int64_t ci,
                               const float *restrict grad, int64_t co, int64_t cop, int64_t kh, int64_t kw,
                               int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh, int64_t ow,
                               float *restrict dw) {
    const Geometry g = {h, w, ci, co, cop, kh, kw, sh, sw, ph, pw, oh, ow};
    const int64_t wsize = kh * kw * ci * cop;
    const int cap = TEAM_CAP;
    float **parts = calloc((size_t)cap, sizeof(float *));
    int32_t *ytab = malloc(sizeof(int32_t) * (size_t)(h * kh + w * kw + kh * kw));
    if (!parts || !ytab) {
        free(parts);
        free(ytab);
        return NO_MEMORY;
    }
    int32_t *xtab = ytab + h * kh, *phase = xtab + w * kw; /* phase: the stride phase tap (a, b) reads */
    for (int64_t a = 0; a < kh; ++a)
        for (int64_t b = 0; b < kw; ++b)
            phase[a * kw + b] = (int32_t)((((a - ph) % sh + sh) % sh) * sw + ((b - pw) % sw + sw) % sw);
    for (int64_t i = 0; i < h; ++i)
        for (int64_t a = 0; a < kh; ++a) {
            const int64_t r = i + ph - a;
            ytab[i * kh + a] = (r < 0 || r % sh || r / sh >= oh) ? -1 : (int32_t)(r / sh * ow);
        }
    for (int64_t i = 0; i < w; ++i)
        for (int64_t b = 0; b < kw; ++b) {
            const int64_t r = i + pw - b;
            xtab[i * kw + b] = (r < 0 || r % sw || r / sw >= ow) ? -1 : (int32_t)(r / sw);
        }
    int team = 1;
    int64_t bad = 0, failed = 0;
#pragma omp parallel reduction(+ : bad, failed)
    {
        const int me = MEMBER;
#pragma omp single
        team = TEAM;
        float *d = parts[me] = calloc((size_t)wsize, sizeof(float));
        int32_t *start = malloc(sizeof(int32_t) * (size_t)(h * w + 1));
        int32_t *ch = malloc(sizeof(int32_t) * (size_t)(h * w * ci));
        int32_t *cstart = malloc(sizeof(int32_t) * (size_t)(ci * sh * sw + 1));
        int32_t *cpos = malloc(sizeof(int32_t) * (size_t)(h * w * ci));
        /* the gradient's rows padded to cop floats (unless co is a multiple of 16), and a zero row */
        float *gp = co == cop ? NULL : malloc(sizeof(float) * (size_t)(oh * ow * cop));
        float *zrow = calloc((size_t)cop, sizeof(float));
        if (!d || !start || !ch || !cstart || !cpos || (co != cop && !gp) || !zrow) failed = 1;
#pragma omp for schedule(static, 1)
        for (int64_t i = 0; i < n; ++i) {
            if (failed || bad) continue;
            if (scan_image(x + i * h * w * ci, h * w, ci, start, ch) < 0) {
                bad = 1;
                continue;
            }
            by_channel(start, ch, &g, cstart, cpos);
            const float *gi = grad + i * oh * ow * co;
            if (gp) {
                for (int64_t p = 0; p < oh * ow; ++p) {
                    memcpy(gp + p * cop, gi + p * co, sizeof(float) * (size_t)co);
                    memset(gp + p * cop + co, 0, sizeof(float) * (size_t)(cop - co));
                }
                gi = gp;
            }
            for (int64_t t = 0; t < cop; t += MAX_VECTORS * LANES)
                WEIGHT_GRAD[vectors_at(cop, t)](&g, cstart, cpos, ytab, xtab, phase, gi, zrow, t, d);
        }
        free(start);
        free(ch);
        free(cstart);
        free(cpos);
        free(gp);
        free(zrow);
    }
    if (!failed && !bad) { /* the threads' partial sums, added in thread order */
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < wsize; ++k) {
            float acc = 0.0f;
            for (int t = 0; t < team; ++t) acc += parts[t][k];
            dw[k] = acc;
        }
    }
    for (int t = 0; t < cap; ++t) free(parts[t]);
    free(parts);
    free(ytab);
    return failed ? NO_MEMORY : bad ? NOT_BINARY : 0;
}
