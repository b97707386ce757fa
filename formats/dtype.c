#include "tc/dtype.h"

#include <math.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/ggml_quants.h"
#include "tc/ggml_ternary.h"

static const struct {
    const char *name;
    uint64_t block_elems, block_bytes;
} info[TC_DTYPE_COUNT] = {
    [TC_F32] = {"F32", 1, 4},      [TC_F16] = {"F16", 1, 2},     [TC_BF16] = {"BF16", 1, 2},
    [TC_F64] = {"F64", 1, 8},      [TC_I8] = {"I8", 1, 1},       [TC_U8] = {"U8", 1, 1},
    [TC_I16] = {"I16", 1, 2},      [TC_I32] = {"I32", 1, 4},     [TC_I64] = {"I64", 1, 8},
    [TC_BOOL] = {"BOOL", 1, 1},    [TC_Q8_0] = {"Q8_0", 32, 34}, [TC_TQ1_0] = {"TQ1_0", 256, 54},
    [TC_TQ2_0] = {"TQ2_0", 256, 66},
    [TC_Q4_0] = {"Q4_0", 32, 18},  [TC_Q4_1] = {"Q4_1", 32, 20},  [TC_Q5_0] = {"Q5_0", 32, 22},
    [TC_Q5_1] = {"Q5_1", 32, 24},  [TC_Q2_K] = {"Q2_K", 256, 84}, [TC_Q3_K] = {"Q3_K", 256, 110},
    [TC_Q4_K] = {"Q4_K", 256, 144}, [TC_Q5_K] = {"Q5_K", 256, 176}, [TC_Q6_K] = {"Q6_K", 256, 210},
    [TC_IQ4_NL] = {"IQ4_NL", 32, 18}, [TC_IQ4_XS] = {"IQ4_XS", 256, 136},
    [TC_I2_S] = {"I2_S", 4, 1}, /* plus the 32-byte tail (tc_dtype_span) */
};

const char *tc_dtype_name(tc_dtype t)
{
    return (unsigned)t < TC_DTYPE_COUNT ? info[t].name : "?";
}

int tc_dtype_from_name(const char *s, tc_dtype *out)
{
    for (int t = 0; t < TC_DTYPE_COUNT; t++) {
        if (strcmp(s, info[t].name) == 0) {
            *out = (tc_dtype)t;
            return TC_OK;
        }
    }
    return TC_ERR;
}

uint64_t tc_dtype_block_elems(tc_dtype t)
{
    return info[t].block_elems;
}

uint64_t tc_dtype_block_bytes(tc_dtype t)
{
    return info[t].block_bytes;
}

int tc_dtype_span(tc_dtype t, uint64_t n, uint64_t *bytes, tc_error *err)
{
    if ((unsigned)t >= TC_DTYPE_COUNT)
        return tc_err(err, "unknown dtype %d", (int)t);
    uint64_t be = info[t].block_elems;
    if (n % be != 0)
        return tc_err(err, "%llu elements is not a whole number of %s blocks of %llu",
                      (unsigned long long)n, info[t].name, (unsigned long long)be);
    if (t == TC_I2_S && n % 128 != 0)
        return tc_err(err, "%llu elements is not a whole number of I2_S blocks of 128", (unsigned long long)n);
    if (tc_mul_u64(n / be, info[t].block_bytes, bytes))
        return tc_err(err, "%llu elements of %s overflow a 64-bit byte count", (unsigned long long)n,
                      info[t].name);
    if (t == TC_I2_S)
        *bytes += 32; /* the scale's tail, as bitnet.cpp's ggml sizes the tensor */
    return TC_OK;
}

int tc_dtype_is_float_convertible(tc_dtype t)
{
    return t == TC_F32 || t == TC_F16 || t == TC_BF16 || t == TC_F64 || t == TC_TQ1_0 || t == TC_TQ2_0 ||
           tc_ggml_quant_is(t);
}

float tc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t tc_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) /* inf or nan (keep nan quiet and non-zero) */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal or zero in f16 */
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* may carry into the exponent, which is the right rounding */
    return (uint16_t)(sign | h);
}

float tc_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t tc_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) /* nan: keep it nan */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static uint16_t load_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static void f16_to_f32_scalar(const uint8_t *p, uint64_t n, float *dst)
{
    for (uint64_t i = 0; i < n; i++)
        dst[i] = tc_f16_to_f32(load_u16(p + 2 * i));
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>

/* F16C converts eight halves per instruction: loading a 7B F16 checkpoint
 * is otherwise bound by the scalar conversion, not by memory. */
__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint8_t *p, uint64_t n, float *dst)
{
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i))));
    f16_to_f32_scalar(p + 2 * i, n - i, dst + i);
}

/* Asked once per process: cpuid traps to the hypervisor in a virtual
 * machine, costing more than converting a few thousand values. */
static pthread_once_t f16c_once = PTHREAD_ONCE_INIT;
static int f16c_usable;

static void f16c_probe(void)
{
    /* clang 14 knows no "f16c" for __builtin_cpu_supports: ask cpuid; "avx"
     * also checks that the OS saves the ymm registers. */
    unsigned a, b, c, d;
    f16c_usable = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && __builtin_cpu_supports("avx");
}

static void f16_to_f32(const uint8_t *p, uint64_t n, float *dst)
{
    pthread_once(&f16c_once, f16c_probe);
    if (f16c_usable)
        f16_to_f32_f16c(p, n, dst);
    else
        f16_to_f32_scalar(p, n, dst);
}
#else
static void f16_to_f32(const uint8_t *p, uint64_t n, float *dst)
{
    f16_to_f32_scalar(p, n, dst);
}
#endif

int tc_convert_to_f32(tc_dtype t, const void *src, uint64_t n, float *dst, tc_error *err)
{
    const uint8_t *p = src;
    switch (t) {
    case TC_F32:
        memcpy(dst, p, (size_t)n * 4);
        return TC_OK;
    case TC_F16:
        f16_to_f32(p, n, dst);
        return TC_OK;
    case TC_BF16:
        for (uint64_t i = 0; i < n; i++)
            dst[i] = tc_bf16_to_f32(load_u16(p + 2 * i));
        return TC_OK;
    case TC_F64:
        for (uint64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return TC_OK;
    case TC_TQ1_0:
    case TC_TQ2_0:
        /* Blocks are independent, so the tensor decodes as one long row. */
        if (n > INT64_MAX)
            return tc_err(err, "%s tensor is too large", tc_dtype_name(t));
        return tc_ggml_ternary_dequantize(t, p, (int64_t)n, dst, err);
    default:
        if (tc_ggml_quant_is(t))
            return tc_ggml_quant_dequantize(t, p, n, dst, err);
        return tc_err(err, "cannot convert %s to fp32", tc_dtype_name(t));
    }
}

int tc_convert_from_f32(tc_dtype t, const float *src, uint64_t n, void *dst, tc_error *err)
{
    uint8_t *p = dst;
    switch (t) {
    case TC_F32:
        memcpy(p, src, (size_t)n * 4);
        return TC_OK;
    case TC_F16:
    case TC_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = t == TC_F16 ? tc_f32_to_f16(src[i]) : tc_f32_to_bf16(src[i]);
            p[2 * i] = (uint8_t)h;
            p[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return TC_OK;
    default:
        if (tc_ggml_quant_can_encode(t))
            return tc_ggml_quant_quantize(t, src, n, dst, err);
        return tc_err(err, "cannot write %s from fp32", tc_dtype_name(t));
    }
}
