/* Kernel dispatch, the thread pool, activation tables, the row-block driver
 * and the portable scalar kernels. The SIMD kernels are in kernels_x86.c. */
#include "tc/kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels_internal.h"
#include "tc/checked.h"
#include "tc/dtype.h"

#define TILE TC_TPACK_TILE_ROWS

/* ---- dispatch ------------------------------------------------------------ */

const char *tc_kpath_name(tc_kpath path)
{
    static const char *names[] = {"auto", "scalar", "avx2", "avx512", "avx512vnni"};
    return (unsigned)path < TC_KPATH_COUNT ? names[path] : "?";
}

int tc_kpath_parse(const char *name, tc_kpath *path, tc_error *err)
{
    for (int p = 0; p < TC_KPATH_COUNT; p++)
        if (strcmp(name, tc_kpath_name((tc_kpath)p)) == 0) {
            *path = (tc_kpath)p;
            return TC_OK;
        }
    return tc_err(err, "kernel path '%s' is none of auto, scalar, avx2, avx512, avx512vnni", name);
}

int tc_kpath_available(tc_kpath path)
{
    switch (path) {
    case TC_KPATH_AUTO:
    case TC_KPATH_SCALAR:
        return 1;
#ifdef TC_KERNELS_X86
    case TC_KPATH_AVX2:
        return __builtin_cpu_supports("avx2");
    case TC_KPATH_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    case TC_KPATH_AVX512VNNI:
        return tc_kpath_available(TC_KPATH_AVX512) && __builtin_cpu_supports("avx512vnni") &&
               __builtin_cpu_supports("avx512vbmi");
#endif
    default:
        return 0;
    }
}

static void pairs_scalar(const uint8_t *w, int64_t n, const uint8_t *tab, int32_t out[32]);
static void tl2_scalar(const uint8_t *w, int64_t n, const uint8_t *tab, int32_t out[32]);

static const struct tc_kimpl kimpl_scalar = {{{TC_KTAB_I16, pairs_scalar, NULL, NULL, NULL, NULL},
                                              {TC_KTAB_I16, pairs_scalar, NULL, NULL, NULL, NULL},
                                              {TC_KTAB_I16, tl2_scalar, NULL, NULL, NULL, NULL}},
                                             NULL};

static const struct tc_kimpl *impl_of(tc_kpath path)
{
    switch (path) {
#ifdef TC_KERNELS_X86
    case TC_KPATH_AVX2:
        return &tc_kimpl_avx2;
    case TC_KPATH_AVX512:
        return &tc_kimpl_avx512;
    case TC_KPATH_AVX512VNNI:
        return &tc_kimpl_avx512vnni;
#endif
    default:
        return &kimpl_scalar;
    }
}

int tc_kernels_init(tc_kernels *k, tc_kpath want, tc_error *err)
{
    if ((unsigned)want >= TC_KPATH_COUNT)
        return tc_err(err, "kernel path %d is unknown", (int)want);
    if (want == TC_KPATH_AUTO)
        want = tc_kpath_available(TC_KPATH_AVX512VNNI) ? TC_KPATH_AVX512VNNI
               : tc_kpath_available(TC_KPATH_AVX512)   ? TC_KPATH_AVX512
               : tc_kpath_available(TC_KPATH_AVX2)     ? TC_KPATH_AVX2
                                                       : TC_KPATH_SCALAR;
    if (!tc_kpath_available(want))
        return tc_err(err, "kernel path %s is not supported by this CPU", tc_kpath_name(want));
    k->path = want;
    k->impl = impl_of(want);
    return TC_OK;
}

/* ---- thread pool --------------------------------------------------------- */
/* A decode step hands the pool some 150 jobs (per layer: q/k/v, the
 * attention heads, the output, gate/up, down) of well under a millisecond
 * each, so waking a sleeping thread per job (tens of microseconds on a
 * futex) would cost a large share of the step. Workers and the caller therefore
 * spin for a while on the generation and pending counters before they
 * sleep on the condition variables; the mutex only orders sleeping and
 * waking, so no wake-up is lost. */

#define POOL_SPINS 8192

struct tc_kpool {
    int n;
    pthread_t *threads;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Atomic uint64_t generation;
    _Atomic int pending, quit;
    void (*fn)(void *, int, int);
    void *ctx;
};

typedef struct pool_arg {
    tc_kpool *pool;
    int worker;
} pool_arg;

/* Spin iteration i. Every 64th gives the core away, so that on a machine
 * with more runnable threads than cores the thread being waited for can run. */
static void cpu_relax(int i)
{
    if ((i & 63) == 63) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int pool_idle(tc_kpool *p, uint64_t seen)
{
    return atomic_load(&p->generation) == seen && !atomic_load(&p->quit);
}

static void *pool_main(void *arg)
{
    tc_kpool *p = ((pool_arg *)arg)->pool;
    int w = ((pool_arg *)arg)->worker;
    free(arg);
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < POOL_SPINS && pool_idle(p, seen); i++)
            cpu_relax(i);
        if (pool_idle(p, seen)) {
            pthread_mutex_lock(&p->mu);
            while (pool_idle(p, seen))
                pthread_cond_wait(&p->go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit))
            break;
        seen = atomic_load(&p->generation);
        p->fn(p->ctx, w, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int tc_kpool_new(tc_kpool **out, int n_threads, tc_error *err)
{
    *out = NULL;
    tc_kpool *p = calloc(1, sizeof *p);
    if (!p)
        return tc_err(err, "thread pool: out of memory");
    p->n = n_threads < 1 ? 1 : n_threads > 256 ? 256 : n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->n > 1) {
        p->threads = calloc((size_t)p->n, sizeof *p->threads);
        if (!p->threads) {
            tc_kpool_free(p);
            return tc_err(err, "thread pool: out of memory");
        }
        for (int w = 1; w < p->n; w++) {
            pool_arg *a = malloc(sizeof *a);
            if (a) {
                a->pool = p;
                a->worker = w;
            }
            if (!a || pthread_create(&p->threads[w], NULL, pool_main, a) != 0) {
                free(a);
                p->n = w; /* the threads started so far are joined by free */
                tc_kpool_free(p);
                return tc_err(err, "thread pool: cannot start thread %d", w);
            }
            p->started = w;
        }
    }
    *out = p;
    return TC_OK;
}

void tc_kpool_free(tc_kpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int w = 1; w <= p->started; w++)
        pthread_join(p->threads[w], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int tc_kpool_threads(const tc_kpool *p)
{
    return p ? p->n : 1;
}

void tc_kpool_run(tc_kpool *p, void (*fn)(void *ctx, int worker, int n_workers), void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1); /* publishes fn and ctx */
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    for (int i = 0; i < POOL_SPINS && atomic_load(&p->pending) > 0; i++)
        cpu_relax(i);
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- activation tables --------------------------------------------------- */

struct tc_kwork {
    kseg *segs;
    size_t segs_cap;
    int8_t *xs; /* one segment's activations, zero-padded to whole chunks */
    size_t xs_cap;
    uint8_t *tabs;
    size_t tabs_cap;
    int32_t *y32; /* int32 sums of the float path */
    size_t y32_cap;
    int32_t *xsum; /* per worker, the activation sums of each token's groups (offsets) */
    size_t xsum_cap;
    uint8_t *gemm; /* the prompt path: activations, their group sums, per-worker panels */
    size_t gemm_cap;
};

tc_kwork *tc_kwork_new(void)
{
    return calloc(1, sizeof(tc_kwork));
}

void tc_kwork_free(tc_kwork *w)
{
    if (!w)
        return;
    free(w->segs);
    free(w->xs);
    free(w->tabs);
    free(w->y32);
    free(w->xsum);
    free(w->gemm);
    free(w);
}

static int grow(void **buf, size_t *cap, size_t need, size_t align)
{
    if (need <= *cap)
        return 0;
    size_t n = need + need / 2 + align;
    n = (n + align - 1) / align * align;
    void *p = aligned_alloc(align, n);
    if (!p)
        return -1;
    free(*buf);
    *buf = p;
    *cap = n;
    return 0;
}

int64_t tc_kern_groups(const tc_tpack_plan *plan)
{
    return plan->group.kind == TC_TGROUP_COLS
               ? (plan->cols + plan->group.cols - 1) / plan->group.cols
               : 1;
}

static size_t tabs_per_chunk(const tc_tpack_plan *p)
{
    return p->layout == TC_TPACK_TL2 ? 8 : 2;
}

/* What a path runs for a layout. */
static const tc_klayout *klayout(const tc_kernels *k, const tc_tpack_plan *p)
{
    return &k->impl->layout[p->layout];
}

/* Bytes of the tables of n chunks in a style. */
static size_t seg_tab_bytes(tc_ktab_style style, const tc_tpack_plan *p, int64_t n)
{
    switch (style) {
    case TC_KTAB_ACT4: /* 16 bytes per quad of chunks */
        return TC_KACT_HEADER + ((size_t)(n + 3) / 4 * 16 + 63) / 64 * 64;
    case TC_KTAB_W32:
        return (size_t)n * 256;
    default:
        return (size_t)n * tabs_per_chunk(p) * 32;
    }
}

static void pair_values(tc_tpack_layout layout, int x0, int x1, int16_t t[16])
{
    for (int i = 0; i < 16; i++) {
        int a, b, ok;
        if (layout == TC_TPACK_I2) {
            a = (i & 3) - 1;
            b = (i >> 2) - 1;
            ok = (i & 3) != 3 && (i >> 2) != 3;
        } else {
            a = i / 3 - 1;
            b = i % 3 - 1;
            ok = i < 9;
        }
        t[i] = (int16_t)(ok ? a * x0 + b * x1 : 0);
    }
}

static void triple_values(int x0, int x1, int x2, int16_t t[16])
{
    for (int i = 0; i < 16; i++) {
        int v = i + 13;
        t[i] = (int16_t)(i < 14 ? (v / 9 - 1) * x0 + (v / 3 % 3 - 1) * x1 + (v % 3 - 1) * x2 : 0);
    }
}

static void put_split(uint8_t *lo, uint8_t *hi, const int16_t t[16])
{
    for (int i = 0; i < 16; i++) {
        uint16_t u = (uint16_t)t[i];
        lo[i] = (uint8_t)(u & 0xff);
        hi[i] = (uint8_t)(u >> 8);
    }
}

/* Writes the tables of chunk j of a segment (local index) into dst, the
 * segment's table start. T holds the chunk's tables as int16. */
static void emit_chunk(tc_ktab_style style, const tc_tpack_plan *p, int64_t j, int16_t T[8][16],
                       uint8_t *dst)
{
    int nt = (int)tabs_per_chunk(p);
    if (style == TC_KTAB_I16) {
        memcpy(dst + (size_t)j * (size_t)nt * 32, T, (size_t)nt * 32);
    } else { /* SPLIT */
        uint8_t *d = dst + (size_t)j * (size_t)nt * 32;
        for (int t = 0; t < nt; t++)
            put_split(d + 32 * t, d + 32 * t + 16, T[t]);
    }
}

/* The run of segment s of token x, zero outside the segment, into xs. */
static void gather_run(const tc_tpack_plan *p, const kseg *s, const int8_t *x, int8_t *xs)
{
    int64_t base = s->c0 * p->chunk_cols, len = s->n_chunks * p->chunk_cols;
    memset(xs, 0, (size_t)len + 64);
    memcpy(xs + (s->k0 - base), x + s->k0, (size_t)(s->k1 - s->k0));
}

/* Tables of one segment for one token. */
static void build_seg(const tc_klayout *L, const tc_tpack_plan *p, const kseg *s,
                      const int8_t *x, int8_t *xs, uint8_t *dst)
{
    gather_run(p, s, x, xs);
    if (L->style == TC_KTAB_ACT4) { /* the header: the activations' sum */
        size_t n = seg_tab_bytes(TC_KTAB_ACT4, p, s->n_chunks);
        int32_t sum = 0;
        for (int64_t k = s->k0; k < s->k1; k++)
            sum += x[k];
        memset(dst, 0, n);
        memcpy(dst, &sum, sizeof sum);
        L->build(xs, s->n_chunks, dst + TC_KACT_HEADER);
        return;
    }
    if (L->build) {
        L->build(xs, s->n_chunks, dst);
        return;
    }
    int64_t cc = p->chunk_cols;
    for (int64_t j = 0; j < s->n_chunks; j++) {
        const int8_t *xv = xs + j * cc;
        int16_t T[8][16];
        if (p->layout == TC_TPACK_TL2)
            for (int t = 0; t < 8; t++)
                triple_values(xv[3 * t], xv[3 * t + 1], xv[3 * t + 2], T[t]);
        else
            for (int t = 0; t < 2; t++)
                pair_values(p->layout, xv[2 * t], xv[2 * t + 1], T[t]);
        emit_chunk(L->style, p, j, T, dst);
    }
}

/* One segment per scale group (or one for the whole row). */
static int make_segs(tc_kwork *w, const tc_kernels *k, const tc_tpack_plan *p, size_t *per_tok,
                     size_t *run_bytes)
{
    int64_t ng = tc_kern_groups(p), cc = p->chunk_cols;
    if (grow((void **)&w->segs, &w->segs_cap, (size_t)ng * sizeof(kseg), 64))
        return -1;
    size_t off = 0, run = 0;
    for (int64_t g = 0; g < ng; g++) {
        kseg *s = &w->segs[g];
        int64_t G = p->group.kind == TC_TGROUP_COLS ? p->group.cols : p->cols;
        s->k0 = g * G;
        s->k1 = s->k0 + G < p->cols ? s->k0 + G : p->cols;
        s->c0 = s->k0 / cc;
        s->n_chunks = (s->k1 + cc - 1) / cc - s->c0;
        s->tab_off = off;
        off += (seg_tab_bytes(klayout(k, p)->style, p, s->n_chunks) + 63) / 64 * 64;
        if ((size_t)(s->n_chunks * cc) > run)
            run = (size_t)(s->n_chunks * cc);
    }
    *per_tok = off;
    *run_bytes = run + 64; /* gather_run's zero tail */
    return 0;
}

/* ---- driver -------------------------------------------------------------- */

static float scale_at(const uint8_t *packed, const tc_tpack_plan *p, int64_t i)
{
    const uint8_t *b = packed + p->scale_offset + 4 * (uint64_t)i;
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Tokens whose tables are built together: enough to reuse each row block
 * from cache, few enough that the tables stay in L2/L3. */
#define TOKENS_PER_PASS 8

/* One of the products of a job: the inputs are shared. */
typedef struct kmat_job {
    const tc_tpack_plan *plan;
    const uint8_t *packed;
    int32_t *y32; /* [n_tok][rows][n_segs] */
    float *y;     /* NULL, or [n_tok][rows]: the scaled outputs */
} kmat_job;

#define KMATS_MAX 8

typedef struct kjob {
    const tc_kernels *k;
    const kseg *segs;
    int64_t n_segs, n_tok;
    const int8_t *xq; /* [n_tok][cols] */
    const float *act_scale; /* [n_tok], or NULL when only sums are wanted */
    /* Every worker builds its own tables: copying tables written by one
     * core to another costs more than building them again (TL2's are 10.7
     * bytes a column). Worker w's are at tabs + w * tabs_stride, its
     * gathered activations at xs + w * xs_stride. */
    uint8_t *tabs;
    int8_t *xs;
    size_t per_tok, tabs_stride, xs_stride;
    /* Products with offsets add mu times the sum of the group's int8
     * activations: worker w's sums, [token][segment], at xsum + w *
     * xsum_stride (NULL when no product has offsets). */
    int32_t *xsum;
    size_t xsum_stride;
    float inv_act[TOKENS_PER_PASS];
    kmat_job mats[KMATS_MAX];
    int n_mats;
} kjob;

static int rows_of(const tc_tpack_plan *p, int64_t rb)
{
    return p->rows - rb * TILE < TILE ? (int)(p->rows - rb * TILE) : TILE;
}

/* The sums of segment g for token t of one row block of product m go to
 * its y32. */
static void put_sums(const kjob *j, const kmat_job *m, int64_t rb, int rows, int64_t t, int64_t g,
                     const int32_t *out)
{
    int32_t *y = m->y32 + ((size_t)t * (size_t)m->plan->rows + (size_t)(rb * TILE)) *
                              (size_t)j->n_segs + (size_t)g;
    for (int r = 0; r < rows; r++)
        y[(size_t)r * (size_t)j->n_segs] = out[r];
}

/* put_sums for one token, from the four-block loop. With one segment a
 * block's sums are two whole lines of y32, which the stream of weights
 * evicted long ago: ordinary stores read each line back first (from L3),
 * and those reads wait behind the weight stream while the next blocks
 * stall. Streaming stores write the lines without reading them (measured,
 * alternating in one process, one thread, 6912 x 2560: TL2 83 -> 88 % of
 * the read, I2 88 -> 92 %, TL1 86 -> 90 %). The caller fences. */
static void put_block_sums(const kjob *j, const kmat_job *m, int64_t rb, int64_t g,
                           const int32_t *out)
{
    int32_t *y = m->y32 + (size_t)(rb * TILE);
#if defined(__SSE2__)
    if (j->n_segs == 1 && ((uintptr_t)y & 63) == 0 && rows_of(m->plan, rb) == TILE) {
        for (int r = 0; r < TILE; r += 4)
            _mm_stream_si128((__m128i *)(void *)(y + r),
                             _mm_loadu_si128((const __m128i *)(const void *)(out + r)));
        return;
    }
#endif
    put_sums(j, m, rb, rows_of(m->plan, rb), 0, g, out);
}

/* Scales [i, i + n) of a packed weight. */
static void scales_at(const uint8_t *packed, const tc_tpack_plan *p, int64_t i, int n, float *out)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(out, packed + p->scale_offset + 4 * (uint64_t)i, (size_t)n * sizeof *out);
#else
    for (int k = 0; k < n; k++)
        out[k] = scale_at(packed, p, i + k);
#endif
}

/* f16 parameter i of a packed weight (its group's scale: 2 i, offset: 2 i + 1). */
static float half_at(const uint8_t *packed, const tc_tpack_plan *p, int64_t i)
{
    const uint8_t *b = packed + p->scale_offset + 2 * (uint64_t)i;
    return tc_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
}

/* Outputs of a weight with offsets: per group s * sum + mu * xsum, the
 * groups added in order, then divided by the activation scale.  Shared by
 * every path, so their outputs are equal whenever their sums are. */
static void put_outputs_affine(const kjob *j, const kmat_job *m, int64_t rb, int rows,
                               const int32_t *xsum)
{
    const tc_tpack_plan *p = m->plan;
    int64_t ng = j->n_segs, m0 = rb * TILE;
    int tensor = p->group.kind == TC_TGROUP_TENSOR;
    float a[TILE], mu[TILE];
    if (ng == 1)
        for (int r = 0; r < rows; r++) {
            int64_t gi = tensor ? 0 : m0 + r;
            a[r] = half_at(m->packed, p, 2 * gi);
            mu[r] = half_at(m->packed, p, 2 * gi + 1);
        }
    for (int64_t t = 0; t < j->n_tok; t++) {
        float *y = m->y + (size_t)t * (size_t)p->rows + (size_t)m0, inv = j->inv_act[t];
        const int32_t *s = m->y32 + ((size_t)t * (size_t)p->rows + (size_t)m0) * (size_t)ng;
        const int32_t *xs = xsum + t * ng;
        if (ng == 1) {
            for (int r = 0; r < rows; r++)
                y[r] = (a[r] * (float)s[r] + mu[r] * (float)xs[0]) * inv;
            continue;
        }
        for (int r = 0; r < rows; r++) {
            float acc = 0;
            for (int64_t g = 0; g < ng; g++) {
                int64_t gi = (m0 + r) * ng + g;
                acc += half_at(m->packed, p, 2 * gi) * (float)s[r * ng + g] +
                       half_at(m->packed, p, 2 * gi + 1) * (float)xs[g];
            }
            y[r] = acc * inv;
        }
    }
}

/* The layer's outputs of one row block of product m, on the worker that
 * summed it. */
static void put_outputs(const kjob *j, const kmat_job *m, int64_t rb, int rows, const int32_t *xsum)
{
    const tc_tpack_plan *p = m->plan;
    if (p->params == TC_TPARAM_AFFINE_F16) {
        put_outputs_affine(j, m, rb, rows, xsum);
        return;
    }
    int64_t ng = j->n_segs, m0 = rb * TILE;
    float sc[TILE];
    if (p->group.kind == TC_TGROUP_ROW) {
        scales_at(m->packed, p, m0, rows, sc);
    } else if (p->group.kind == TC_TGROUP_TENSOR) {
        float s0 = scale_at(m->packed, p, 0);
        for (int r = 0; r < rows; r++)
            sc[r] = s0;
    }
    for (int64_t t = 0; t < j->n_tok; t++) {
        float *y = m->y + (size_t)t * (size_t)p->rows + (size_t)m0, inv = j->inv_act[t];
        const int32_t *s = m->y32 + ((size_t)t * (size_t)p->rows + (size_t)m0) * (size_t)ng;
        if (p->group.kind == TC_TGROUP_COLS) {
            for (int r = 0; r < rows; r++) {
                float acc = 0;
                for (int64_t g = 0; g < ng; g++)
                    acc += scale_at(m->packed, p, (m0 + r) * ng + g) * (float)s[r * ng + g];
                y[r] = acc * inv;
            }
        } else {
            for (int r = 0; r < rows; r++)
                y[r] = sc[r] * (float)s[r] * inv;
        }
    }
}

/* The tokens of segment g on row block rb of product m, four at a time
 * where the path has a multi-token kernel, else one by one. */
static void run_block(const kjob *j, const kmat_job *m, const tc_klayout *L,
                      const uint8_t *tabs_of, int64_t rb, int64_t g)
{
    const tc_tpack_plan *p = m->plan;
    const kseg *s = &j->segs[g];
    const uint8_t *w = m->packed + (uint64_t)rb * p->row_block_bytes +
                       (uint64_t)s->c0 * p->chunk_bytes;
    int32_t out[TC_KMULTI * TILE];
    int64_t t = 0;
    for (; L->multi && t + TC_KMULTI <= j->n_tok; t += TC_KMULTI) {
        const uint8_t *tabs[TC_KMULTI];
        for (int i = 0; i < TC_KMULTI; i++)
            tabs[i] = tabs_of + (size_t)(t + i) * j->per_tok + s->tab_off;
        L->multi(w, s->n_chunks, tabs, out);
        for (int i = 0; i < TC_KMULTI; i++)
            put_sums(j, m, rb, rows_of(p, rb), t + i, g, out + TILE * i);
    }
    for (; t < j->n_tok; t++) {
        L->one(w, s->n_chunks, tabs_of + (size_t)t * j->per_tok + s->tab_off, out);
        put_sums(j, m, rb, rows_of(p, rb), t, g, out);
    }
}

/* Row blocks [b0, b1) of product m for a worker, on its tables. One token
 * on a path with a four-block kernel: the range is cut into four quarters
 * read side by side, block i of each at a time, so that each stream of
 * weights runs through a whole quarter; blocks left over go one by one.
 *
 * The outputs are made after all the sums, in row order. Scaling each
 * block as it was summed cost 20 % of a 6912 x 2560 I2 product (7 % at
 * 2560 x 6912), even with the scales prefetched a step ahead: the scalar
 * work and the waits for four scattered scale lines paused every stream
 * of weights once a step. In row order the scales are one sequential read
 * the hardware prefetcher follows, and the int32 sums come back from L2. */
static void run_blocks(const kjob *j, const kmat_job *m, const tc_klayout *L,
                       const uint8_t *tabs, const int32_t *xsum, int64_t b0, int64_t b1)
{
    const tc_tpack_plan *p = m->plan;
    int64_t quarter = L->blocks && j->n_tok == 1 ? (b1 - b0) / TC_KBLOCKS : 0;
    for (int64_t i = 0; i < quarter; i++) {
        int64_t rb[TC_KBLOCKS];
        for (int q = 0; q < TC_KBLOCKS; q++)
            rb[q] = b0 + q * quarter + i;
        for (int64_t g = 0; g < j->n_segs; g++) {
            const kseg *s = &j->segs[g];
            int32_t out[TC_KBLOCKS * TILE];
            L->blocks(m->packed + (uint64_t)rb[0] * p->row_block_bytes +
                          (uint64_t)s->c0 * p->chunk_bytes,
                      (uint64_t)quarter * p->row_block_bytes, s->n_chunks,
                      tabs + s->tab_off, out);
            for (int q = 0; q < TC_KBLOCKS; q++)
                put_block_sums(j, m, rb[q], g, out + TILE * q);
        }
    }
#if defined(__SSE2__)
    if (quarter > 0)
        _mm_sfence(); /* the streaming stores before anything reads y32 */
#endif
    for (int64_t rb = b0 + TC_KBLOCKS * quarter; rb < b1; rb++)
        for (int64_t g = 0; g < j->n_segs; g++)
            run_block(j, m, L, tabs, rb, g);
    for (int64_t rb = b0; m->y && rb < b1; rb++)
        put_outputs(j, m, rb, rows_of(p, rb), xsum);
}

/* A worker builds its tables (one set serves every product of the job:
 * they share the input, the layout and the grouping), then runs its share
 * of the row blocks of each product. */
static void kjob_group(const kjob *j, int worker, int n_workers)
{
    int any = 0;
    for (int m = 0; m < j->n_mats; m++) {
        int64_t blocks = j->mats[m].plan->rows_padded / TILE;
        any |= blocks * worker / n_workers < blocks * (worker + 1) / n_workers;
    }
    if (!any)
        return;
    const tc_tpack_plan *p0 = j->mats[0].plan;
    const tc_klayout *L = klayout(j->k, p0);
    uint8_t *tabs = j->tabs + (size_t)worker * j->tabs_stride;
    int8_t *xs = j->xs + (size_t)worker * j->xs_stride;
    for (int64_t t = 0; t < j->n_tok; t++)
        for (int64_t g = 0; g < j->n_segs; g++)
            build_seg(L, p0, &j->segs[g], j->xq + (size_t)t * (size_t)p0->cols, xs,
                      tabs + (size_t)t * j->per_tok + j->segs[g].tab_off);
    int32_t *xsum = j->xsum ? j->xsum + (size_t)worker * j->xsum_stride : NULL;
    for (int64_t t = 0; xsum && t < j->n_tok; t++)
        for (int64_t g = 0; g < j->n_segs; g++) {
            const int8_t *x = j->xq + (size_t)t * (size_t)p0->cols;
            int32_t sum = 0;
            for (int64_t k = j->segs[g].k0; k < j->segs[g].k1; k++)
                sum += x[k];
            xsum[t * j->n_segs + g] = sum;
        }
    for (int m = 0; m < j->n_mats; m++) {
        int64_t blocks = j->mats[m].plan->rows_padded / TILE;
        run_blocks(j, &j->mats[m], L, tabs, xsum, blocks * worker / n_workers,
                   blocks * (worker + 1) / n_workers);
    }
}

/* Every group of TOKENS_PER_PASS tokens in turn, on the same worker: the
 * pool is handed the product once however many tokens there are (a
 * window's tokens would otherwise wake the workers once per group).  A
 * worker's rows and tables are its own, so the order of the groups changes
 * no sum. */
static void kjob_run(void *arg, int worker, int n_workers)
{
    const kjob *all = arg;
    int64_t cols = all->mats[0].plan->cols, ng = all->n_segs;
    for (int64_t t0 = 0; t0 < all->n_tok; t0 += TOKENS_PER_PASS) {
        kjob j = *all;
        j.n_tok = all->n_tok - t0 < TOKENS_PER_PASS ? all->n_tok - t0 : TOKENS_PER_PASS;
        j.xq = all->xq + (size_t)t0 * (size_t)cols;
        for (int m = 0; m < all->n_mats; m++) {
            int64_t M = all->mats[m].plan->rows;
            j.mats[m].y32 = all->mats[m].y32 + (size_t)t0 * (size_t)M * (size_t)ng;
            j.mats[m].y = all->mats[m].y ? all->mats[m].y + (size_t)t0 * (size_t)M : NULL;
        }
        for (int64_t t = 0; all->act_scale && t < j.n_tok; t++)
            j.inv_act[t] = 1.0f / all->act_scale[t0 + t];
        kjob_group(&j, worker, n_workers);
    }
}

/* ---- the prompt path ----------------------------------------------------- */

/* A product of many tokens (kernels_gemm.c): the caller lays the
 * activations out once, [n_tok][x_stride] and zero past the columns, with
 * each token's sum over each group; every worker sums its row blocks of
 * every product for all the tokens, then makes their outputs, as the
 * table path does, TOKENS_PER_PASS tokens at a time. */
typedef struct kgemm_job {
    kjob all;
    const int8_t *xa;
    size_t x_stride;
    const int32_t *gsum; /* [n_tok][n_segs] */
    uint8_t *scratch;    /* per worker: a panel of two halves, then [n_tok][32] sums */
    size_t half, scratch_stride;
} kgemm_job;

static void kgemm_run(void *arg, int worker, int n_workers)
{
    const kgemm_job *g = arg;
    const kjob *all = &g->all;
    uint8_t *panel = g->scratch + (size_t)worker * g->scratch_stride;
    int32_t *sums = (int32_t *)(void *)(panel + 2 * g->half);
    int64_t n = all->n_tok, ng = all->n_segs;
    for (int mi = 0; mi < all->n_mats; mi++) {
        const kmat_job *m = &all->mats[mi];
        const tc_tpack_plan *p = m->plan;
        int64_t blocks = p->rows_padded / TILE;
        int64_t b0 = blocks * worker / n_workers, b1 = blocks * (worker + 1) / n_workers;
        for (int64_t rb = b0; rb < b1; rb++)
            for (int64_t s = 0; s < ng; s++) {
                const kseg *sg = &all->segs[s];
                /* one group and whole blocks: straight into the product's sums */
                int direct = ng == 1 && rows_of(p, rb) == TILE;
                tc_kgemm_block(all->k->impl, p,
                               m->packed + (uint64_t)rb * p->row_block_bytes +
                                   (uint64_t)sg->c0 * p->chunk_bytes,
                               sg, g->xa, g->x_stride, n, g->gsum + s, (size_t)ng, panel, g->half,
                               direct ? m->y32 + rb * TILE : sums,
                               direct ? (size_t)p->rows : TILE);
                for (int64_t t = 0; !direct && t < n; t++)
                    put_sums(all, m, rb, rows_of(p, rb), t, s, sums + TILE * t);
            }
        for (int64_t t0 = 0; m->y && t0 < n; t0 += TOKENS_PER_PASS) {
            kjob j = *all;
            kmat_job mj = *m;
            j.n_tok = n - t0 < TOKENS_PER_PASS ? n - t0 : TOKENS_PER_PASS;
            mj.y32 = m->y32 + (size_t)t0 * (size_t)p->rows * (size_t)ng;
            mj.y = m->y + (size_t)t0 * (size_t)p->rows;
            for (int64_t t = 0; t < j.n_tok; t++)
                j.inv_act[t] = 1.0f / all->act_scale[t0 + t];
            for (int64_t rb = b0; rb < b1; rb++)
                put_outputs(&j, &mj, rb, rows_of(p, rb), g->gsum + t0 * ng);
        }
    }
}

static int kern_run_gemm(kjob *j, tc_kpool *pool, tc_kwork *w, tc_error *err)
{
    const tc_tpack_plan *p = j->mats[0].plan;
    int64_t n = j->n_tok, ng = j->n_segs, K = p->cols;
    size_t x_stride = (size_t)p->cols_padded, nw = (size_t)tc_kpool_threads(pool);
    int64_t chunks = 0; /* a panel holds one row block's longest segment */
    for (int64_t s = 0; s < ng; s++)
        chunks = j->segs[s].n_chunks > chunks ? j->segs[s].n_chunks : chunks;
    size_t half = (size_t)chunks * (size_t)(p->chunk_cols / 4) * 64;
    uint64_t xa_bytes, gs_bytes, sums_bytes, stride, need;
    if (tc_mul_u64((uint64_t)n, x_stride + 64, &xa_bytes) ||
        tc_mul_u64((uint64_t)n, (uint64_t)ng * sizeof(int32_t) + 64, &gs_bytes) ||
        tc_mul_u64((uint64_t)n, 32 * sizeof(int32_t), &sums_bytes) ||
        tc_add_u64(2 * (uint64_t)half, sums_bytes + 64, &stride) ||
        tc_mul_u64(stride, nw, &need) || tc_add_u64(need, xa_bytes + gs_bytes, &need) ||
        need > SIZE_MAX)
        return tc_err(err, "kernels: out of memory for the activations of %lld tokens",
                      (long long)n);
    /* each part on a 64-byte boundary (the + 64s above leave room) */
    xa_bytes = ((uint64_t)n * x_stride + 63) / 64 * 64;
    gs_bytes = ((uint64_t)n * (uint64_t)ng * sizeof(int32_t) + 63) / 64 * 64;
    stride = 2 * (uint64_t)half + (sums_bytes + 63) / 64 * 64;
    if (grow((void **)&w->gemm, &w->gemm_cap, (size_t)need, 64))
        return tc_err(err, "kernels: out of memory for the activations of %lld tokens",
                      (long long)n);
    int8_t *xa = (int8_t *)w->gemm;
    int32_t *gsum = (int32_t *)(void *)(w->gemm + xa_bytes);
    for (int64_t t = 0; t < n; t++) {
        const int8_t *x = j->xq + (size_t)t * (size_t)K;
        memcpy(xa + (size_t)t * x_stride, x, (size_t)K);
        memset(xa + (size_t)t * x_stride + K, 0, x_stride - (size_t)K);
        for (int64_t s = 0; s < ng; s++) {
            int32_t sum = 0;
            for (int64_t k = j->segs[s].k0; k < j->segs[s].k1; k++)
                sum += x[k];
            gsum[t * ng + s] = sum;
        }
    }
    kgemm_job g = {*j, xa, x_stride, gsum, w->gemm + xa_bytes + gs_bytes, half, (size_t)stride};
    tc_kpool_run(pool, kgemm_run, &g);
    return TC_OK;
}

int tc_kern_same_input(const tc_tpack_plan *a, const tc_tpack_plan *b)
{
    return a->layout == b->layout && a->cols == b->cols && a->group.kind == b->group.kind &&
           (a->group.kind != TC_TGROUP_COLS || a->group.cols == b->group.cols);
}

/* The int32 sums of n tokens for every product into its y32 and, where y
 * is not NULL, the scaled outputs into y. */
static int kern_run(const tc_kernels *k, tc_kpool *pool, tc_kwork *w, const kmat_job *mats,
                    int n_mats, const int8_t *xq, const float *act_scale, int64_t n,
                    tc_error *err)
{
    const tc_tpack_plan *plan = mats[0].plan;
    size_t per_tok, run;
    int nw = tc_kpool_threads(pool);
    if (make_segs(w, k, plan, &per_tok, &run))
        return tc_err(err, "kernels: out of memory for the activation tables");
    /* Many tokens (a prompt, a window): decode the weights once for all of
     * them rather than read them once per TOKENS_PER_PASS (the same sums). */
    if (k->impl->gemm && klayout(k, plan)->decode && n >= TC_KGEMM_MIN_TOKENS) {
        kjob j = {.k = k,
                  .segs = w->segs,
                  .n_segs = tc_kern_groups(plan),
                  .n_tok = n,
                  .xq = xq,
                  .act_scale = mats[0].y ? act_scale : NULL,
                  .n_mats = n_mats};
        for (int m = 0; m < n_mats; m++)
            j.mats[m] = mats[m];
        return kern_run_gemm(&j, pool, w, err);
    }
    size_t tabs_stride = (per_tok * TOKENS_PER_PASS + 63) / 64 * 64, xs_stride = (run + 127) / 64 * 64;
    int offsets = 0;
    for (int m = 0; m < n_mats; m++)
        offsets |= mats[m].y && mats[m].plan->offset;
    size_t ng = (size_t)tc_kern_groups(plan), xsum_stride = (TOKENS_PER_PASS * ng + 15) / 16 * 16;
    if (grow((void **)&w->tabs, &w->tabs_cap, tabs_stride * (size_t)nw, 64) ||
        grow((void **)&w->xs, &w->xs_cap, xs_stride * (size_t)nw, 64) ||
        (offsets && grow((void **)&w->xsum, &w->xsum_cap, xsum_stride * (size_t)nw * sizeof(int32_t), 64)))
        return tc_err(err, "kernels: out of memory for the activation tables");
    kjob j = {.k = k,
              .segs = w->segs,
              .n_segs = tc_kern_groups(plan),
              .n_tok = n,
              .xq = xq,
              .act_scale = mats[0].y ? act_scale : NULL,
              .tabs = w->tabs,
              .xs = w->xs,
              .per_tok = per_tok,
              .tabs_stride = tabs_stride,
              .xs_stride = xs_stride,
              .xsum = offsets ? w->xsum : NULL,
              .xsum_stride = xsum_stride,
              .n_mats = n_mats};
    for (int m = 0; m < n_mats; m++)
        j.mats[m] = mats[m];
    tc_kpool_run(pool, kjob_run, &j);
    return TC_OK;
}

static int short_weight(const tc_tpack_plan *p, uint64_t len, uint64_t need, tc_error *err)
{
    return tc_err(err, "kernels: %s weight needs %llu bytes but has %llu",
                  tc_tpack_layout_name(p->layout), (unsigned long long)need,
                  (unsigned long long)len);
}

int tc_kern_matmul_i32(const tc_kernels *k, tc_kpool *pool, tc_kwork *w,
                       const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                       const int8_t *xq, int64_t n, int32_t *y32, tc_error *err)
{
    if (len < plan->weight_bytes)
        return short_weight(plan, len, plan->weight_bytes, err);
    kmat_job m = {plan, packed, y32, NULL};
    return kern_run(k, pool, w, &m, 1, xq, NULL, n, err);
}

int tc_kern_matmul_set(const tc_kernels *k, tc_kpool *pool, tc_kwork *w, const tc_kmat *mats,
                       int n_mats, const int8_t *xq, const float *act_scale, int64_t n,
                       tc_error *err)
{
    if (n_mats < 1 || n_mats > KMATS_MAX)
        return tc_err(err, "kernels: %d products in one set (1 to %d)", n_mats, KMATS_MAX);
    kmat_job jm[KMATS_MAX];
    uint64_t total = 0;
    int64_t ng = tc_kern_groups(mats[0].plan);
    for (int m = 0; m < n_mats; m++) {
        const tc_tpack_plan *p = mats[m].plan;
        if (mats[m].len < p->total_bytes)
            return short_weight(p, mats[m].len, p->total_bytes, err);
        if (!tc_kern_same_input(p, mats[0].plan))
            return tc_err(err, "kernels: the products of a set differ in layout, columns or "
                               "grouping");
        uint64_t cnt;
        if (tc_mul_u64((uint64_t)n * (uint64_t)p->rows, (uint64_t)ng, &cnt) ||
            tc_add_u64(total, cnt, &total))
            return tc_err(err, "kernels: out of memory for %lld x %lld sums", (long long)n,
                          (long long)p->rows);
    }
    uint64_t bytes;
    if (tc_mul_u64(total, sizeof(int32_t), &bytes) ||
        grow((void **)&w->y32, &w->y32_cap, (size_t)bytes, 64))
        return tc_err(err, "kernels: out of memory for the sums of %d products", n_mats);
    int32_t *y32 = w->y32;
    for (int m = 0; m < n_mats; m++) {
        jm[m] = (kmat_job){mats[m].plan, mats[m].packed, y32, mats[m].y};
        y32 += (size_t)n * (size_t)mats[m].plan->rows * (size_t)ng;
    }
    return kern_run(k, pool, w, jm, n_mats, xq, act_scale, n, err);
}

int tc_kern_matmul(const tc_kernels *k, tc_kpool *pool, tc_kwork *w, const tc_tpack_plan *plan,
                   const uint8_t *packed, uint64_t len, const int8_t *xq,
                   const float *act_scale, int64_t n, float *y, tc_error *err)
{
    tc_kmat m = {plan, packed, len, y};
    return tc_kern_matmul_set(k, pool, w, &m, 1, xq, act_scale, n, err);
}

/* ---- scalar kernels ------------------------------------------------------ */

static void pairs_scalar(const uint8_t *w, int64_t n, const uint8_t *tab, int32_t out[32])
{
    int32_t acc[TILE] = {0};
    for (int64_t c = 0; c < n; c++) {
        const int16_t *T = (const int16_t *)(const void *)(tab + (size_t)c * 64);
        const uint8_t *v = w + (size_t)c * 32;
        for (int r = 0; r < TILE; r++)
            acc[r] += T[v[r] & 15] + T[16 + (v[r] >> 4)];
    }
    memcpy(out, acc, sizeof acc);
}

static void tl2_scalar(const uint8_t *w, int64_t n, const uint8_t *tab, int32_t out[32])
{
    int32_t acc[TILE] = {0};
    for (int64_t c = 0; c < n; c++) {
        const int16_t *T = (const int16_t *)(const void *)(tab + (size_t)c * 256);
        const uint8_t *v = w + (size_t)c * 160;
        for (int t = 0; t < 8; t++) {
            const uint8_t *plane = v + (t / 2) * 32, *sg = v + 128 + 4 * t;
            for (int r = 0; r < TILE; r++) {
                int32_t e = T[16 * t + (plane[r] >> 4 * (t % 2) & 15)];
                acc[r] += sg[r / 8] >> (r % 8) & 1 ? -e : e;
            }
        }
    }
    memcpy(out, acc, sizeof acc);
}
