/* JSON text that keeps floats floats (tc/json_text.h). */
#include "tc/json_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Marking ------------------------------------------------------------- */

/* The next number token of text after *pos: 1 and whether it is spelled as a
 * float, or 0 at the end.  Strings are skipped whole, escapes included. */
static int next_number(const char **pos, int *is_float)
{
    const char *p = *pos;
    for (; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                break;
            continue;
        }
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            int f = 0;
            for (; *p && strchr("0123456789+-.eE", *p); p++)
                f |= *p == '.' || *p == 'e' || *p == 'E';
            *is_float = f;
            *pos = p;
            return 1;
        }
    }
    *pos = p;
    return 0;
}

static void mark(cJSON *item, const char **pos)
{
    for (; item; item = item->next) {
        if (cJSON_IsNumber(item)) {
            int f = 0;
            if (!next_number(pos, &f))
                return;
            if (f)
                item->type |= TC_JSON_FLOAT;
        }
        if (item->child)
            mark(item->child, pos);
    }
}

void tc_json_mark_floats(cJSON *root, const char *text)
{
    const char *pos = text;
    if (root && text)
        mark(root, &pos);
}

cJSON *tc_json_float(double v)
{
    cJSON *n = cJSON_CreateNumber(v);
    if (n)
        n->type |= TC_JSON_FLOAT;
    return n;
}

double tc_json_float32_value(float v)
{
    char s[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)v);
        if ((float)strtod(s, NULL) == v)
            return strtod(s, NULL);
    }
    return (double)v;
}

cJSON *tc_json_add_float(cJSON *object, const char *key, double v)
{
    cJSON *n = tc_json_float(v);
    if (n && !cJSON_AddItemToObject(object, key, n)) {
        cJSON_Delete(n);
        return NULL;
    }
    return n;
}

/* ---- Printing ------------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t n, cap;
    int failed;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void indent(buf *b, int depth)
{
    puts_(b, "\n");
    for (int i = 0; i < depth; i++)
        puts_(b, "  ");
}

/* The shortest text that reads back as v, spelled as Python's repr spells
 * a float: positional between 1e-4 and 1e16, with an exponent outside. */
static void number(buf *b, double v, int as_float)
{
    char s[64];
    if (!isfinite(v)) {
        b->failed = 1;
        return;
    }
    double a = fabs(v);
    if (!as_float && v == floor(v) && a < 9007199254740992.0) {
        snprintf(s, sizeof s, "%.0f", v);
    } else if (a == 0.0 || (a >= 1e-4 && a < 1e16)) {
        for (int d = 0; d <= 24; d++) {
            snprintf(s, sizeof s, "%.*f", d, v);
            if (strtod(s, NULL) == v)
                break;
        }
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(s, sizeof s, "%.*e", prec - 1, v);
            if (strtod(s, NULL) == v)
                break;
        }
    }
    if (as_float && !strpbrk(s, ".eE"))
        strcat(s, ".0");
    puts_(b, s);
}

static void string(buf *b, const char *s)
{
    puts_(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                puts_(b, esc);
            } else {
                put(b, (const char *)p, 1);
            }
        }
    }
    puts_(b, "\"");
}

static void value(buf *b, const cJSON *item, int depth)
{
    switch (item->type & 0xFF) {
    case cJSON_NULL: puts_(b, "null"); break;
    case cJSON_False: puts_(b, "false"); break;
    case cJSON_True: puts_(b, "true"); break;
    case cJSON_Number: number(b, item->valuedouble, (item->type & TC_JSON_FLOAT) != 0); break;
    case cJSON_String: string(b, item->valuestring ? item->valuestring : ""); break;
    case cJSON_Raw: puts_(b, item->valuestring ? item->valuestring : "null"); break;
    case cJSON_Array:
    case cJSON_Object: {
        int obj = cJSON_IsObject(item);
        puts_(b, obj ? "{" : "[");
        for (const cJSON *c = item->child; c; c = c->next) {
            indent(b, depth + 1);
            if (obj) {
                string(b, c->string ? c->string : "");
                puts_(b, ": ");
            }
            value(b, c, depth + 1);
            if (c->next)
                puts_(b, ",");
        }
        if (item->child)
            indent(b, depth);
        puts_(b, obj ? "}" : "]");
        break;
    }
    default: b->failed = 1;
    }
}

char *tc_json_print(const cJSON *item)
{
    buf b = {0};
    value(&b, item, 0);
    if (b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
