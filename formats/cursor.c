#include "tc/cursor.h"

#include <string.h>

void tc_cursor_init(tc_cursor *c, const void *base, uint64_t size, const char *name)
{
    c->base = base;
    c->size = size;
    c->pos = 0;
    c->name = name ? name : "(memory)";
}

uint64_t tc_cursor_left(const tc_cursor *c)
{
    return c->size - c->pos;
}

static int need(tc_cursor *c, uint64_t n, const char *what, tc_error *err)
{
    if (n > c->size - c->pos)
        return tc_err(err, "%s: truncated: %s needs %llu bytes at offset %llu but the data ends at %llu",
                      c->name, what, (unsigned long long)n, (unsigned long long)c->pos,
                      (unsigned long long)c->size);
    return TC_OK;
}

/* Little-endian loads, byte by byte, so alignment and host order never matter. */
static uint64_t load_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int read_le(tc_cursor *c, int n, uint64_t *v, const char *what, tc_error *err)
{
    if (need(c, (uint64_t)n, what, err))
        return TC_ERR;
    *v = load_le(c->base + c->pos, n);
    c->pos += (uint64_t)n;
    return TC_OK;
}

int tc_cursor_u8(tc_cursor *c, uint8_t *v, const char *what, tc_error *err)
{
    uint64_t x;
    if (read_le(c, 1, &x, what, err))
        return TC_ERR;
    *v = (uint8_t)x;
    return TC_OK;
}

int tc_cursor_u16(tc_cursor *c, uint16_t *v, const char *what, tc_error *err)
{
    uint64_t x;
    if (read_le(c, 2, &x, what, err))
        return TC_ERR;
    *v = (uint16_t)x;
    return TC_OK;
}

int tc_cursor_u32(tc_cursor *c, uint32_t *v, const char *what, tc_error *err)
{
    uint64_t x;
    if (read_le(c, 4, &x, what, err))
        return TC_ERR;
    *v = (uint32_t)x;
    return TC_OK;
}

int tc_cursor_i32(tc_cursor *c, int32_t *v, const char *what, tc_error *err)
{
    uint32_t x;
    if (tc_cursor_u32(c, &x, what, err))
        return TC_ERR;
    memcpy(v, &x, sizeof *v);
    return TC_OK;
}

int tc_cursor_u64(tc_cursor *c, uint64_t *v, const char *what, tc_error *err)
{
    return read_le(c, 8, v, what, err);
}

int tc_cursor_f32(tc_cursor *c, float *v, const char *what, tc_error *err)
{
    uint32_t x;
    if (tc_cursor_u32(c, &x, what, err))
        return TC_ERR;
    memcpy(v, &x, sizeof *v);
    return TC_OK;
}

int tc_cursor_f64(tc_cursor *c, double *v, const char *what, tc_error *err)
{
    uint64_t x;
    if (tc_cursor_u64(c, &x, what, err))
        return TC_ERR;
    memcpy(v, &x, sizeof *v);
    return TC_OK;
}

int tc_cursor_bytes(tc_cursor *c, uint64_t n, const uint8_t **p, const char *what, tc_error *err)
{
    if (need(c, n, what, err))
        return TC_ERR;
    *p = c->base + c->pos;
    c->pos += n;
    return TC_OK;
}

int tc_cursor_skip(tc_cursor *c, uint64_t n, const char *what, tc_error *err)
{
    const uint8_t *p;
    return tc_cursor_bytes(c, n, &p, what, err);
}

int tc_cursor_align(tc_cursor *c, uint64_t align, const char *what, tc_error *err)
{
    if (align == 0)
        return tc_err(err, "%s: alignment of zero for %s", c->name, what);
    uint64_t pad = (align - c->pos % align) % align;
    return tc_cursor_skip(c, pad, what, err);
}
