/* The row kernels behind tc/qmat.h: one row of weights times one token's
 * int8 activations, the float arithmetic fixed as tc/qmat.h states. */
#ifndef TC_QMAT_INTERNAL_H
#define TC_QMAT_INTERNAL_H

#include <stdint.h>

/* Bytes of a block of each type (ggml's layouts). */
#define TC_QMAT_Q8_0_BYTES 34  /* f16 d, 32 x int8 */
#define TC_QMAT_Q4_0_BYTES 18  /* f16 d, 16 bytes: column j low nibble, j + 16 high; value - 8 */
#define TC_QMAT_Q6_K_BYTES 210 /* ql[128], qh[64], int8 scales[16], f16 d; value - 32 */

/* The dot product of one row (nb blocks at w) with one token (x, its block
 * scales xd). */
typedef float (*tc_qrow_fn)(const uint8_t *w, int64_t nb, const int8_t *x, const float *xd);

typedef struct tc_qrow_fns {
    tc_qrow_fn q8_0, q4_0, q6_k;
} tc_qrow_fns;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TC_QMAT_X86 1
extern const tc_qrow_fns tc_qrow_avx2;
#endif

#endif
