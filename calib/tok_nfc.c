/* NFC as Unicode Standard Annex #15 defines it: full canonical
 * decomposition, canonical ordering of combining marks, then canonical
 * composition; Hangul syllables algorithmically.  Text with no code point at
 * or above U+0300 is already in NFC and is copied as is. */
#include "tok_nfc.h"

#include <stdlib.h>
#include <string.h>

enum {
    S_BASE = 0xac00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11a7,
    L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
    S_COUNT = L_COUNT * N_COUNT,
};

static int ccc_of(uint32_t cp)
{
    size_t lo = 0, hi = tok_nfc_ccc_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t c = tok_nfc_ccc[mid] >> 8;
        if (c == cp)
            return (int)(tok_nfc_ccc[mid] & 0xff);
        if (c < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static const uint32_t *decomposition(uint32_t cp, size_t *len)
{
    size_t lo = 0, hi = tok_nfc_dec_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tok_nfc_dec[mid][0] == cp) {
            *len = tok_nfc_dec[mid][2];
            return &tok_nfc_dec_cps[tok_nfc_dec[mid][1]];
        }
        if (tok_nfc_dec[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The primary composite of a and b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = tok_nfc_comp_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *e = tok_nfc_comp[mid];
        if (e[0] == a && e[1] == b)
            return e[2];
        if (e[0] < a || (e[0] == a && e[1] < b))
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Appends the full canonical decomposition of cp; the largest one of any
 * code point has 4 code points, the caller reserves room for it. */
static size_t decompose(uint32_t cp, uint32_t *out)
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (t) {
            out[2] = T_BASE + t;
            return 3;
        }
        return 2;
    }
    size_t len;
    const uint32_t *d = decomposition(cp, &len);
    if (!d) {
        out[0] = cp;
        return 1;
    }
    size_t n = decompose(d[0], out);
    if (len > 1)
        n += decompose(d[1], out + n);
    return n;
}

static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || c >= 0xf5)
        return 0;
    uint32_t v = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v < 0xe000))
        return 0;
    *cp = v;
    return len;
}

static size_t utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Stable sort of each run of non-starters by combining class. */
static void reorder(uint32_t *c, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        int k = ccc_of(c[i]);
        if (k == 0)
            continue;
        uint32_t v = c[i];
        size_t j = i;
        while (j > 0 && ccc_of(c[j - 1]) > k) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = v;
    }
}

/* Canonical composition in place; returns the new length. */
static size_t recompose(uint32_t *c, size_t n)
{
    size_t o = 0;
    long starter = -1;
    int last = -1; /* class of the last kept mark after the starter; -1: none */
    for (size_t i = 0; i < n; i++) {
        int k = ccc_of(c[i]);
        if (starter >= 0 && (last < 0 || (k != 0 && last < k))) {
            uint32_t comp = compose(c[starter], c[i]);
            if (comp) {
                c[starter] = comp;
                continue;
            }
        }
        if (k == 0) {
            starter = (long)o;
            last = -1;
        } else {
            last = k;
        }
        c[o++] = c[i];
    }
    return o;
}

long tok_nfc(const char *s, size_t n, char **out, size_t *cap, size_t *out_len, uint32_t **cps,
             size_t *cps_cap)
{
    size_t m = 0;
    int simple = 1;
    if (grow((void **)cps, cps_cap, 4 * n + 4, sizeof **cps))
        return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (k == 0)
            return 1 + (long)i;
        simple &= cp < 0x300;
        m += decompose(cp, *cps + m);
        i += k;
    }
    if (grow((void **)out, cap, simple ? n + 1 : 4 * m + 1, 1))
        return -1;
    if (simple) {
        memcpy(*out, s, n);
        *out_len = n;
        return 0;
    }
    reorder(*cps, m);
    m = recompose(*cps, m);
    size_t o = 0;
    for (size_t i = 0; i < m; i++)
        o += utf8_put((*cps)[i], *out + o);
    *out_len = o;
    return 0;
}
