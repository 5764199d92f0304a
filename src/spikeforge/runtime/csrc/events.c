/* Event-driven accumulation kernels of spikeforge's event runtime (compiled on first use, loaded with ctypes).
 *
 * Every kernel reads binary spikes as bytes (a torch bool tensor; any nonzero byte is an event) and adds one weight row per
 * event: no multiplication, and for the int64 variants exact integer sums. The weights come tiled:
 * `tiles[t, i, 0..TW)` = columns t*TW .. t*TW+TW-1 of weight row i (zero-padded past O), so the rows one
 * tile sums are contiguous and its TW accumulators stay in registers (TW = 8, 16, 32 or 64).
 *
 * linear  out[r, j] = bias[j] + sum_{i : x[r, i]} W^T[i, j]               rows r < n
 * conv    out[m, p, j] = bias[j] + sum_k sum_{c : x[m, q, c]} table[k, c, j],   q = source[p, k] >= 0
 *         (x channels-last [images, H*W, C]; source[p, k] the input position output position p reads
 *          through tap k, -1 outside; the weight rows are (k, c) pairs; out channels-last [images, P, O])
 *
 * Both return the number of (event, output-row) pairs summed (linear: the events of the rows, conv: the
 * (event, tap) pairs landing inside the output; times O that is the accumulations), or -1 when memory
 * for the event lists could not be allocated. The float64 sums run in the order of the events.
 * The entries deal the work out to the threads of an OpenMP team one row (linear) or image (conv) at a time.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Eight lanes (64 bytes) per vector, GCC/Clang vector extensions: AVX-512 registers where the CPU has
 * them, split into narrower ones where not. The _U types are the same vectors loaded unaligned. */
#define LANES 8
#define PREFETCH_AHEAD 4 /* the weight row of the event this many ahead is prefetched (linear) */
/* conv, per image: gather (each output position sums its taps' events in registers) or scatter (each event
 * adds its rows into the output positions its taps reach). Scatter when the image's (event, tap) pairs are
 * few against the gather's per-(position, tap) bookkeeping: pairs * SCATTER_PAIR_COST < P * taps *
 * GATHER_TAP_COST (relative costs, measured). mode: 0 auto, 1 gather, 2 scatter. */
#define MODE_AUTO 0
#define MODE_GATHER 1
#define MODE_SCATTER 2
#define SCATTER_PAIR_COST 1
#define GATHER_TAP_COST 2
typedef double VEC_f64 __attribute__((vector_size(64)));
typedef double VEC_f64_U __attribute__((vector_size(64), aligned(8)));
typedef int64_t VEC_i64 __attribute__((vector_size(64)));
typedef int64_t VEC_i64_U __attribute__((vector_size(64), aligned(8)));

/* n vectors of the bias (or zeros) written to d: NAME_SUFFIX for register accumulators (init, VEC) or for
 * rows in memory (store, VEC_U: unaligned). */
#define DEFINE_FILL(T, SUFFIX, NAME, V)                                                         \
    static inline void NAME##_##SUFFIX(V *d, int n, const T *bias) {                            \
        for (int j = 0; j < n; ++j) {                                                           \
            if (bias) d[j] = *(const VEC_##SUFFIX##_U *)(bias + j * LANES);                   \
            else d[j] = (VEC_##SUFFIX){0};                                                      \
        }                                                                                       \
    }
DEFINE_FILL(double, f64, init, VEC_f64)
DEFINE_FILL(double, f64, store, VEC_f64_U)
DEFINE_FILL(int64_t, i64, init, VEC_i64)
DEFINE_FILL(int64_t, i64, store, VEC_i64_U)

static inline void prefetch_row(const void *row, int64_t bytes) {
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch((const char *)row + b, 0, 3);
}

/* Work on an OpenMP team: member `part` of the `parts` a call uses (at most its `threads`, at most the team)
 * takes the rows (images) part, part + parts, ... — dealt out one by one, not in contiguous blocks: the rows
 * come time step by time step ([T, B] flattened) and the first steps fire least (a deep layer's first step
 * may have no events at all), so a contiguous split hands one thread most of the work. The team is the
 * OpenMP runtime's default one (torch's pool, whose size torch sets), entered without a num_threads clause:
 * asking for fewer threads than the pool holds makes libgomp end the surplus workers and the next torch op
 * start them again. Members past `parts` return at once. */
#ifdef _OPENMP
#include <omp.h>
#define PARALLEL_BLOCKS(total, failed) _Pragma("omp parallel reduction(+ : total, failed)")
#define MEMBER omp_get_thread_num()
#define TEAM omp_get_num_threads()
#else
#define PARALLEL_BLOCKS(total, failed)
#define MEMBER 0
#define TEAM 1
#endif

/* Listing the nonzero bytes of spikes. 64 bytes at a time, skipped when all zero, else packed into a 64-bit
 * mask whose set bits are listed with count-trailing-zeros, one step per event. Packing, per 8-byte word:
 * NONZERO_BYTES sets the top bit of each nonzero byte; shifted down to bit 0 of its byte, the multiply by
 * PACK_BYTES gathers those bits into the word's top byte (bit j = byte j, no carries: the partial products
 * land on distinct bits). Big-endian hosts use the byte loop throughout. */
#define LOW7 0x7F7F7F7F7F7F7F7FULL
#define HIGH1 0x8080808080808080ULL
#define NONZERO_BYTES(w) (((((w) & LOW7) + LOW7) | (w)) & HIGH1)
#define PACK_BYTES 0x0102040810204080ULL
#define BYTE_MASK(w) (((NONZERO_BYTES(w) >> 7) * PACK_BYTES) >> 56)
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LITTLE_ENDIAN_HOST 1
#else
#define LITTLE_ENDIAN_HOST 0
#endif
#define SHORT_ROW 64 /* rows shorter than a block are listed in one pass over all of them (scan_short) */

/* Bit j set for each nonzero byte j of x[0..64) (little-endian hosts); an all-zero block costs one test. */
static inline uint64_t block_mask(const uint8_t *restrict x) {
    uint64_t w[8], any = 0, mask = 0;
    memcpy(w, x, 64);
    for (int j = 0; j < 8; ++j) any |= w[j];
    if (!any) return 0;
    for (int j = 0; j < 8; ++j) mask |= BYTE_MASK(w[j]) << (8 * j);
    return mask;
}

/* EACH_EVENT(x, len, at, BODY): BODY once per nonzero byte of one row x[0..len), in order, with `at` its
 * index: blocks of 64, then words of 8, then single bytes. */
static inline uint64_t word_mask(const uint8_t *restrict x) {
    uint64_t w;
    memcpy(&w, x, 8);
    return w ? BYTE_MASK(w) : 0;
}
#if LITTLE_ENDIAN_HOST
#define EACH_EVENT(x, len, at, BODY)                                                                        \
    do {                                                                                                    \
        int64_t i_ = 0;                                                                                     \
        for (; i_ + 64 <= (len); i_ += 64)                                                                  \
            for (uint64_t m_ = block_mask((x) + i_); m_; m_ &= m_ - 1) {                                     \
                const int64_t at = i_ + __builtin_ctzll(m_);                                                 \
                BODY;                                                                                       \
            }                                                                                               \
        for (; i_ + 8 <= (len); i_ += 8)                                                                    \
            for (uint64_t m_ = word_mask((x) + i_); m_; m_ &= m_ - 1) {                                      \
                const int64_t at = i_ + __builtin_ctzll(m_);                                                 \
                BODY;                                                                                       \
            }                                                                                               \
        for (; i_ < (len); ++i_)                                                                            \
            if ((x)[i_]) {                                                                                  \
                const int64_t at = i_;                                                                      \
                BODY;                                                                                       \
            }                                                                                               \
    } while (0)
#else
#define EACH_EVENT(x, len, at, BODY)                                                                        \
    do {                                                                                                    \
        for (int64_t at = 0; at < (len); ++at)                                                              \
            if ((x)[at]) { BODY; }                                                                          \
    } while (0)
#endif

/* The indices of the nonzero bytes of one row x[0..len), written to idx; returns how many. */
static int64_t scan_row(const uint8_t *restrict x, int64_t len, int32_t *restrict idx) {
    int64_t k = 0;
    EACH_EVENT(x, len, at, idx[k++] = (int32_t)at);
    return k;
}

/* Short rows (len < SHORT_ROW: a conv's channels at one position) in one pass over the whole block, each
 * event's row found by walking the row ends forward (the events come in order). */
static int64_t scan_short(const uint8_t *restrict x, int64_t rows, int64_t len, int32_t *restrict idx,
                          int64_t *restrict start) {
    const int64_t total = rows * len;
    int64_t k = 0, r = 0, row_end = len; /* events so far, the current row and its end */
#define EMIT_EVENT(pos)                                                                                    \
    do {                                                                                                   \
        const int64_t at_ = (pos);                                                                         \
        for (; at_ >= row_end; row_end += len) start[++r] = k;                                             \
        idx[k++] = (int32_t)(at_ - (row_end - len));                                                       \
    } while (0)
    EACH_EVENT(x, total, at, EMIT_EVENT(at));
#undef EMIT_EVENT
    while (r < rows) start[++r] = k;
    return k;
}

/* The events of `rows` rows of `len` bytes each, `stride` bytes apart (len: contiguous), row by row:
 * idx[start[r] .. start[r+1]) the in-row indices of row r's nonzero bytes (idx has room for rows * len
 * entries, start for rows + 1); returns their number. */
static int64_t scan_rows(const uint8_t *restrict x, int64_t rows, int64_t len, int64_t stride,
                         int32_t *restrict idx, int64_t *restrict start) {
    start[0] = 0;
    if (len < SHORT_ROW && stride == len) return scan_short(x, rows, len, idx, start);
    for (int64_t r = 0; r < rows; ++r) start[r + 1] = start[r] + scan_row(x + r * stride, len, idx + start[r]);
    return start[rows];
}

/* A thread's event lists, kept between calls and grown when a call needs more (a fresh malloc of a few
 * MiB per call costs its page faults every time), freed when the thread ends (a POSIX thread-specific key's
 * destructor) — or right after a call that needed more than KEEP_BYTES (such a call pays its page faults
 * anyway, and its lists should not stay resident). lists_for returns NULL when memory runs out. */
#define KEEP_BYTES ((int64_t)32 << 20)
typedef struct {
    int32_t *idx;
    int64_t *start;
    int64_t idx_cap, start_cap;
} EventLists;
static pthread_key_t lists_key;
static pthread_once_t lists_once = PTHREAD_ONCE_INIT;
static int lists_key_ok;
static void release_lists(EventLists *l) {
    free(l->idx);
    free(l->start);
    l->idx = NULL, l->start = NULL, l->idx_cap = l->start_cap = 0;
}
static void free_lists(void *p) {
    release_lists(p);
    free(p);
}
static void make_lists_key(void) { lists_key_ok = pthread_key_create(&lists_key, free_lists) == 0; }
static EventLists *lists_for(int64_t events, int64_t rows) {
    pthread_once(&lists_once, make_lists_key);
    if (!lists_key_ok) return NULL;
    EventLists *l = pthread_getspecific(lists_key);
    if (!l) {
        if (!(l = calloc(1, sizeof *l))) return NULL;
        if (pthread_setspecific(lists_key, l)) {
            free(l);
            return NULL;
        }
    }
    if (events > l->idx_cap) { /* the old contents are not needed: no realloc copy */
        free(l->idx);
        l->idx_cap = 0;
        if (!(l->idx = malloc(sizeof(int32_t) * (size_t)(events > 0 ? events : 1)))) return NULL;
        l->idx_cap = events;
    }
    if (rows + 1 > l->start_cap) {
        free(l->start);
        l->start_cap = 0;
        if (!(l->start = malloc(sizeof(int64_t) * (size_t)(rows + 1)))) return NULL;
        l->start_cap = rows + 1;
    }
    return l;
}

static void drop_large_lists(EventLists *l) {
    if (l->idx_cap * (int64_t)sizeof(int32_t) + l->start_cap * (int64_t)sizeof(int64_t) > KEEP_BYTES)
        release_lists(l);
}

/* One tile width: the sums with TW accumulators (a compile-time width, kept in registers). */
#define DEFINE_WIDTH(T, SUFFIX, TW)                                                                          \
    static void linear_##SUFFIX##_##TW(const int32_t *restrict idx, const int64_t *restrict start, int64_t n, \
                                       int64_t f, const T *restrict tiles, int64_t o,                        \
                                       const T *restrict bias, T *restrict out, int64_t out_stride) {        \
        const int64_t n_tiles = (o + TW - 1) / TW;                                                           \
        for (int64_t t = 0; t < n_tiles; ++t) {                                                              \
            const T *restrict base = tiles + t * f * TW;                                                     \
            const int64_t width = (o - t * TW) < TW ? (o - t * TW) : TW;                                     \
            for (int64_t r = 0; r < n; ++r) {                                                                \
                VEC_##SUFFIX acc[TW / LANES];                                                                \
                init_##SUFFIX(acc, TW / LANES, bias ? bias + t * TW : NULL);                                 \
                for (int64_t e = start[r]; e < start[r + 1]; ++e) {                                          \
                    if (e + PREFETCH_AHEAD < start[r + 1])                                                   \
                        prefetch_row(base + (int64_t)idx[e + PREFETCH_AHEAD] * TW, sizeof(T) * TW);          \
                    const VEC_##SUFFIX##_U *row = (const VEC_##SUFFIX##_U *)(base + (int64_t)idx[e] * TW);   \
                    for (int j = 0; j < TW / LANES; ++j) acc[j] += row[j];                                   \
                }                                                                                            \
                memcpy(out + r * out_stride + t * TW, acc, sizeof(T) * (size_t)width);                       \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
                                                                                                             \
    /* A layer of at most TW outputs (one tile): each row's events are summed as the scan finds them, in  */ \
    /* the same (ascending) order, with no event lists. Rows part, part + parts, ...; returns the events.   */ \
    static int64_t fused_##SUFFIX##_##TW(const uint8_t *restrict x, int64_t n, int64_t f,                    \
                                         const T *restrict tiles, int64_t o, const T *restrict bias,         \
                                         T *restrict out, int64_t part, int64_t parts) {                     \
        int64_t events = 0;                                                                                  \
        for (int64_t r = part; r < n; r += parts) {                                                          \
            VEC_##SUFFIX acc[TW / LANES];                                                                    \
            init_##SUFFIX(acc, TW / LANES, bias);                                                            \
            EACH_EVENT(x + r * f, f, at, {                                                                   \
                const VEC_##SUFFIX##_U *row = (const VEC_##SUFFIX##_U *)(tiles + at * TW);                   \
                for (int j = 0; j < TW / LANES; ++j) acc[j] += row[j];                                       \
                ++events;                                                                                    \
            });                                                                                              \
            memcpy(out + r * o, acc, sizeof(T) * (size_t)o);                                                 \
        }                                                                                                    \
        return events;                                                                                       \
    }                                                                                                        \
                                                                                                             \
    static void conv_##SUFFIX##_##TW(const int32_t *restrict idx, const int64_t *restrict start,             \
                                     const int32_t *restrict source, int64_t p, int64_t taps, int64_t c,     \
                                     const T *restrict tiles, int64_t o, const T *restrict bias,             \
                                     T *restrict out, const T *end) {                                           \
        const int64_t n_tiles = (o + TW - 1) / TW;                                                           \
        for (int64_t r = 0; r < p; ++r) {                                                                    \
            const int32_t *restrict src = source + r * taps;                                                 \
            for (int64_t t = 0; t < n_tiles; ++t) {                                                          \
                const T *restrict base = tiles + t * taps * c * TW;                                          \
                const int64_t width = (o - t * TW) < TW ? (o - t * TW) : TW;                                 \
                VEC_##SUFFIX acc[TW / LANES];                                                                \
                init_##SUFFIX(acc, TW / LANES, bias ? bias + t * TW : NULL);                                 \
                for (int64_t k = 0; k < taps; ++k) {                                                         \
                    const int32_t q = src[k];                                                                \
                    if (q < 0) continue;                                                                     \
                    const T *restrict tap = base + k * c * TW;                                               \
                    for (int64_t e = start[q]; e < start[q + 1]; ++e) {                                      \
                        const VEC_##SUFFIX##_U *row = (const VEC_##SUFFIX##_U *)(tap + (int64_t)idx[e] * TW); \
                        for (int j = 0; j < TW / LANES; ++j) acc[j] += row[j];                               \
                    }                                                                                        \
                }                                                                                            \
                T *to = out + r * o + t * TW;                                                                \
                if (to + TW <= end) memcpy(to, acc, sizeof(T) * TW); /* past the row: rows written later */  \
                else memcpy(to, acc, sizeof(T) * (size_t)width);                                             \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
                                                                                                             \
    static void scatter_##SUFFIX##_##TW(const int32_t *restrict idx, const int64_t *restrict start,       \
                                        int64_t hw, const int32_t *restrict inv_ptr,                         \
                                        const int32_t *restrict inv, int64_t p, int64_t taps, int64_t c,     \
                                        const T *restrict tiles, int64_t o, const T *restrict bias,          \
                                        T *restrict acc, T *restrict out, const T *end) {                       \
        const int64_t n_tiles = (o + TW - 1) / TW, width = n_tiles * TW;                                     \
        T *sum = width == o ? out : acc;                                                                     \
        for (int64_t r = 0; r < p; ++r)                                                                      \
            for (int64_t t = 0; t < n_tiles; ++t)                                                            \
                store_##SUFFIX((VEC_##SUFFIX##_U *)(sum + r * width + t * TW), TW / LANES,                   \
                               bias ? bias + t * TW : NULL);                                                 \
        for (int64_t q = 0; q < hw; ++q) {                                                                   \
            const int64_t e0 = start[q], e1 = start[q + 1];                                                  \
            if (e0 == e1) continue;                                                                          \
            for (int64_t s = inv_ptr[q]; s < inv_ptr[q + 1]; ++s) {                                          \
                const int64_t r = inv[2 * s], k = inv[2 * s + 1];                                            \
                for (int64_t t = 0; t < n_tiles; ++t) {                                                      \
                    VEC_##SUFFIX##_U *a = (VEC_##SUFFIX##_U *)(sum + r * width + t * TW);                    \
                    const T *restrict tap = tiles + (t * taps + k) * c * TW;                                 \
                    for (int64_t e = e0; e < e1; ++e) {                                                      \
                        const VEC_##SUFFIX##_U *row = (const VEC_##SUFFIX##_U *)(tap + (int64_t)idx[e] * TW); \
                        for (int j = 0; j < TW / LANES; ++j) a[j] += row[j];                                 \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
        if (sum != out)                                                                                      \
            for (int64_t r = 0; r < p; ++r)                                                                  \
                for (int64_t t = 0; t < n_tiles; ++t) {                                                      \
                    T *to = out + r * o + t * TW;                                                            \
                    const T *from = sum + r * width + t * TW;                                                \
                    if (to + TW <= end) memcpy(to, from, sizeof(T) * TW);                                    \
                    else memcpy(to, from, sizeof(T) * (size_t)(o - t * TW < TW ? o - t * TW : TW));          \
                }                                                                                            \
    }

#define DEFINE_KERNELS(T, SUFFIX)                                                                             \
    DEFINE_WIDTH(T, SUFFIX, 8)                                                                               \
    DEFINE_WIDTH(T, SUFFIX, 16)                                                                              \
    DEFINE_WIDTH(T, SUFFIX, 32)                                                                              \
    DEFINE_WIDTH(T, SUFFIX, 64)                                                                              \
                                                                                                             \
    /* Rows part, part + parts, ... of x [n, f] (see PARALLEL_BLOCKS), written to the same rows of out [n, o]. */         \
    static int64_t linear_block_##SUFFIX(const uint8_t *restrict x, int64_t n, int64_t f,                     \
                                         const T *restrict tiles, int64_t o, int64_t tw,                     \
                                         const T *restrict bias, T *restrict out, int64_t part,              \
                                         int64_t parts) {                                                    \
        const int64_t m = n > part ? (n - part + parts - 1) / parts : 0; /* this part's rows */              \
        if (m == 0) return 0;                                                                                \
        if (o <= tw) switch (tw) { /* one tile: no event lists */                                            \
            case 8: return fused_##SUFFIX##_8(x, n, f, tiles, o, bias, out, part, parts);                    \
            case 16: return fused_##SUFFIX##_16(x, n, f, tiles, o, bias, out, part, parts);                  \
            case 32: return fused_##SUFFIX##_32(x, n, f, tiles, o, bias, out, part, parts);                  \
            default: return fused_##SUFFIX##_64(x, n, f, tiles, o, bias, out, part, parts);                  \
            }                                                                                                \
        EventLists *lists = lists_for(m * f, m);                                                             \
        if (!lists) return -1;                                                                               \
        int32_t *idx = lists->idx;                                                                           \
        int64_t *start = lists->start;                                                                       \
        scan_rows(x + part * f, m, f, parts * f, idx, start);                                                \
        T *first = out + part * o;                                                                           \
        switch (tw) {                                                                                        \
        case 8: linear_##SUFFIX##_8(idx, start, m, f, tiles, o, bias, first, parts * o); break;             \
        case 16: linear_##SUFFIX##_16(idx, start, m, f, tiles, o, bias, first, parts * o); break;           \
        case 32: linear_##SUFFIX##_32(idx, start, m, f, tiles, o, bias, first, parts * o); break;           \
        default: linear_##SUFFIX##_64(idx, start, m, f, tiles, o, bias, first, parts * o); break;           \
        }                                                                                                    \
        const int64_t events = start[m];                                                                     \
        drop_large_lists(lists);                                                                             \
        return events;                                                                                       \
    }                                                                                                        \
                                                                                                             \
    static int64_t conv_block_##SUFFIX(const uint8_t *restrict x, int64_t images, int64_t hw, int64_t c,     \
                                       const int32_t *restrict source, int64_t p, int64_t taps,              \
                                       const int32_t *restrict inv_ptr, const int32_t *restrict inv,         \
                                       const T *restrict tiles, int64_t o, int64_t tw, int64_t mode,         \
                                       const T *restrict bias, T *restrict out, int64_t part,                \
                                       int64_t parts) {                                                      \
        const int64_t width = (o + tw - 1) / tw * tw;                                                        \
        EventLists *lists = lists_for(hw * c, hw);                                                           \
        if (!lists) return -1;                                                                               \
        int32_t *idx = lists->idx;                                                                           \
        int64_t *start = lists->start;                                                                       \
        T *acc = NULL; /* the scatter's padded sums, made when first needed (width > o) */                 \
        int64_t pairs = 0;                                                                                   \
        for (int64_t m = part; m < images; m += parts) { /* images part, part + parts, ... (see PARALLEL_BLOCKS) */     \
            const uint8_t *xm = x + m * hw * c;                                                              \
            T *om = out + m * p * o;                                                                         \
            /* a row's tile may be stored whole (past the row's end) where the rows after it are this */     \
            /* thread's, written later: to the end of all images on one thread, else of this image */         \
            const T *end = parts == 1 ? out + images * p * o : om + p * o;                                   \
            int64_t reach = 0; /* the (event, tap) pairs of this image */                                    \
            scan_rows(xm, hw, c, c, idx, start);                                                             \
            for (int64_t q = 0; q < hw; ++q) reach += (start[q + 1] - start[q]) * (inv_ptr[q + 1] - inv_ptr[q]); \
            pairs += reach;                                                                                  \
            int scatter = mode == MODE_SCATTER ||                                                            \
                (mode == MODE_AUTO && reach * SCATTER_PAIR_COST < p * taps * GATHER_TAP_COST);                \
            if (scatter && width != o && !acc) {                                                             \
                acc = malloc(sizeof(T) * (size_t)(p * width));                                               \
                if (!acc) return -1;                                                                         \
            }                                                                                                \
            if (scatter) {                                                                                   \
                switch (tw) {                                                                                \
                case 8: scatter_##SUFFIX##_8(idx, start, hw, inv_ptr, inv, p, taps, c, tiles, o, bias, acc, om, end); break;   \
                case 16: scatter_##SUFFIX##_16(idx, start, hw, inv_ptr, inv, p, taps, c, tiles, o, bias, acc, om, end); break; \
                case 32: scatter_##SUFFIX##_32(idx, start, hw, inv_ptr, inv, p, taps, c, tiles, o, bias, acc, om, end); break; \
                default: scatter_##SUFFIX##_64(idx, start, hw, inv_ptr, inv, p, taps, c, tiles, o, bias, acc, om, end); break; \
                }                                                                                            \
                continue;                                                                                    \
            }                                                                                                \
            switch (tw) {                                                                                    \
            case 8: conv_##SUFFIX##_8(idx, start, source, p, taps, c, tiles, o, bias, om, end); break;   \
            case 16: conv_##SUFFIX##_16(idx, start, source, p, taps, c, tiles, o, bias, om, end); break; \
            case 32: conv_##SUFFIX##_32(idx, start, source, p, taps, c, tiles, o, bias, om, end); break; \
            default: conv_##SUFFIX##_64(idx, start, source, p, taps, c, tiles, o, bias, om, end); break; \
            }                                                                                                \
        }                                                                                                    \
        free(acc);                                                                                           \
        drop_large_lists(lists);                                                                             \
        return pairs;                                                                                        \
    }                                                                                                        \
                                                                                                             \
    /* The entries: rows (linear) or images (conv) dealt out to `threads` threads of an OpenMP team      */ \
    /* (the process's libgomp: torch's pool when torch loaded it), or one block without OpenMP.           */ \
    int64_t linear_##SUFFIX(const uint8_t *x, int64_t n, int64_t f, const T *tiles, int64_t o, int64_t tw,   \
                            const T *bias, T *out, int64_t threads) {                                        \
        if (threads <= 1) /* no team: entering one costs a small call more than its sums */                 \
            return linear_block_##SUFFIX(x, n, f, tiles, o, tw, bias, out, 0, 1);                            \
        int64_t total = 0, failed = 0;                                                                       \
        PARALLEL_BLOCKS(total, failed)                                                                       \
        {                                                                                                    \
            const int64_t parts = threads < TEAM ? threads : TEAM, part = MEMBER;                            \
            const int64_t got = part < parts ? linear_block_##SUFFIX(x, n, f, tiles, o, tw, bias, out, part, \
                                                                     parts) : 0;                             \
            if (got < 0) failed += 1; else total += got;                                                     \
        }                                                                                                    \
        return failed ? -1 : total;                                                                          \
    }                                                                                                        \
                                                                                                             \
    int64_t conv_##SUFFIX(const uint8_t *x, int64_t images, int64_t hw, int64_t c, const int32_t *source,    \
                          int64_t p, int64_t taps, const int32_t *inv_ptr, const int32_t *inv,               \
                          const T *tiles, int64_t o, int64_t tw, int64_t mode, const T *bias, T *out,        \
                          int64_t threads) {                                                                 \
        if (threads <= 1)                                                                                    \
            return conv_block_##SUFFIX(x, images, hw, c, source, p, taps, inv_ptr, inv, tiles, o, tw, mode,  \
                                       bias, out, 0, 1);                                                     \
        int64_t total = 0, failed = 0;                                                                       \
        PARALLEL_BLOCKS(total, failed)                                                                       \
        {                                                                                                    \
            const int64_t parts = threads < TEAM ? threads : TEAM, part = MEMBER;                            \
            const int64_t got = part < parts ? conv_block_##SUFFIX(x, images, hw, c, source, p, taps, inv_ptr, \
                                                                   inv, tiles, o, tw, mode, bias, out, part, \
                                                                   parts) : 0;                               \
            if (got < 0) failed += 1; else total += got;                                                     \
        }                                                                                                    \
        return failed ? -1 : total;                                                                          \
    }

DEFINE_KERNELS(double, f64)
DEFINE_KERNELS(int64_t, i64)
