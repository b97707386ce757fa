/* JSON text that keeps Python's distinction between int and float.
 *
 * Hugging Face configs are read by Python, where 3 and 3.0 are different
 * types, and transformers validates some config fields by type:
 * `final_logit_softcapping: 3` is refused where `3.0` loads.  cJSON keeps one
 * double per number, so a config read and written back through it would lose
 * the distinction.  These functions keep it: numbers written as floats in the
 * source text (with '.', 'e' or 'E') carry a mark, numbers tc creates as
 * floats carry it too, and the printer writes every marked number with a
 * decimal point or an exponent, as Python's json module does. */
#ifndef TC_JSON_TEXT_H
#define TC_JSON_TEXT_H

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The mark: a bit of cJSON's type field above the ones cJSON uses, so that it
 * survives cJSON_Duplicate and leaves cJSON_IsNumber and printing alone. */
#define TC_JSON_FLOAT (1 << 12)

/* Marks the numbers of root (parsed from text by cJSON) that text spells as
 * floats.  cJSON keeps children in document order, so the n-th number of a
 * depth-first walk is the n-th number token of the text. */
void tc_json_mark_floats(cJSON *root, const char *text);

/* A number that prints as a float (3.0, not 3); NULL when out of memory. */
cJSON *tc_json_float(double v);
/* Adds it to an object under key; NULL when out of memory. */
cJSON *tc_json_add_float(cJSON *object, const char *key, double v);

/* The double of the shortest decimal that reads back as the float v: what a
 * float32 setting (1e-5 held as 9.99999974e-06) is written as. */
double tc_json_float32_value(float v);

/* Indented JSON text (two spaces, as json.dump(indent=2)), marked numbers as
 * floats, others as integers where they are integral; malloc'd, NULL when out
 * of memory or for a value JSON cannot hold (NaN, infinity). */
char *tc_json_print(const cJSON *item);

#ifdef __cplusplus
}
#endif

#endif
