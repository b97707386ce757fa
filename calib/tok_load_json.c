#include "tok_internal.h"
int tok_load_hf_json_mem(tc_tokenizer **out, const char *path, const char *json, size_t len,
                         tc_error *err)
{
    (void)json; (void)len; *out = NULL;
    return tc_err(err, "%s: not yet", path);
}
int tc_tokenizer_from_hf_json(tc_tokenizer **t, const char *path, tc_error *err)
{
    *t = NULL;
    return tc_err(err, "%s: not yet", path);
}
