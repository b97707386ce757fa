/* Tokenizers that reproduce their reference implementations id for id.
 *
 * Two families behind one opaque handle:
 *  - SentencePiece-style BPE over characters: dummy-prefix space, spaces
 *    written as U+2581, byte fallback to <0xNN> tokens; merges chosen by
 *    token score (llama2.c tokenizer.bin, GGUF model "llama") or by merge
 *    rank (Hugging Face tokenizer.json with byte_fallback / Metaspace).
 *  - Byte-level BPE (GPT-2 family): text split by the pre-tokenizer's
 *    regular expressions, bytes merged by merge rank (GGUF model "gpt2" with
 *    its "pre" name, tokenizer.json with ByteLevel / Split pre-tokenizers).
 *
 * Special-token text in the input is matched only with TC_TOK_PARSE_SPECIAL;
 * user-defined (non-special added) tokens are always matched, as the
 * reference implementations do.  A tokenizer is immutable after loading, so
 * one handle may encode from several threads at once. */
#ifndef TC_TOKENIZER_H
#define TC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"
#include "tc/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_tokenizer tc_tokenizer;

/* Flags for tc_tokenizer_encode. */
#define TC_TOK_BOS 1u           /* prepend the BOS token */
#define TC_TOK_EOS 2u           /* append the EOS token */
#define TC_TOK_PARSE_SPECIAL 4u /* special-token text in the input becomes that token */

/* Detects the kind by content: GGUF magic -> its vocabulary; a JSON object
 * -> tokenizer.json; anything else -> llama2.c tokenizer.bin read to EOF. */
int tc_tokenizer_open(tc_tokenizer **t, const char *path, tc_error *err);
/* The vocabulary embedded in an open GGUF file (tokenizer.ggml.*). */
int tc_tokenizer_from_gguf(tc_tokenizer **t, const tc_gguf *g, tc_error *err);
/* llama2.c tokenizer.bin; vocab_size <= 0 reads tokens until end of file. */
int tc_tokenizer_from_llama2c(tc_tokenizer **t, const char *path, int vocab_size, tc_error *err);
/* Hugging Face tokenizer.json (BPE model). BOS/EOS come from a
 * tokenizer_config.json beside it when present, else from the template. */
int tc_tokenizer_from_hf_json(tc_tokenizer **t, const char *path, tc_error *err);
/* The same two from bytes in memory, as a container file embeds them (name
 * is used in messages): a tokenizer.json's text with the
 * tokenizer_config.json that was beside it (config NULL: there was none),
 * and a llama2.c tokenizer.bin. */
int tc_tokenizer_from_hf_json_mem(tc_tokenizer **t, const char *name, const char *json, size_t len,
                                  const char *config, size_t config_len, tc_error *err);
int tc_tokenizer_from_llama2c_mem(tc_tokenizer **t, const char *name, const uint8_t *data, uint64_t size,
                                  int vocab_size, tc_error *err);
void tc_tokenizer_free(tc_tokenizer *t);

/* Encodes len bytes of text (UTF-8; need not be NUL-terminated) into a new
 * malloc'd array *ids of *n_ids tokens.  Fails (naming the offset) when a
 * character can be encoded neither by the vocabulary, nor by byte
 * fallback, nor as the unknown token. */
int tc_tokenizer_encode(const tc_tokenizer *t, const char *text, size_t len, unsigned flags,
                        int32_t **ids, size_t *n_ids, tc_error *err);

/* Decodes ids into a new malloc'd NUL-terminated string (*len bytes before
 * the NUL): byte tokens become their byte, byte-level pieces their bytes,
 * U+2581 a space; control tokens (BOS, EOS, ...) produce no text; for
 * SentencePiece-style tokenizers one leading space of the output is
 * removed, so decode(encode(s)) == s. */
int tc_tokenizer_decode(const tc_tokenizer *t, const int32_t *ids, size_t n, char **text,
                        size_t *len, tc_error *err);

/* The bytes one token contributes to streamed output, pointing into the
 * tokenizer (valid until it is freed; not NUL-terminated, possibly a part of
 * a UTF-8 sequence).  prev is the token before it, or -1 at the start: after
 * the start or BOS the dummy-prefix space is dropped, as llama2.c does. */
int tc_tokenizer_piece(const tc_tokenizer *t, int32_t prev, int32_t id, const char **piece,
                       size_t *len, tc_error *err);

int32_t tc_tokenizer_vocab_size(const tc_tokenizer *t);
int32_t tc_tokenizer_bos(const tc_tokenizer *t); /* -1 when the source has none */
int32_t tc_tokenizer_eos(const tc_tokenizer *t); /* -1 when the source has none */
int32_t tc_tokenizer_unk(const tc_tokenizer *t); /* -1 when the source has none */
/* The flags the source asks for by default (GGUF add_bos_token, ...). */
unsigned tc_tokenizer_default_flags(const tc_tokenizer *t);
/* The raw text of a token as stored in the vocabulary (for diagnostics). */
int tc_tokenizer_token_text(const tc_tokenizer *t, int32_t id, const char **text, size_t *len);
/* Looks a vocabulary entry up by its stored text (a linear search, for
 * tools and tests rather than inner loops); -1 when absent. */
int32_t tc_tokenizer_find(const tc_tokenizer *t, const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif
