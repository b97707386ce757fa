/* What the report's files share (report.c: the module report; report_attn.c:
 * heads and tokens in JSON; report_attn_html.c: their text summary and
 * charts): JSON writing and validated reading, growable text, plot helpers. */
#ifndef TC_REPORT_INTERNAL_H
#define TC_REPORT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "tc/analysis.h"
#include "tc/error.h"

/* ---- JSON writing: a failed allocation anywhere clears *ok. */
void tc_json_put(cJSON *obj, const char *key, cJSON *v, int *ok);
/* The shortest decimal that reads back to exactly v; null when not finite. */
cJSON *tc_json_num(double v);

/* ---- JSON reading: where a value sits, for messages ("layers[3].attn"). */
typedef struct tc_jwhere {
    const char *file;
    char path[96];
} tc_jwhere;

const cJSON *tc_jfield(const tc_jwhere *w, const cJSON *obj, const char *key, tc_error *err);
/* A finite number in [lo, hi]; with nullable, JSON null reads as NaN. */
int tc_jwant_num(const tc_jwhere *w, const cJSON *obj, const char *key, double lo, double hi, int nullable,
                 double *out, tc_error *err);
int tc_jwant_int(const tc_jwhere *w, const cJSON *obj, const char *key, double lo, double hi, int64_t *out,
                 tc_error *err);
const cJSON *tc_jwant_type(const tc_jwhere *w, const cJSON *obj, const char *key, int (*is)(const cJSON *),
                           const char *what, tc_error *err);
int tc_jis_object(const cJSON *v);
int tc_jis_array(const cJSON *v);
int tc_jis_string(const cJSON *v);
int tc_jis_bool(const cJSON *v);

/* ---- Growable text. */
typedef struct tc_sbuf {
    char *p;
    size_t n, cap;
    int oom;
} tc_sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void tc_sb_printf(tc_sbuf *b, const char *fmt, ...);
void tc_sb_put(tc_sbuf *b, const char *s);
/* Text from files (model names, paths) goes into a page only through here. */
void tc_sb_escape(tc_sbuf *b, const char *s);
int tc_sb_finish(tc_sbuf *b, char **out, const char *what, tc_error *err);
/* v with fmt, or "-" when not finite. */
void tc_fmt_num(char *buf, size_t n, const char *fmt, double v);

/* ---- Plots: an area in pixels and the value range it shows. */
typedef struct tc_plot {
    double x0, y0, w, h;
    double lo, hi;
    int n; /* layers along x */
} tc_plot;

double tc_plot_x(const tc_plot *p, double i);
double tc_plot_y(const tc_plot *p, double v);
void tc_nice_range(double lo, double hi, double *out_lo, double *out_hi, double *step);
void tc_svg_open(tc_sbuf *b, double width, double height, const char *label);
void tc_svg_heat_axes(tc_sbuf *b, int n_heads, int n_layers, double x0, double y0, double cw, double ch);
/* Grid lines, tick labels, the layer axis and the y label. */
void tc_plot_axes(tc_sbuf *b, const tc_plot *p, double step, const char *ylabel, int decimals);
int tc_decimals_for(double step);
/* Viridis at t in [0, 1]. */
void tc_viridis(double t, int rgb[3]);

/* ---- The heads and tokens parts of a report (report_attn.c, report_attn_html.c). */
/* Adds them to a layer's and the root's JSON. */
void tc_report_attn_layer_json(const tc_analysis *a, int l, cJSON *layer, cJSON *heads, int *ok);
void tc_report_attn_root_json(const tc_analysis *a, cJSON *root, int *ok);
/* Reads them back when present (absent: not measured). */
int tc_report_attn_read_head(const tc_jwhere *w, const cJSON *e, tc_head_stats *hs, tc_error *err);
int tc_report_attn_read_layer(const tc_jwhere *w, const cJSON *layer, const tc_analysis *a, tc_token_stats *ts,
                              tc_error *err);
int tc_report_attn_read_root(const tc_jwhere *top, const cJSON *root, tc_analysis *a, tc_error *err);
/* The HTML sections: heads' importance, sinks, keep ratios, the schedule. */
void tc_report_attn_html(tc_sbuf *b, const tc_analysis *a);

#endif
