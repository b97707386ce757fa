/* Rotary position embeddings as transformers and llama.cpp define them: the
 * kind and its parameters are data read from the checkpoint; this module
 * turns them into the per-pair inverse frequencies and the cos/sin tables
 * every forward pass applies.
 *
 * Kinds (transformers' rope_type): default, linear (positions divided by
 * factor), dynamic (NTK: the base grows with the sequence length past the
 * trained context), llama3 (Llama 3.1's smooth per-wavelength scaling), yarn
 * (interpolation ramped between two rotation counts, cos/sin scaled by an
 * attention factor) and longrope (Phi-3: per-pair short or long factors,
 * chosen by the sequence length, and an attention factor).
 *
 * Like transformers, the inverse frequencies and the angles pos * inv_freq
 * are computed in float32, so that tc rotates by the same angles the
 * reference does. */
#ifndef TC_ROPE_H
#define TC_ROPE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most rotated pairs of a head tc holds parameters for (head_dim 512). */
#define TC_ROPE_MAX_PAIRS 256

typedef enum tc_rope_kind {
    TC_ROPE_DEFAULT,
    TC_ROPE_LINEAR,
    TC_ROPE_DYNAMIC,
    TC_ROPE_LLAMA3,
    TC_ROPE_YARN,
    TC_ROPE_LONGROPE,
    TC_ROPE_KIND_COUNT
} tc_rope_kind;

typedef struct tc_rope {
    tc_rope_kind kind;
    double theta;          /* base */
    int rot_dims;          /* rotated dimensions of a head (even; < head_dim: partial rotary) */
    double factor;         /* linear, dynamic, llama3, yarn, longrope */
    int max_pos;           /* the config's max_position_embeddings (dynamic) */
    int orig_max_pos;      /* original_max_position_embeddings (llama3, yarn, longrope) */
    double low_freq_factor, high_freq_factor; /* llama3 */
    double beta_fast, beta_slow;              /* yarn */
    int truncate;                             /* yarn: round the correction range outward */
    double attn_factor;    /* yarn, longrope: multiplies cos and sin (1 otherwise) */
    float short_factor[TC_ROPE_MAX_PAIRS];    /* longrope, rot_dims / 2 of each */
    float long_factor[TC_ROPE_MAX_PAIRS];
} tc_rope;

/* A default rope of the given base over rot_dims dimensions. */
tc_rope tc_rope_default(double theta, int rot_dims);

const char *tc_rope_kind_name(tc_rope_kind k);      /* "default", "linear", ... */
int tc_rope_kind_from_name(const char *s, tc_rope_kind *k); /* TC_OK or TC_ERR */

/* Does the frequency table depend on the sequence length (dynamic, longrope)? */
int tc_rope_depends_on_length(const tc_rope *r);

/* The inverse frequency of each of the rot_dims / 2 pairs for a sequence of
 * seq_len positions (only dynamic and longrope look at it). */
void tc_rope_inv_freq(const tc_rope *r, size_t seq_len, float *inv_freq);

/* cos and sin of position pos for every pair, interleaved: cs[2i], cs[2i+1],
 * times the attention factor. */
void tc_rope_angles(const tc_rope *r, const float *inv_freq, size_t pos, float *cs);

#ifdef __cplusplus
}
#endif

#endif
