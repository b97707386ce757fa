/* Calibration data: documents read from text files, cut into token windows.
 *
 * Sources
 *   plain text   documents are paragraphs: maximal runs of non-blank lines
 *                (a blank line holds only spaces, tabs or a CR).  Inside a
 *                document lines are joined by "\n" (a CR before the LF is
 *                dropped).  A leading UTF-8 byte-order mark is skipped.
 *   JSON Lines   one JSON object per line; the document is the string in its
 *                text field.  Blank lines are skipped; an empty string adds
 *                no document.
 *   token lines  one JSON array of token ids per line, each used as one
 *                sequence exactly as given (no BOS is added).
 * Any of them may be gzip-compressed (recognised by the gzip magic bytes, not
 * by the name); decompressed data is capped at TC_CALIB_MAX_BYTES.  Text must
 * be valid UTF-8 without NUL bytes; errors name the file and the line.
 *
 * Sampling (tc_calib_sample)
 *   1. every document is encoded; the BOS id (if any) is put before each;
 *   2. the documents' tokens are concatenated, in order, into one stream;
 *   3. the stream is cut into W = floor(len / L) non-overlapping windows of L
 *      tokens, starting at token 0 (the tail shorter than L is dropped);
 *   4. N of the W windows are chosen without replacement by selection
 *      sampling (Knuth's Algorithm S): window i (0-based) is taken when
 *      u_i < N - taken, u_i uniform in [0, W - i) drawn from splitmix64
 *      seeded with the seed (unbiased by rejection, see calib.c);
 *   5. the chosen windows are returned in stream order.
 *   With W < N every window is used and a warning says so.  A window of L
 *   tokens yields L - 1 next-token predictions, so L must be at least 2.
 *
 * Calibration and evaluation (tc_calib_windows)
 *   Every set records which windows of which text it holds: the file's
 *   identity (device and inode), a fingerprint of the token stream, L and the
 *   windows' grid indices.  Sampling may be told to avoid such records: a
 *   record of the same text (same file by identity, or a stream with the same
 *   length and fingerprint) makes every window that shares a token with one
 *   of the recorded windows ineligible (token ranges, so another L is handled),
 *   and the N windows are chosen among the eligible ones in step 4.  This is
 *   how an evaluation stays disjoint from the windows that calibrated, even
 *   across separate runs (the record travels in the report and in the packed
 *   file).  No eligible window left is an error, not a silent overlap. */
#ifndef TC_CALIB_H
#define TC_CALIB_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_CALIB_MAX_BYTES ((uint64_t)1 << 30) /* per file, after decompression */

#define TC_CALIB_DEFAULT_SAMPLES 64
#define TC_CALIB_DEFAULT_SEQ_LEN 256
#define TC_CALIB_ALL ((size_t)-1) /* n_samples: every window, without a shortage warning */

/* Encodes text[0..len) into a malloc'd array of ids (*ids, *n); the caller
 * frees *ids with free().  Must not add BOS itself: sampling does that. */
typedef int (*tc_encode_fn)(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n,
                            tc_error *err);

typedef enum tc_calib_format {
    TC_CALIB_AUTO,  /* JSON Lines when the name ends in .jsonl/.json (optionally .gz), else text */
    TC_CALIB_TEXT,
    TC_CALIB_JSONL
} tc_calib_format;

/* A file's identity: the device and inode its path resolves to (links
 * followed), so that two spellings of one file compare equal. */
typedef struct tc_file_id {
    uint64_t dev, ino;
} tc_file_id;

/* Fills *id for path; TC_ERR naming the file when it cannot be examined. */
int tc_file_id_of(const char *path, tc_file_id *id, tc_error *err);

/* Documents: doc i is text[offsets[i] .. offsets[i+1]), not NUL-terminated
 * (the whole buffer is, after offsets[n_docs]). */
typedef struct tc_calib_docs {
    char *text;
    size_t *offsets;  /* n_docs + 1, or NULL when empty */
    size_t n_docs;
    size_t cap_text, cap_docs;
    /* Where they came from (tc_calib_docs_read): the first file's name and
     * identity; n_files counts the files read, 0 for documents added by hand. */
    char *source;
    tc_file_id file;
    size_t n_files;
} tc_calib_docs;

typedef enum tc_calib_kind {
    TC_CALIB_KIND_TEXT,   /* windows of L tokens cut from a text's token stream */
    TC_CALIB_KIND_TOKENS  /* sequences of a pre-tokenized file, used as given */
} tc_calib_kind;

/* Which windows of which text a set holds.  Text: window i of the grid covers
 * the stream's tokens [i * seq_len, (i + 1) * seq_len).  Tokens: index[k] is
 * the line (0-based, blank lines not counted) of a sequence. */
typedef struct tc_calib_windows {
    tc_calib_kind kind;
    char *source;           /* the file as named, or NULL (malloc'd) */
    int have_file;          /* file holds the source's identity */
    tc_file_id file;
    uint64_t stream_tokens; /* text: tokens in the whole stream, BOS included */
    uint64_t fingerprint;   /* text: FNV-1a (64 bit) of the stream's ids as little-endian int32 */
    size_t seq_len;         /* text: L */
    uint64_t seed;
    size_t n_windows;
    size_t *index;          /* n_windows indices, ascending (malloc'd) */
} tc_calib_windows;

void tc_calib_windows_free(tc_calib_windows *w);
int tc_calib_windows_copy(tc_calib_windows *dst, const tc_calib_windows *src, tc_error *err);

/* Whether w was cut from the same text as the stream described by (file,
 * stream_tokens, fingerprint): 2 same file and same stream, 1 same stream in
 * another file (a copy), -1 same file but another stream (the file changed
 * or another tokenizer made it), 0 unrelated.  Token records relate to no text. */
int tc_calib_windows_relation(const tc_calib_windows *w, const tc_file_id *file, uint64_t stream_tokens,
                              uint64_t fingerprint);

/* The record as a JSON object (caller frees with cJSON_Delete): source,
 * kind, file {dev, ino}, stream_tokens, stream_fnv1a64, seq_len, seed,
 * samples, n_tokens, windows (docs/CALIBRATION.md).  NULL when out of memory. */
cJSON *tc_calib_windows_to_json(const tc_calib_windows *w);
/* Reads a record back from such an object (name is used in messages), as
 * untrusted input: every field checked, indices ascending and inside the
 * grid.  Extra fields are ignored. */
int tc_calib_windows_from_json(const cJSON *o, const char *name, tc_calib_windows *w, tc_error *err);
/* One line for a person: "64 windows of 256 tokens (16384 tokens) of FILE:
 * 0, 3, 7-9, ... of 482"; malloc'd, NULL when out of memory. */
char *tc_calib_windows_describe(const tc_calib_windows *w);

/* Sequences as the forward pass takes them: sequence i is
 * tokens[offsets[i] .. offsets[i+1]). */
typedef struct tc_calib_set {
    int32_t *tokens;
    size_t *offsets;   /* n_seqs + 1 */
    size_t n_seqs;
    size_t n_tokens;   /* offsets[n_seqs] */
    char warning[TC_ERROR_MAX]; /* set when fewer samples than asked for exist; else "" */
    tc_calib_windows win;       /* which windows these are; win.n_windows == n_seqs */
    size_t n_grid;              /* text: W, the windows the text holds */
    size_t n_avoided;           /* text: windows left out for sharing tokens with avoided ones */
    size_t n_avoid_applied;     /* text: avoided records that are this text */
} tc_calib_set;

typedef struct tc_calib_opts {
    size_t n_samples;  /* N, or TC_CALIB_ALL */
    size_t seq_len;    /* L, at least 2 */
    uint64_t seed;
    int32_t bos_id;    /* put before every document; -1 for none */
    /* Windows to keep clear of (those that calibrated): a record of the same
     * text makes every window sharing a token with it ineligible. */
    const tc_calib_windows *avoid;
    size_t n_avoid;
} tc_calib_opts;

/* The defaults when a user gives only a model and a text: N = 64,
 * L = min(256, the model's context), seed 0, bos_id as given. */
tc_calib_opts tc_calib_default_opts(size_t model_context, int32_t bos_id);

/* Reads path's documents and appends them to d (zero d first; several files
 * may be read into one set).  text_field: the JSON Lines field, NULL = "text".
 * A file that fails adds no documents.  The first file read is recorded as
 * d's source (name and identity). */
int tc_calib_docs_read(tc_calib_docs *d, const char *path, tc_calib_format fmt,
                       const char *text_field, tc_error *err);
/* Appends one document (copied). */
int tc_calib_docs_add(tc_calib_docs *d, const char *text, size_t len, tc_error *err);
void tc_calib_docs_free(tc_calib_docs *d);

/* Disjoint parts of one text: eval gets the last n_eval documents, calib the
 * ones before them (as the assets suggest: calibrate on one end, evaluate on
 * the other).  Both must end up non-empty. */
int tc_calib_split(const tc_calib_docs *all, size_t n_eval, tc_calib_docs *calib, tc_calib_docs *eval,
                   tc_error *err);

/* Encodes docs and chooses windows as described above, filling out->win
 * (source and identity from docs when they came from one file).  With avoid
 * records of the same text and no window left eligible: an error naming the
 * text.  A record whose file is the same but whose stream differs (the file
 * changed, or another tokenizer) still has its token ranges left out, and the
 * warning says the two cannot be matched. */
int tc_calib_sample(const tc_calib_docs *docs, tc_encode_fn encode, void *ctx,
                    const tc_calib_opts *opts, tc_calib_set *out, tc_error *err);

/* Reads pre-tokenized JSON Lines: every id in [0, vocab_size), every array
 * non-empty and at most max_seq_len long.  out->win records the file and the
 * line of each sequence. */
int tc_calib_read_tokens(const char *path, int64_t vocab_size, size_t max_seq_len, tc_calib_set *out,
                         tc_error *err);

/* Keeps n of s's sequences, chosen as windows are in step 4 (stream order
 * kept); with n >= n_seqs keeps all and sets the warning when n > n_seqs. */
int tc_calib_set_pick(tc_calib_set *s, size_t n, uint64_t seed, tc_error *err);

void tc_calib_set_free(tc_calib_set *s);

/* Reads a whole file, inflating it if it starts with the gzip magic; refuses
 * more than max_bytes of (decompressed) data.  *out is NUL-terminated. */
int tc_calib_read_file(const char *path, uint64_t max_bytes, char **out, size_t *len, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
