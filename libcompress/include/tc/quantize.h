/* Ternary quantization of a whole model, one layer at a time.
 *
 * Every linear weight of the blocks (wq, wk, wv, wo, w_gate, w_up, w_down) is
 * quantized with the chosen method and scale grouping, then packed into a
 * LUT-ready layout (the packed file, tc/tmodel.h) or encoded as ggml TQ1_0 /
 * TQ2_0 blocks (a GGUF file stock llama.cpp runs).  Norms, biases, the
 * embedding and the output head keep float values (F16 by default).
 *
 * Memory holds one layer of fp32 weights (packed output without calibration:
 * one layer of packed bytes, each matrix being converted, quantized and
 * packed 32 rows at a time) plus, with calibration data, the hidden state of
 * every calibration token and the X^T X statistics of one layer's linear
 * inputs.  The tensors of a layer are processed on n_threads workers; the
 * output does not depend on their number.
 *
 * The calibrated method needs calibration sequences: their activations are
 * run through the model layer by layer; H = X^T X of each linear input feeds
 * tc_ternary_calibrated.  With `sequential`, layer l's inputs come from the
 * already quantized layers 0..l-1 (GPTQ's usual order), otherwise from the
 * original model.  With any method, calibration data also yields each
 * tensor's relative output error.
 *
 * GGUF export: ggml's ternary blocks (TQ1_0 / TQ2_0) carry one f16 scale per
 * 256 weights of a row.  Rows that are whole 32-weight blocks but not 256-weight
 * ones hold their ternary codes in Q4_0 blocks instead (a nibble of code + 8
 * and one f16 scale per 32 weights: exact, 4.5 bits per weight).  The codes
 * are the quantizer's; each block's scale is the mean of the quantizer's
 * scales over the block's nonzero codes (so with tensor or row grouping, or
 * groups of a multiple of the block, the GGUF weights equal ours up to the f16
 * rounding of the scale, a relative 2^-11 at most).  A linear weight whose rows
 * are not whole 32-weight blocks cannot be ternary in any ggml type: it goes to
 * the fallback type (below), or is refused with `strict`; with `pad_ffn` the
 * FFN width is padded with zeros to a multiple of 256 where that makes the
 * down projections TQ (the function is unchanged; the report's shapes stay
 * the source's and its bytes are the padded ones).  A file in which no
 * linear weight is TQ1_0 / TQ2_0 is refused unless the fallback was chosen
 * explicitly (`fallback_explicit`). */
#ifndef TC_QUANTIZE_H
#define TC_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "tc/dist.h"
#include "tc/error.h"
#include "tc/forward.h"
#include "tc/model.h"
#include "tc/tmodel.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_qformat {
    TC_QFORMAT_PACKED,   /* the packed ternary file (docs/PACKED_FORMAT.md) */
    TC_QFORMAT_GGUF_TQ1, /* GGUF with TQ1_0 blocks (1.69 bits per weight) */
    TC_QFORMAT_GGUF_TQ2, /* GGUF with TQ2_0 blocks (2.06 bits per weight) */
} tc_qformat;

const char *tc_qformat_name(tc_qformat f); /* "packed", "gguf-tq1", "gguf-tq2" */

typedef struct tc_quantize_opts {
    tc_tquant_settings q;         /* method, layout (packed), group, damp_frac, sequential */
    tc_qformat format;
    tc_dtype float_dtype;         /* TC_F16, or TC_F32 (the zero value) for the tensors kept in
                                     float; any other value means F16 */
    int quantize_embeddings;      /* packed only: embedding and output head ternary too (optimal,
                                     or absmean with absmean) */
    tc_dtype embd_dtype;          /* packed only: the embedding and output head in a block type
                                     tc-run multiplies with int8 activations (tc/qmat.h): Q8_0,
                                     Q6_K or Q4_0 with ggml's reference rounding; 0 (TC_F32):
                                     kept in float_dtype */
    const tc_batch *calib;        /* calibration sequences (required by calibrated), or NULL */
    const tc_calib_windows *calib_windows; /* which windows calib holds, recorded in the packed
                                     file (docs/PACKED_FORMAT.md), or NULL */
    size_t error_sample_tokens;   /* activations kept per linear input for output errors
                                     (0: 256) */
    int strict;                   /* GGUF: refuse when some linear weight cannot be ternary */
    tc_dtype fallback;            /* GGUF: the matrices that are not ternary (linear weights whose
                                     rows are not whole 32-blocks, the embedding, the output head)
                                     are stored as this type where their rows are whole blocks of
                                     it: Q8_0, Q4_0, Q4_K or Q6_K with ggml's reference rounding,
                                     or F16; elsewhere in float_dtype (as llama.cpp's quantizer
                                     falls back to F16).  0 (TC_F32): the default, Q8_0 */
    int fallback_explicit;        /* GGUF: the caller chose the fallback: a file in which no
                                     linear weight is TQ is written (else it is refused) */
    int pad_ffn;                  /* GGUF: an FFN width that is not a multiple of 256 is padded
                                     up to one with zero rows (gate, up, their biases) and zero
                                     columns (down) when that makes the file smaller, so that
                                     the down projections are TQ too; the function is the same */
    const tc_dtype *linear_types; /* mixed precision (tc/mixed.h): per layer and role, [n_layers]
                                     [TC_N_ROLES], TC_Q8_0 or TC_Q4_0 stores that linear weight of
                                     the blocks in the block type (ggml's reference rounding; in
                                     GGUF the same type), anything else leaves it ternary; NULL:
                                     every one ternary */
    const struct tc_tmixed *mixed; /* packed: the assignment's record for the header, or NULL */
    int verify;                   /* reopen the output and check every ternary tensor */
    const char *tokenizer;        /* packed: the tokenizer file to embed (tokenizer.json, GGUF,
                                     tokenizer.bin); NULL: the model's own, when it has one */
    int n_threads;
    /* Called after each layer (and once at the start with 0). */
    void (*progress)(void *ctx, double fraction);
    void *progress_ctx;
    tc_dist *dist;                /* the MPI job the calibration windows are spread over, or NULL; rank 0
                                     alone writes out_path, the others compute their share and write nothing */
} tc_quantize_opts;

/* One quantized (or kept) tensor. */
typedef struct tc_qtensor_report {
    char name[64];           /* blk.L.role, token_embd, output */
    int layer, role;
    int64_t rows, cols;
    int ternary;             /* 0: kept in float or the fallback type (why says why) */
    tc_dtype dtype;          /* the stored type: GGUF always (TQ1_0, TQ2_0 or Q4_0 when ternary),
                                packed when not ternary */
    const char *why;         /* static text, or NULL */
    double zero_share;
    double rel_weight_error;
    double rel_output_error; /* -1 without calibration data */
    double seconds;
    uint64_t bytes;          /* as stored */
} tc_qtensor_report;

/* Where the time of a run went.  The stages run on worker threads, so they
 * are thread-seconds summed over workers; the last three are wall seconds of
 * the calling thread (produce + write + verify is nearly all of `seconds`). */
typedef struct tc_quantize_times {
    double load;     /* source tensors read and converted to fp32 */
    double quantize; /* codes and scales */
    double measure;  /* weight errors, zero shares, fingerprints for verification */
    double pack;     /* packed layout (packed format) */
    double calib;    /* wall: calibration tokens through each layer, X^T X, output errors */
    double produce;  /* wall: waiting for tensors to be produced (all of the above) */
    double write;    /* wall: CRC-32, writing, syncing and renaming the file */
    double verify;   /* wall: reopening and checking the written file */
} tc_quantize_times;

/* Where the bytes of the output go: every tensor of the file is in exactly
 * one part, so the parts' bytes add up to the file's tensor bytes. */
typedef enum tc_qpart {
    TC_QPART_TERNARY,    /* the blocks' linear weights stored ternary */
    TC_QPART_FALLBACK,   /* the blocks' linear weights that are not (GGUF: the fallback type, or
                            float where rows are not whole blocks of it; stand-ins of dropped
                            sub-layers) */
    TC_QPART_EMBEDDINGS, /* the token embedding and the output head */
    TC_QPART_NORMS,      /* norms, biases and other vectors */
    TC_QPART_COUNT
} tc_qpart;

const char *tc_qpart_name(tc_qpart p); /* "ternary", "fallback", "embeddings", "norms" */

typedef struct tc_qpart_size {
    uint64_t params, bytes;
} tc_qpart_size;

typedef struct tc_quantize_report {
    tc_qtensor_report *tensors;  /* the matrices only (linear weights, embedding, head) */
    size_t n_tensors;
    double zero_share;           /* over the ternary weights */
    double rel_weight_error;     /* sqrt(sum ||W - W_hat||^2 / sum ||W||^2) over ternary tensors */
    double rel_output_error;     /* mean over ternary tensors (-1 without calibration data) */
    double seconds;
    uint64_t file_bytes;         /* the whole output file */
    uint64_t tensor_bytes;       /* its tensors' data (the rest: header, metadata, alignment) */
    tc_qpart_size parts[TC_QPART_COUNT]; /* bytes add up to tensor_bytes */
    uint64_t params;             /* every parameter of the output model */
    uint64_t linear_params, linear_bytes; /* the blocks' linear weights as stored */
    double bpw_file;             /* 8 * file_bytes / params */
    double bpw_linear;           /* 8 * linear_bytes / linear_params */
    uint64_t calib_tokens;
    int verified;                /* 1 when the written file was checked */
    int n_fallback;              /* GGUF: linear weights that cannot be ternary (rows not whole
                                    32-blocks), stored in the fallback type or float */
    int n_fallback_float;        /* of those and the embedding and head: stored in float because
                                    their rows are not whole blocks of the fallback type */
    tc_dtype fallback;           /* GGUF: the fallback type; TC_DTYPE_COUNT for packed output */
    int ffn_dim_stored;          /* GGUF: the FFN width written (the model's, or padded) */
    tc_ttok_kind tokenizer;      /* packed: the kind of tokenizer embedded (TC_TTOK_NONE: none) */
    char tokenizer_from[512];    /* the file it was taken from */
    char tokenizer_note[512];    /* why the model's own could not be embedded, or "" */
    tc_quantize_times times;
} tc_quantize_report;

/* Quantizes m into out_path (written atomically).  rep may be NULL. */
int tc_quantize_model(const tc_model *m, const char *out_path, const tc_quantize_opts *opts,
                      tc_quantize_report *rep, tc_error *err);

void tc_quantize_report_free(tc_quantize_report *r);

/* A ggml block scale per `block` columns of each row from codes and group
 * scales (the rule above): d[M][K/block].  K must be a multiple of block. */
void tc_quantize_block_scales(const int8_t *codes, const float *scales, int64_t M, int64_t K,
                              const tc_tgroup *g, int64_t block, float *d);

#ifdef __cplusplus
}
#endif

#endif
