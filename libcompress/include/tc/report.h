/* Redundancy reports: the analysis result as versioned JSON (written and read
 * back), as a ranked text table, and as a self-contained HTML page with
 * inline SVG charts.  The JSON schema is described in docs/REPORT.md.
 *
 * model and calibration are free-form JSON objects the caller builds (model
 * name, shapes, file; calibration file, samples, sequence length, seed); the
 * renderers copy them, the caller keeps ownership.  Either may be NULL, which
 * is written as an empty object. */
#ifndef TC_REPORT_H
#define TC_REPORT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "tc/analysis.h"
#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_REPORT_SCHEMA "tc-analyze-report"
#define TC_REPORT_SCHEMA_VERSION 1
#define TC_REPORT_MAX_BYTES ((uint64_t)64 << 20) /* refuse larger report files */
#define TC_REPORT_MAX_LAYERS 4096
#define TC_REPORT_MAX_HEADS 4096

/* One module of one layer in the redundancy ranking. */
typedef struct tc_rank_entry {
    int layer;
    tc_module module;
    double cos, importance;
    int measured;
    double dnll, kl;
} tc_rank_entry;

/* Present modules, most redundant first: importance (1 - cos) ascending;
 * ties by layer, then attn < mlp < block; a NaN importance ranks last.
 * *out is malloc'd (NULL when there are none). */
int tc_report_ranking(const tc_analysis *a, tc_rank_entry **out, size_t *n, tc_error *err);

/* The report as a JSON tree (caller frees with cJSON_Delete), or NULL. */
cJSON *tc_report_to_json(const tc_analysis *a, const cJSON *model, const cJSON *calibration, tc_error *err);
/* The same, written atomically to path (pretty-printed). */
int tc_report_write_json(const char *path, const tc_analysis *a, const cJSON *model, const cJSON *calibration,
                         tc_error *err);

/* Parses report text (name is used in messages) into *a, validating the
 * schema, the version and every field; *model and *calibration receive copies
 * of those objects when the pointers are non-NULL (free with cJSON_Delete).
 * On failure nothing is left allocated.  Free *a with tc_analysis_free. */
int tc_report_parse(const char *text, size_t len, const char *name, tc_analysis *a, cJSON **model,
                    cJSON **calibration, tc_error *err);
/* Reads and parses a report file. */
int tc_report_read(const char *path, tc_analysis *a, cJSON **model, cJSON **calibration, tc_error *err);

/* The ranked table for a terminal (malloc'd, NUL-terminated, UTF-8):
 * rank, layer, module, cos, importance, ΔNLL, KL; "-" where not measured. */
int tc_report_table(const tc_analysis *a, char **out, tc_error *err);

/* The heads and tokens measurements for a terminal (malloc'd; empty when
 * neither was measured): heads least important first, the least important
 * masked together, sink heads, the keep ratio of every layer and the chosen
 * token schedule. */
int tc_report_summary(const tc_analysis *a, char **out, tc_error *err);

/* The self-contained HTML page (malloc'd), and the same written atomically. */
int tc_report_html(const tc_analysis *a, const cJSON *model, const cJSON *calibration, char **out,
                   tc_error *err);
int tc_report_write_html(const char *path, const tc_analysis *a, const cJSON *model, const cJSON *calibration,
                         tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
