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

#include "tc/calib.h"
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
#define TC_TMODEL_VERSION 3        /* the newest read and written: tensors with offsets */
#define TC_TMODEL_VERSION_PLAIN 2  /* written when no tensor has offsets (older builds read it) */
#define TC_TMODEL_VERSION_MIN 1    /* 1 (no tokenizer) is still read */
#define TC_TMODEL_ALIGN 64

/* How the linear weights were quantized (recorded, not needed to run). */
typedef enum tc_tmethod {
    TC_TMETHOD_ABSMEAN,
    TC_TMETHOD_OPTIMAL,
    TC_TMETHOD_CALIBRATED,
    TC_TMETHOD_SOURCE, /* the codes and scales of an already ternary source, carried over as they are */
    /* Asymmetric (W ~ alpha * T + mu per group, f16 parameters: version 3). */
    TC_TMETHOD_AFFINE,            /* least-squares fit of each group */
    TC_TMETHOD_AFFINE_CALIBRATED, /* GPTQ sweep on the affine grid, grid refits in the H norm */
    TC_TMETHOD_AFFINE_BLOCK,      /* the same, then each block's scales and offsets tuned to
                                     its float output on the calibration data */
    TC_TMETHOD_COUNT
} tc_tmethod;

/* "absmean", "optimal", "calibrated", "affine", "affine-calibrated", "affine-block". */
const char *tc_tmethod_name(tc_tmethod m);
/* Whether a method needs calibration data; whether its weights have offsets. */
int tc_tmethod_calibrated(tc_tmethod m);
int tc_tmethod_affine(tc_tmethod m);
int tc_tmethod_from_name(const char *s, tc_tmethod *out);
int tc_tpack_layout_from_name(const char *s, tc_tpack_layout *out); /* "i2", "tl1", "tl2" */

typedef struct tc_tquant_settings {
    tc_tmethod method;
    tc_tpack_layout layout;
    tc_tgroup group;
    uint64_t calib_tokens; /* calibrated: tokens the statistics came from (0 otherwise) */
    int sequential;        /* calibrated: inputs taken through the already quantized layers */
    double damp_frac;      /* calibrated: GPTQ damping (0 otherwise) */
    /* The affine calibrated methods (version 3; 0 otherwise): */
    int act_order;         /* columns swept by decreasing H[k][k] */
    int refit;             /* rounds of grid refits, each followed by a sweep */
    int block_rounds;      /* affine-block: rounds of tuning each block's parameters */
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

/* The tokenizer a packed file carries: the bytes of the source's own
 * tokenizer files, read back by the loader that read the source, so the
 * file encodes text exactly as its source does. */
typedef enum tc_ttok_kind {
    TC_TTOK_NONE,    /* the file carries no tokenizer */
    TC_TTOK_HF,      /* tokenizer.json, then the tokenizer_config.json beside it when there was one */
    TC_TTOK_LLAMA2C, /* a llama2.c tokenizer.bin (the config's vocab_size tokens) */
    TC_TTOK_GGUF,    /* a GGUF image without tensors: the source's tokenizer.* keys */
    TC_TTOK_COUNT
} tc_ttok_kind;

#define TC_TTOK_MAX_FILES 2
#define TC_TTOK_MAX_BYTES (1ull << 30) /* per embedded file */

typedef struct tc_ttok_file {
    const uint8_t *data;   /* inside the mapping when opened, else owned or the caller's */
    uint64_t nbytes;
    uint64_t offset;       /* from the start of the data section (filled by open/write) */
    uint32_t crc32;        /* filled by open/write */
} tc_ttok_file;

typedef struct tc_tmodel_tok {
    tc_ttok_kind kind;
    int n_files;
    tc_ttok_file files[TC_TTOK_MAX_FILES];
    uint8_t *owned[TC_TTOK_MAX_FILES]; /* freed by tc_tmodel_tok_free (NULL when opened) */
    char *origin;                      /* the file it was taken from, for messages (may be NULL) */
} tc_tmodel_tok;

/* "hf", "llama2c", "gguf" ("none" for TC_TTOK_NONE). */
const char *tc_ttok_kind_name(tc_ttok_kind k);
/* The name of embedded file i of a kind: "tokenizer.json",
 * "tokenizer_config.json", "tokenizer.bin", "tokenizer.gguf"; NULL past the
 * kind's files. */
const char *tc_ttok_file_name(tc_ttok_kind k, int i);

/* The record of a mixed-precision assignment (tc-quantize --target-bpw,
 * tc/mixed.h), kept in the header: informative, as `quantization` is (each
 * tensor's layout already says how it is stored).  Per linear weight of the
 * blocks, the measured KL (nats per calibration token) of that weight alone
 * in each candidate type; NaN where the type was not a candidate. */
enum { TC_TMIXED_TERNARY, TC_TMIXED_Q4_0, TC_TMIXED_Q8_0, TC_TMIXED_NTYPES };

typedef struct tc_tmixed_entry {
    int layer, role;
    double kl[TC_TMIXED_NTYPES];
} tc_tmixed_entry;

typedef struct tc_tmixed {
    double target_bpw;      /* the budget asked for, bits per linear weight */
    double bpw;             /* the linear weights' bits per weight as stored */
    tc_tmethod measured;    /* the ternary fit whose KL was measured */
    uint64_t tokens;        /* calibration tokens of the measurement */
    tc_tmixed_entry *entries;
    size_t n_entries;
} tc_tmixed;

/* "ternary", "q4_0", "q8_0". */
const char *tc_tmixed_type_name(int i);

typedef struct tc_tmodel {
    tc_config cfg;             /* rope_layout says how Q/K rows are stored */
    tc_tquant_settings quant;
    tc_tmodel_tensor *tensors; /* n_tensors */
    size_t n_tensors;
    tc_tmodel_tok tok;         /* kind TC_TTOK_NONE when there is none */
    uint32_t version;          /* of the file opened (set by tc_tmodel_open) */
    char *source;              /* what it was made from (may be NULL) */
    tc_tmixed *mixed;          /* the mixed-precision record (may be NULL; owned after
                                  tc_tmodel_open, the writer's otherwise) */
    tc_calib_windows *calib;   /* the calibration windows, when the quantizer had text (may be
                                  NULL; owned after tc_tmodel_open, the writer's otherwise) */
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

/* ---- the tokenizer -------------------------------------------------------- */
struct tc_tokenizer;

/* The bytes of the tokenizer tc_model_tokenizer(m, path) would load, to be
 * embedded: path (a tokenizer.json, a GGUF or a llama2.c tokenizer.bin) or
 * the checkpoint's own (a GGUF's vocabulary, a Hugging Face directory's
 * tokenizer.json).  A checkpoint without one and no path gives kind
 * TC_TTOK_NONE.  The bytes are loaded once here, so what is embedded is a
 * tokenizer tc reads and whose vocabulary fits the model; otherwise TC_ERR. */
int tc_tmodel_tok_collect(tc_tmodel_tok *out, const tc_model *m, const char *path, tc_error *err);
void tc_tmodel_tok_free(tc_tmodel_tok *t);

/* The tokenizer of a packed model, built from its embedded bytes with the
 * loader of its kind; *out is NULL (and TC_OK) when the file carries none.
 * Checks that its vocabulary fits the model's. */
int tc_tmodel_tokenizer(const tc_tmodel *m, struct tc_tokenizer **out, tc_error *err);

/* The tokenizer to run a packed model with: the file path names (as
 * tc_tokenizer_open_for reads it) or, path NULL, the embedded one; TC_ERR
 * naming the model when it carries none.  Checks the vocabulary fits. */
int tc_tmodel_tokenizer_open(const tc_tmodel *m, const char *path, struct tc_tokenizer **out, tc_error *err);

/* Whether a file starts with the packed file's magic (it may still be
 * corrupt: tc_tmodel_open says). */
int tc_tmodel_is_packed(const char *path);

/* A ternary tensor's codes [rows][cols] and scales [plan.n_scales]. */
int tc_tmodel_tensor_unpack(const tc_tmodel_tensor *t, int8_t *codes, float *scales,
                            tc_error *err);

/* The same with a ternary tensor's offsets [plan.n_scales] (0 where the plan
 * has none); offsets may be NULL. */
int tc_tmodel_tensor_unpack_affine(const tc_tmodel_tensor *t, int8_t *codes, float *scales,
                                   float *offsets, tc_error *err);

/* Any tensor as fp32 values (shape[0] * shape[1] of a matrix): plain values
 * converted, ternary ones dequantized (scale * code, plus the offset where
 * the plan has one). */
int tc_tmodel_tensor_f32(const tc_tmodel_tensor *t, float *dst, tc_error *err);

/* Writing a packed file of a ternary-trained model (quant.method source)
 * back as a checkpoint, bit for bit: every linear's codes and its one scale
 * as the tiles hold them (tc_model_src.ternary says how each format stores
 * them), every other tensor in the narrowest of BF16, F16 and F32 that holds
 * its values exactly (norms in F32 in GGUF).  An autobitlinear model is
 * written as bitlinear (HF): the tiles hold its codes, not its masters. */
typedef struct tc_tmodel_export_opts {
    tc_format format;                 /* TC_FORMAT_HF or TC_FORMAT_GGUF */
    tc_dtype ternary_dtype;           /* GGUF: TC_TQ1_0, TC_TQ2_0 or TC_I2_S */
    const struct tc_gguf *gguf_vocab; /* GGUF: tokenizer keys copied from here (optional) */
    const char *hf_src_dir;           /* HF: tokenizer files copied from here (optional) */
    const char *name;                 /* general.name (optional) */
} tc_tmodel_export_opts;

int tc_tmodel_export(const tc_tmodel *tm, const char *path, const tc_tmodel_export_opts *o, tc_error *err);

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
