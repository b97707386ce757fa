/* A ternary-quantized model in memory, and its packed file.
 *
 * The quantizer produces it and the runner consumes it: the model config,
 * per layer and linear role a packed ternary weight (a tc_tpack_plan and the
 * plan's bytes: tiles then fp32 scales), and every other tensor (norms,
 * biases, the token embedding, the output head) as F32 or F16 values, kept in
 * their stored type and converted when used; the embedding and head may also
 * be Q8_0, Q6_K or Q4_0 blocks (tc/qmat.h).
 *
 * The packed file (docs/PACKED_FORMAT.md) is one self-describing, versioned
 * file: a fixed preamble, a JSON header (config, quantization settings, the
 * tensor table with offsets, sizes and CRC-32s), then the tensors' bytes,
 * each aligned to 64 bytes.  Opening maps the file, checks every header field
 * against the file and the config, and checks every tensor's CRC. */
#ifndef TC_TMODEL_H
#define TC_TMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tc/dtype.h"
#include "tc/error.h"
#include "tc/mapfile.h"
#include "tc/model.h"
#include "tc/model_write.h"
#include "tc/tpack.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_TMODEL_MAGIC "TCTMODEL" /* 8 bytes, no terminator in the file */
#define TC_TMODEL_VERSION 1
#define TC_TMODEL_ALIGN 64

/* How the linear weights were quantized (recorded, not needed to run). */
typedef enum tc_tmethod {
    TC_TMETHOD_ABSMEAN,
    TC_TMETHOD_OPTIMAL,
    TC_TMETHOD_CALIBRATED,
    TC_TMETHOD_SOURCE, /* the codes and scales of an already ternary source, carried over as they are */
    TC_TMETHOD_COUNT
} tc_tmethod;

const char *tc_tmethod_name(tc_tmethod m); /* "absmean", "optimal", "calibrated" */
int tc_tmethod_from_name(const char *s, tc_tmethod *out);
int tc_tpack_layout_from_name(const char *s, tc_tpack_layout *out); /* "i2", "tl1", "tl2" */

typedef struct tc_tquant_settings {
    tc_tmethod method;
    tc_tpack_layout layout;
    tc_tgroup group;
    uint64_t calib_tokens; /* calibrated: tokens the statistics came from (0 otherwise) */
    int sequential;        /* calibrated: inputs taken through the already quantized layers */
    double damp_frac;      /* calibrated: GPTQ damping (0 otherwise) */
} tc_tquant_settings;

/* One stored tensor. */
typedef struct tc_tmodel_tensor {
    int layer;            /* block index, or -1 for a global tensor */
    int role;             /* a tc_role when layer >= 0, a tc_global otherwise */
    int ternary;          /* 1: plan describes the bytes; 0: plain dtype values */
    tc_dtype dtype;       /* TC_F32 or TC_F16 when !ternary; the embedding and head also
                             TC_Q8_0, TC_Q6_K or TC_Q4_0 */
    int n_dims;           /* 1 or 2 */
    int64_t shape[2];     /* outermost first: [rows][cols] of a matrix, [n] of a vector */
    tc_tpack_plan plan;   /* ternary only */
    const uint8_t *data;  /* nbytes; inside the mapping when opened, else the caller's */
    uint64_t nbytes;
    uint64_t offset;      /* from the start of the data section (filled by open/write) */
    uint32_t crc32;       /* zlib CRC-32 of the bytes (filled by open/write) */
} tc_tmodel_tensor;

typedef struct tc_tmodel {
    tc_config cfg;             /* rope_layout says how Q/K rows are stored */
    tc_tquant_settings quant;
    tc_tmodel_tensor *tensors; /* n_tensors */
    size_t n_tensors;
    char *source;              /* what it was made from (may be NULL) */
    /* Set by tc_tmodel_open only: */
    char *path;
    tc_mapfile map;
    uint64_t data_offset;      /* file offset of the data section */
} tc_tmodel;

/* "blk.3.wq", "token_embd", "output_norm", "output". */
void tc_tmodel_tensor_name(const tc_tmodel_tensor *t, char *buf, size_t n);

/* The shape the config implies for a role of a layer (layer >= 0) or a
 * global (layer == -1); returns the number of dims (1 or 2). */
int tc_tmodel_expected_shape(const tc_config *cfg, int layer, int role, int64_t shape[2]);

/* The tensor of a role of a layer, or a global (layer == -1); NULL if absent. */
const tc_tmodel_tensor *tc_tmodel_find(const tc_tmodel *m, int layer, int role);

/* Maps and validates a packed file: preamble, version, JSON header, every
 * tensor's role, shape, layout, grouping, span (inside the file, aligned, no
 * overlaps) and CRC.  Errors name the file. */
int tc_tmodel_open(tc_tmodel *m, const char *path, tc_error *err);
void tc_tmodel_close(tc_tmodel *m);

/* Produces the bytes of tensor i (nbytes of them) into dst: how a writer
 * holds one tensor at a time.  Called in tensor order, once per tensor. */
typedef int (*tc_tmodel_fill_fn)(void *ctx, size_t i, uint8_t *dst, tc_error *err);

/* Writes m atomically, one tensor at a time: a tensor whose data is NULL is
 * produced by fill (which may be NULL when every tensor has data).  Each
 * tensor's nbytes must match its plan or shape x dtype.  Fills in offset and
 * crc32 of m's tensors. */
int tc_tmodel_write(const char *path, tc_tmodel *m, tc_tmodel_fill_fn fill, void *ctx,
                    tc_error *err);

/* A ternary tensor's codes [rows][cols] and scales [plan.n_scales]. */
int tc_tmodel_tensor_unpack(const tc_tmodel_tensor *t, int8_t *codes, float *scales,
                            tc_error *err);

/* Any tensor as fp32 values (shape[0] * shape[1] of a matrix): plain values
 * converted, ternary ones dequantized (scale * code). */
int tc_tmodel_tensor_f32(const tc_tmodel_tensor *t, float *dst, tc_error *err);

/* Bytes of the tensors, and of the ternary ones alone; weights counted likewise. */
typedef struct tc_tmodel_size {
    uint64_t bytes, ternary_bytes;
    uint64_t params, ternary_params;
} tc_tmodel_size;

void tc_tmodel_size_of(const tc_tmodel *m, tc_tmodel_size *out);

#ifdef __cplusplus
}
#endif

#endif
