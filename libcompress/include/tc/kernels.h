/* int8-activation x packed-ternary products for the I2, TL1 and TL2 layouts.
 *
 * Every path computes the same int32 sums, exactly: for each output row m
 * and scale group g, sum over the group's columns k of code[m][k] * xq[k].
 * Paths: a portable scalar kernel and AVX2 and AVX-512 (BW/VL) kernels built
 * with per-function target attributes, so the library runs on any x86-64;
 * which one runs is an explicit tc_kernels object (no global state),
 * chosen from the CPU's features or forced.
 *
 * How the kernels work (docs/KERNELS.md): the table paths look pairs or
 * triples of activations up in 16-entry tables of int16 sums, one byte
 * shuffle for 16 or 32 rows at once; TL2 on AVX-512 looks 32 rows up per
 * vpermw. Where AVX-512 VNNI and VBMI exist (path avx512vnni) I2 and TL1
 * are multiplied instead: a byte transpose puts a row's codes of four
 * chunks into one dword, and vpdpbusd multiplies them by the broadcast
 * int8 activations. Groups that do not start on a chunk boundary get their
 * own tables with the activations outside the group set to 0, so a group's
 * sum never sees a neighbour's columns.
 *
 * Products of 12 tokens or more (prompts) on avx2 decode each row block's
 * codes once into bytes c + 1 and multiply every token with them
 * (vpmaddubsw), whatever the layout: the same sums, exactly.
 *
 * Threads split the output rows by row blocks of 32 (a tc_kpool; the caller
 * is one of its workers); one token's rows of a worker are read as four
 * streams at once. Results do not depend on the thread count. */
#ifndef TC_KERNELS_H
#define TC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"
#include "tc/tpack.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_kpath {
    TC_KPATH_AUTO,   /* the fastest this CPU runs */
    TC_KPATH_SCALAR, /* portable C */
    TC_KPATH_AVX2,
    TC_KPATH_AVX512, /* AVX-512 F + BW + VL */
    TC_KPATH_AVX512VNNI, /* the same + VNNI + VBMI: I2 by multiply-add */
    TC_KPATH_COUNT
} tc_kpath;

/* "auto", "scalar", "avx2", "avx512", "avx512vnni". */
const char *tc_kpath_name(tc_kpath path);
/* TC_ERR for a name that is none of those. */
int tc_kpath_parse(const char *name, tc_kpath *path, tc_error *err);
/* Whether this CPU (and this build) can run the path. */
int tc_kpath_available(tc_kpath path);

struct tc_kimpl;
/* A chosen path: copyable, read-only once made, shared freely by threads. */
typedef struct tc_kernels {
    tc_kpath path; /* never AUTO once made */
    const struct tc_kimpl *impl;
} tc_kernels;

/* TC_ERR when a forced path cannot run on this CPU. */
int tc_kernels_init(tc_kernels *k, tc_kpath want, tc_error *err);

/* ---- thread pool --------------------------------------------------------- */
typedef struct tc_kpool tc_kpool;

/* n_threads <= 1: no threads are started, work runs on the caller. */
int tc_kpool_new(tc_kpool **out, int n_threads, tc_error *err);
void tc_kpool_free(tc_kpool *p);
int tc_kpool_threads(const tc_kpool *p);
/* Calls fn(ctx, w, n) for every worker w in 0..n-1 (the caller is worker 0)
 * and returns when all have returned. pool may be NULL (one worker). */
void tc_kpool_run(tc_kpool *p, void (*fn)(void *ctx, int worker, int n_workers), void *ctx);

/* ---- products ------------------------------------------------------------ */

/* Scratch for the activation tables; grows as needed, one per calling
 * thread (not per pool worker). */
typedef struct tc_kwork tc_kwork;
tc_kwork *tc_kwork_new(void);
void tc_kwork_free(tc_kwork *w);

/* Scale groups per row of a plan: 1 for tensor and row groupings. */
int64_t tc_kern_groups(const tc_tpack_plan *plan);

/* int32 sums of n tokens: xq is [n][plan->cols], y32 is
 * [n][plan->rows][tc_kern_groups(plan)]. TC_ERR if len is short of the
 * weight section or scratch cannot be allocated. */
int tc_kern_matmul_i32(const tc_kernels *k, tc_kpool *pool, tc_kwork *w,
                       const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                       const int8_t *xq, int64_t n, int32_t *y32, tc_error *err);

/* The linear layer: y[t][m] = sum_g scale(m, g) * sum_g(t, m) / act_scale[t]
 * (act_scale from tc_tpack_quantize_act, so x ~ xq / act_scale). The scales
 * are read from the packed bytes; len must cover plan->total_bytes. */
int tc_kern_matmul(const tc_kernels *k, tc_kpool *pool, tc_kwork *w, const tc_tpack_plan *plan,
                   const uint8_t *packed, uint64_t len, const int8_t *xq,
                   const float *act_scale, int64_t n, float *y, tc_error *err);

/* One of several products that read the same activations. */
typedef struct tc_kmat {
    const tc_tpack_plan *plan;
    const uint8_t *packed;
    uint64_t len;
    float *y; /* [n][plan->rows] */
} tc_kmat;

/* Whether two plans can share activation tables: same layout, columns and
 * grouping. */
int tc_kern_same_input(const tc_tpack_plan *a, const tc_tpack_plan *b);

/* tc_kern_matmul for up to 8 products of the same input (q, k and v; gate
 * and up) in one pass of the pool: each worker builds the activation
 * tables once and runs its share of every product's rows, so the pool is
 * handed work once instead of once per product. Every plan must have the
 * same layout, columns and grouping (TC_ERR otherwise). */
int tc_kern_matmul_set(const tc_kernels *k, tc_kpool *pool, tc_kwork *w, const tc_kmat *mats,
                       int n_mats, const int8_t *xq, const float *act_scale, int64_t n,
                       tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
