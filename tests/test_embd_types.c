/* The embedding and head types of the packed format (tc-quantize
 * --embd-type): the ternary asset models (bitnet12, deep16-1.58) converted
 * with each of float (F16, or F32 where F16 cannot hold the BF16 source's
 * values, as here), Q8_0, Q6_K and Q4_0, the stored type checked, and the
 * perplexity of references.json's 32 windows through the packed runner
 * within a bound of each type's measured cost over the float one
 * (docs/QUANTIZE.md gives the table); Q4_0 must cost more than the others
 * may, and a head read in the wrong layout costs far more than any bound.
 * bitnet12 written back as GGUF (TQ2_0): a block-typed embedding keeps its
 * type and its bytes.  Under a sanitizer the runs take the first 2 windows
 * and the perplexity bounds, measured on all 32, are not asserted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nll_sink.h"
#include "testutil.h"
#include "tc/gguf.h"
#include "tc/model.h"
#include "tc/quantize.h"
#include "tc/tmodel.h"
#include "tc/trun.h"

/* The relative perplexity change from the float conversion allowed per type.
 * Measured (docs/QUANTIZE.md): Q8_0 -8.8e-5 and -4.4e-4, Q6_K +5.2e-5 and
 * -2.2e-4, Q4_0 +4.3e-3 and +6.7e-3 on bitnet12 and deep16-1.58. */
static const struct {
    tc_dtype t;
    double min_rel, max_rel;
} TYPES[] = {{TC_F16, 0.0, 0.0}, {TC_Q8_0, -1e-3, 1e-3}, {TC_Q6_K, -1e-3, 1e-3}, {TC_Q4_0, 2e-3, 1.5e-2}};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

/* The windows of references.json as a batch. */
static int load_windows(const char *model, tc_batch *b, size_t *longest)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/references.json", model);
    char *text = tu_slurp(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *wins = cJSON_GetObjectItemCaseSensitive(j, "windows"), *w;
    if (!cJSON_IsArray(wins)) {
        cJSON_Delete(j);
        return -1;
    }
    size_t n_seqs = (size_t)cJSON_GetArraySize(wins), total = 0, s = 0;
    size_t *off = calloc(n_seqs + 1, sizeof *off);
    int32_t *tokens = NULL;
    *longest = 0;
    size_t keep = SANITIZED ? 2 : n_seqs;
    n_seqs = n_seqs < keep ? n_seqs : keep;
    cJSON_ArrayForEach(w, wins) {
        if (s == n_seqs)
            break;
        size_t n = (size_t)cJSON_GetArraySize(w);
        tokens = realloc(tokens, (total + n) * sizeof *tokens);
        const cJSON *t;
        size_t i = 0;
        cJSON_ArrayForEach(t, w) tokens[total + i++] = (int32_t)t->valueint;
        total += n;
        *longest = n > *longest ? n : *longest;
        off[++s] = total;
    }
    cJSON_Delete(j);
    *b = (tc_batch){.tokens = tokens, .offsets = off, .n_seqs = n_seqs};
    return 0;
}

static void check_model(const char *name)
{
    char dir[4096], tmp[4096], out[4200];
    tu_asset(dir, sizeof dir, name);
    tc_error err = {{0}};
    tc_model m;
    tc_batch b = {0};
    size_t longest = 0;
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    CHECK(load_windows(dir, &b, &longest) == 0);
    tu_tmpdir(tmp, sizeof tmp);
    double ppl[N_TYPES];
    for (size_t i = 0; i < N_TYPES; i++) {
        snprintf(out, sizeof out, "%s/%s-%s.tcq", tmp, strchr(name, '/') ? strrchr(name, '/') + 1 : name,
                 tc_dtype_name(TYPES[i].t));
        tc_quantize_opts o = {.q = {.method = TC_TMETHOD_SOURCE, .layout = TC_TPACK_I2, .group = {TC_TGROUP_TENSOR, 0}},
                              .format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .n_threads = 1,
                              .embd_dtype = TYPES[i].t == TC_F16 ? TC_F32 : TYPES[i].t};
        CHECK_OK(tc_quantize_model(&m, out, &o, NULL, &err), &err);
        tc_tmodel tm;
        CHECK_OK(tc_tmodel_open(&tm, out, &err), &err);
        const tc_tmodel_tensor *e = tc_tmodel_find(&tm, -1, TC_G_EMBD);
        /* float: F16, or F32 where F16 cannot hold the source's values (BF16) */
        CHECK_MSG(e && (e->dtype == TYPES[i].t || (TYPES[i].t == TC_F16 && e->dtype == TC_F32)),
                  "%s: token_embd stored as %s, asked for %s", name,
                  e ? tc_dtype_name(e->dtype) : "nothing", tc_dtype_name(TYPES[i].t));
        tc_trun *r = NULL;
        tc_trun_opts ro = {.mode = TC_TRUN_LUT, .n_threads = 1, .max_len = (int)longest};
        nll_sink ns = {b.tokens, b.offsets, b.n_seqs, 0, 0};
        CHECK_OK(tc_trun_new(&r, &tm, &ro, &err), &err);
        CHECK_OK(tc_trun_batch(r, &b, nll_logits, &ns, &err), &err);
        tc_trun_free(r);
        if (e && TYPES[i].t != TC_F16 && tm.cfg.t.sub_norms) { /* GGUF bitnet needs the sub-norms */
            char gpath[4300];
            snprintf(gpath, sizeof gpath, "%s.gguf", out);
            tc_tmodel_export_opts eo = {.format = TC_FORMAT_GGUF, .ternary_dtype = TC_TQ2_0};
            tc_gguf g;
            CHECK_OK(tc_tmodel_export(&tm, gpath, &eo, &err), &err);
            if (!err.msg[0] && tc_gguf_open(&g, gpath, &err) == TC_OK) {
                const tc_tensor *ge = tc_tensordir_find(&g.dir, "token_embd.weight");
                CHECK_MSG(ge && ge->dtype == e->dtype && ge->nbytes == e->nbytes &&
                              memcmp(ge->data, e->data, (size_t)e->nbytes) == 0,
                          "%s %s: the GGUF's token_embd is not the packed file's block bytes", name,
                          tc_dtype_name(TYPES[i].t));
                tc_gguf_close(&g);
            } else {
                CHECK_OK(TC_ERR, &err);
            }
            remove(gpath);
        }
        tc_tmodel_close(&tm);
        remove(out);
        ppl[i] = ns.count ? exp(ns.sum / (double)ns.count) : NAN;
        double rel = (ppl[i] - ppl[0]) / ppl[0];
        printf("%-18s %-5s perplexity %.5f (%+.2e relative to float, bounds %.1e .. %.1e)\n", name,
               tc_dtype_name(TYPES[i].t), ppl[i], rel, TYPES[i].min_rel, TYPES[i].max_rel);
        CHECK_MSG(SANITIZED || (rel >= TYPES[i].min_rel && rel <= TYPES[i].max_rel), "%s %s: perplexity %.5f, float %.5f", name,
                  tc_dtype_name(TYPES[i].t), ppl[i], ppl[0]);
    }
    free((void *)b.tokens);
    free((void *)b.offsets);
    rmdir(tmp);
    tc_model_close(&m);
}

int main(void)
{
    char p1[4096], p2[4096];
    if (!tu_asset(p1, sizeof p1, "models/bitnet12/references.json") ||
        !tu_asset(p2, sizeof p2, "models/deep16-1.58/references.json"))
        return tu_skip("the assets bitnet12 and deep16-1.58 are absent (TC_ASSETS)");
    check_model("models/bitnet12");
    check_model("models/deep16-1.58");
    return tu_finish("test_embd_types");
}
