/* The shared mechanisms under every parser and writer: the bounds-checked
 * cursor, dtype conversion, the tensor directory's checks, atomic output. */
#include "testutil.h"

#include "tc/cursor.h"
#include "tc/dtype.h"
#include "tc/json_text.h"
#include "tc/outfile.h"
#include "tc/tensordir.h"

static void test_cursor(void)
{
    const uint8_t bytes[] = {1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0xff};
    tc_cursor c;
    tc_error err;
    uint32_t a;
    uint64_t b;
    uint8_t u;
    tc_cursor_init(&c, bytes, sizeof bytes, "t.bin");
    CHECK_OK(tc_cursor_u32(&c, &a, "a", &err), &err);
    CHECK(a == 1);
    CHECK_OK(tc_cursor_u64(&c, &b, "b", &err), &err);
    CHECK(b == 2);
    CHECK(tc_cursor_u32(&c, &a, "field x", &err) == TC_ERR);
    CHECK(strstr(err.msg, "t.bin") && strstr(err.msg, "field x"));
    CHECK(c.pos == 12); /* a failed read does not move */
    CHECK_OK(tc_cursor_u8(&c, &u, "u", &err), &err);
    CHECK(u == 0xff);
    const uint8_t *p;
    CHECK(tc_cursor_bytes(&c, UINT64_MAX, &p, "huge", &err) == TC_ERR);
    tc_cursor_init(&c, bytes, sizeof bytes, "t.bin");
    c.pos = 3;
    CHECK_OK(tc_cursor_align(&c, 8, "pad", &err), &err);
    CHECK(c.pos == 8);
}

static void test_half_floats(void)
{
    /* Every f16 converts to f32 and back to itself (NaNs stay NaN). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tc_f16_to_f32((uint16_t)h);
        uint16_t back = tc_f32_to_f16(f);
        if (isnan(f) ? !isnan(tc_f16_to_f32(back)) : back != h)
            bad++;
    }
    CHECK(bad == 0);
    /* The bulk converter (F16C where the CPU has it) agrees with the scalar
     * definition on every half, NaNs staying NaN; 65539 values leave a tail. */
    enum { NH = 65539 };
    uint8_t *halves = malloc(2 * NH);
    float *conv = malloc(4 * NH);
    tc_error err;
    for (uint32_t i = 0; i < NH; i++) {
        halves[2 * i] = (uint8_t)i;
        halves[2 * i + 1] = (uint8_t)(i >> 8);
    }
    CHECK_OK(tc_convert_to_f32(TC_F16, halves, NH, conv, &err), &err);
    int mismatch = 0;
    for (uint32_t i = 0; i < NH; i++) {
        float want = tc_f16_to_f32((uint16_t)i);
        if (isnan(want) ? !isnan(conv[i]) : memcmp(&want, &conv[i], 4) != 0)
            mismatch++;
    }
    CHECK(mismatch == 0);
    free(halves);
    free(conv);
    CHECK(tc_f16_to_f32(0x3c00) == 1.0f);
    CHECK(tc_f16_to_f32(0xc000) == -2.0f);
    CHECK(tc_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(tc_f32_to_f16(65520.0f) == 0x7c00); /* rounds to infinity */
    CHECK(tc_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00); /* tie to even */
    CHECK(tc_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(tc_f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80);  /* tie to even */
    CHECK(tc_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)) == 0x3f82);
    for (uint32_t h = 0; h < 65536; h += 7) {
        float f = tc_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            CHECK(tc_f32_to_bf16(f) == h);
    }
}

static void test_q8_0(void)
{
    uint8_t blk[34];
    uint16_t d = tc_f32_to_f16(0.5f);
    blk[0] = (uint8_t)d;
    blk[1] = (uint8_t)(d >> 8);
    for (int i = 0; i < 32; i++)
        blk[2 + i] = (uint8_t)(int8_t)(i - 16);
    float out[32];
    tc_error err;
    CHECK_OK(tc_convert_to_f32(TC_Q8_0, blk, 32, out, &err), &err);
    for (int i = 0; i < 32; i++)
        CHECK(out[i] == 0.5f * (float)(i - 16));
    CHECK(tc_convert_to_f32(TC_Q8_0, blk, 31, out, &err) == TC_ERR);
}

static void test_tensordir(void)
{
    tc_tensordir d;
    tc_error err;
    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    tc_tensordir_init(&d);
    CHECK_OK(tc_tensordir_add(&d, "w", TC_F32, 2, shape, (const uint8_t *)data, 24, "f", &err), &err);
    CHECK(tc_tensordir_add(&d, "w", TC_F32, 2, shape, (const uint8_t *)data, 24, "f", &err) == TC_ERR);
    CHECK(strstr(err.msg, "duplicate") != NULL);
    CHECK(tc_tensordir_add(&d, "v", TC_F32, 2, shape, (const uint8_t *)data, 20, "f", &err) == TC_ERR);
    int64_t huge[2] = {1 << 20, 1 << 20};
    CHECK(tc_tensordir_add(&d, "h", TC_F32, 2, huge, (const uint8_t *)data, 24, "f", &err) == TC_ERR);
    int64_t over[3] = {INT64_MAX, 4, 4};
    CHECK(tc_tensordir_add(&d, "o", TC_F32, 3, over, (const uint8_t *)data, 24, "f", &err) == TC_ERR);
    CHECK(strstr(err.msg, "overflow") != NULL);
    int64_t neg[1] = {-1};
    CHECK(tc_tensordir_add(&d, "n", TC_F32, 1, neg, (const uint8_t *)data, 24, "f", &err) == TC_ERR);
    CHECK(d.n_tensors == 1);
    const tc_tensor *t = tc_tensordir_find(&d, "w");
    CHECK(t && t->n_elements == 6);
    float *f = NULL;
    CHECK_OK(tc_tensor_load_f32(t, &f, &err), &err);
    CHECK(f && f[5] == 6.0f);
    free(f);
    CHECK(tc_span_check(10, 10, 19, "f", "x", &err) == TC_ERR);
    CHECK(tc_span_check(UINT64_MAX, 2, 19, "f", "x", &err) == TC_ERR);
    CHECK(tc_span_check(9, 10, 19, "f", "x", &err) == TC_OK);
    tc_tensordir_free(&d);

    /* Many tensors: every name found, truncation forgets the removed ones. */
    tc_tensordir_init(&d);
    int64_t one[1] = {1};
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "t.%d", i);
        CHECK_OK(tc_tensordir_add(&d, name, TC_F32, 1, one, (const uint8_t *)data, 4, "f", &err), &err);
    }
    int found = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "t.%d", i);
        const tc_tensor *x = tc_tensordir_find(&d, name);
        found += x && strcmp(x->name, name) == 0;
    }
    CHECK(found == 5000);
    CHECK(tc_tensordir_find(&d, "t.5000") == NULL);
    tc_tensordir_truncate(&d, 100);
    CHECK(d.n_tensors == 100 && tc_tensordir_find(&d, "t.99") && !tc_tensordir_find(&d, "t.100"));
    CHECK_OK(tc_tensordir_add(&d, "t.100", TC_F32, 1, one, (const uint8_t *)data, 4, "f", &err), &err);
    tc_tensordir_free(&d);
}

static void test_outfile(void)
{
    char dir[256], path[300];
    tc_error err;
    CHECK(tu_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    tc_outfile o;
    CHECK_OK(tc_outfile_open(&o, path, &err), &err);
    CHECK_OK(tc_outfile_write(&o, "abc", 3, &err), &err);
    CHECK(access(path, F_OK) != 0); /* nothing at the target until commit */
    CHECK_OK(tc_outfile_pad(&o, 8, &err), &err);
    CHECK(o.written == 8);
    CHECK_OK(tc_outfile_commit(&o, &err), &err);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 8);
    /* An aborted write leaves the old file untouched and no temporary. */
    CHECK_OK(tc_outfile_open(&o, path, &err), &err);
    CHECK_OK(tc_outfile_write(&o, "xyz", 3, &err), &err);
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s", o.tmp);
    tc_outfile_abort(&o);
    CHECK(stat(path, &st) == 0 && st.st_size == 8);
    CHECK(access(tmp, F_OK) != 0);
    CHECK(tc_same_file(path, path));
    unlink(path);
    /* An unwritable place is a clear error naming the path. */
    CHECK(tc_outfile_open(&o, "/nonexistent-dir/x.bin", &err) == TC_ERR);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.bin") != NULL);
    rmdir(dir);
}

/* Configs go back to Python with their floats floats: 3.0 stays 3.0 (transformers
 * refuses an int for some float fields), 3 stays 3, and strings holding digits
 * do not shift the marks. */
static void test_json_text(void)
{
    const char *text = "{\"a\": 3.0, \"s\": \"12 \\\" 4.5\", \"b\": 3, \"c\": [1e-05, 2, -0.5E1],"
                       " \"d\": {\"e\": 10000.0, \"t\": true}, \"f\": 0.02}";
    cJSON *j = cJSON_Parse(text);
    CHECK(j != NULL);
    tc_json_mark_floats(j, text);
    char *out = tc_json_print(j);
    CHECK(out != NULL);
    static const char *const want[] = {"\"a\": 3.0,", "\"b\": 3,", "1e-05,", "\n    2,", "-5.0\n",
                                       "\"e\": 10000.0,", "\"f\": 0.02\n", "\"s\": \"12 \\\" 4.5\""};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(out && strstr(out, want[i]), "%s not in %s", want[i], out ? out : "(null)");
    cJSON *back = out ? cJSON_Parse(out) : NULL;
    CHECK(back && cJSON_Compare(j, back, 1));
    cJSON_Delete(back);
    free(out);
    /* Marks survive a copy; a float setting is written as its float32. */
    cJSON *copy = cJSON_Duplicate(j, 1);
    tc_json_add_float(copy, "g", tc_json_float32_value(1e-5f));
    tc_json_add_float(copy, "h", 8.0);
    out = tc_json_print(copy);
    CHECK(out && strstr(out, "\"a\": 3.0,") && strstr(out, "\"g\": 1e-05,") && strstr(out, "\"h\": 8.0\n"));
    free(out);
    cJSON_Delete(copy);
    cJSON_Delete(j);
    /* What JSON cannot hold is refused, not written as something else. */
    cJSON *nan = tc_json_float(NAN);
    CHECK(tc_json_print(nan) == NULL);
    cJSON_Delete(nan);
}

int main(void)
{
    test_cursor();
    test_half_floats();
    test_q8_0();
    test_tensordir();
    test_outfile();
    test_json_text();
    return tu_finish("test_core");
}
