/* RoPE frequency tables (tc/rope.h says what each kind computes).  The
 * arithmetic follows transformers' modeling_rope_utils step for step in
 * float32, since that is where the reference computes it; only the
 * transcendental functions come from the C library in double and are
 * rounded once. */
#include "tc/rope.h"

#include <math.h>
#include <string.h>

#include "tc/error.h"

static const char *const kind_names[TC_ROPE_KIND_COUNT] = {
    "default", "linear", "dynamic", "llama3", "yarn", "longrope",
};

const char *tc_rope_kind_name(tc_rope_kind k)
{
    return (unsigned)k < TC_ROPE_KIND_COUNT ? kind_names[k] : "?";
}

int tc_rope_kind_from_name(const char *s, tc_rope_kind *k)
{
    for (int i = 0; i < TC_ROPE_KIND_COUNT; i++)
        if (strcmp(s, kind_names[i]) == 0)
            return *k = (tc_rope_kind)i, TC_OK;
    return TC_ERR;
}

tc_rope tc_rope_default(double theta, int rot_dims)
{
    tc_rope r;
    memset(&r, 0, sizeof r);
    r.kind = TC_ROPE_DEFAULT;
    r.theta = theta;
    r.rot_dims = rot_dims;
    r.factor = 1.0;
    r.attn_factor = 1.0;
    return r;
}

int tc_rope_depends_on_length(const tc_rope *r)
{
    return r->kind == TC_ROPE_DYNAMIC || r->kind == TC_ROPE_LONGROPE;
}

/* base ** (2i / dim) for pair i, as torch computes it over a float32 arange. */
static float pair_power(double base, int i, int dim)
{
    float e = (float)(2 * i) / (float)dim;
    return (float)pow(base, (double)e);
}

static void default_freqs(double base, int dim, float *inv)
{
    for (int i = 0; i < dim / 2; i++)
        inv[i] = 1.0f / pair_power(base, i, dim);
}

/* Llama 3.1: wavelengths longer than orig/low are slowed by factor, shorter
 * than orig/high kept, and those between blended by where the wavelength
 * falls. */
static void llama3_freqs(const tc_rope *r, float *inv)
{
    int dim = r->rot_dims;
    float factor = (float)r->factor;
    double low_wavelen = r->orig_max_pos / r->low_freq_factor;
    double high_wavelen = r->orig_max_pos / r->high_freq_factor;
    default_freqs(r->theta, dim, inv);
    for (int i = 0; i < dim / 2; i++) {
        float wavelen = (float)(2.0 * M_PI) / inv[i];
        float scaled = wavelen > (float)low_wavelen ? inv[i] / factor : inv[i];
        int medium = !(wavelen < (float)high_wavelen) && !(wavelen > (float)low_wavelen);
        if (medium) {
            float smooth = ((float)r->orig_max_pos / wavelen - (float)r->low_freq_factor) /
                           (float)(r->high_freq_factor - r->low_freq_factor);
            scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        inv[i] = scaled;
    }
}

/* The pair index at which a wavelength makes `rotations` turns over the
 * original context (YaRN's correction dimension). */
static double yarn_dim(double rotations, int dim, double base, int orig)
{
    return (dim * log(orig / (rotations * 2.0 * M_PI))) / (2.0 * log(base));
}

static void yarn_freqs(const tc_rope *r, float *inv)
{
    int dim = r->rot_dims;
    double low = yarn_dim(r->beta_fast, dim, r->theta, r->orig_max_pos);
    double high = yarn_dim(r->beta_slow, dim, r->theta, r->orig_max_pos);
    if (r->truncate) {
        low = floor(low);
        high = ceil(high);
    }
    if (low < 0)
        low = 0;
    if (high > dim - 1)
        high = dim - 1;
    if (low == high)
        high += 0.001; /* as transformers: no division by zero */
    float factor = (float)r->factor;
    for (int i = 0; i < dim / 2; i++) {
        float p = pair_power(r->theta, i, dim);
        float extra = 1.0f / p, inter = 1.0f / (factor * p);
        float ramp = ((float)i - (float)low) / (float)(high - low);
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float keep = 1.0f - ramp; /* share of the extrapolated (unscaled) frequency */
        inv[i] = inter * (1.0f - keep) + extra * keep;
    }
}

void tc_rope_inv_freq(const tc_rope *r, size_t seq_len, float *inv)
{
    int dim = r->rot_dims;
    switch (r->kind) {
    case TC_ROPE_DEFAULT:
        default_freqs(r->theta, dim, inv);
        return;
    case TC_ROPE_LINEAR:
        default_freqs(r->theta, dim, inv);
        for (int i = 0; i < dim / 2; i++)
            inv[i] /= (float)r->factor;
        return;
    case TC_ROPE_DYNAMIC: {
        /* The base grows once the sequence outgrows the trained context;
         * transformers computes it in float32 from the length tensor. */
        if (seq_len <= (size_t)r->max_pos) {
            default_freqs(r->theta, dim, inv);
            return;
        }
        float f = (float)r->factor;
        float t = f * (float)seq_len / (float)r->max_pos - (f - 1.0f);
        float base = (float)r->theta * (float)pow((double)t, (double)dim / (double)(dim - 2));
        for (int i = 0; i < dim / 2; i++) {
            float e = (float)(2 * i) / (float)dim;
            inv[i] = 1.0f / (float)pow((double)base, (double)e);
        }
        return;
    }
    case TC_ROPE_LLAMA3:
        llama3_freqs(r, inv);
        return;
    case TC_ROPE_YARN:
        yarn_freqs(r, inv);
        return;
    case TC_ROPE_LONGROPE: {
        const float *ext = seq_len > (size_t)r->orig_max_pos ? r->long_factor : r->short_factor;
        for (int i = 0; i < dim / 2; i++)
            inv[i] = 1.0f / (ext[i] * pair_power(r->theta, i, dim));
        return;
    }
    case TC_ROPE_KIND_COUNT:
        break;
    }
    default_freqs(r->theta, dim, inv);
}

void tc_rope_angles(const tc_rope *r, const float *inv_freq, size_t pos, float *cs)
{
    float scale = (float)r->attn_factor;
    for (int i = 0; i < r->rot_dims / 2; i++) {
        float a = (float)pos * inv_freq[i];
        cs[2 * i] = (float)cos((double)a) * scale;
        cs[2 * i + 1] = (float)sin((double)a) * scale;
    }
}
