/* Inputs are sacred, outputs are deliberate: the tools run on copies of the
 * stories260K assets in a temporary folder.
 *
 * - An output that is an input, in every spelling (./X, X/, $PWD/X, a
 *   symbolic link, a hard link), a file of an input directory, a place inside
 *   an input directory, or a directory holding an input, is refused with exit
 *   2 and one line naming both, in every output format (Hugging Face
 *   directory, GGUF, llama2.c, the packed .tcq file, a safetensors file inside
 *   the input directory), with and without --force: and the whole folder,
 *   inputs included, is byte for byte what it was, with no file added.
 * - An existing output is refused without --force; with it a file is
 *   replaced and a directory is replaced as a whole (no stale file left).
 * - A missing input (--eval, --calib, --report, --tokenizer, TEXT, --compare's
 *   --eval) fails before anything is written or printed.
 * - The command-line frictions: a bad value names its option once, a count
 *   above the layers is exit 2, tc-synth --json prints JSON, generated text
 *   ends with a newline, the progress bar on a terminal shows elapsed time and
 *   ETA (and is absent otherwise). */
#define _DEFAULT_SOURCE 1 /* posix_openpt and friends, realpath */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>

#include "testutil.h"

#include <cjson/cJSON.h>

#include "tc/model.h"
#include "tc/pathguard.h"

static char T[600];   /* the folder the tools run in */
static char BIN[PATH_MAX];

/* ---- The folder's state ------------------------------------------------------ */

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    char line[1400];
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0)
        return;
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = (b->n + (size_t)k + 1) * 2;
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, line, (size_t)k + 1);
    b->n += (size_t)k;
}

/* Every entry below dir, sorted: kind, path, size and a hash of the bytes
 * (a link: where it points).  Two equal states mean nothing was written,
 * changed or left behind. */
static void state_of(sbuf *b, const char *dir, const char *rel)
{
    if (strlen(rel) > 1000)
        return; /* (deeper than anything here) */
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") && strcmp(nm, "..")) {
            char p[1400], r[1400];
            snprintf(p, sizeof p, "%s/%s", dir, nm);
            snprintf(r, sizeof r, "%s%s", rel, nm);
            struct stat st;
            lstat(p, &st);
            if (S_ISLNK(st.st_mode)) {
                char to[1024];
                ssize_t k = readlink(p, to, sizeof to - 1);
                to[k > 0 ? k : 0] = 0;
                sb_add(b, "L %s -> %s\n", r, to);
            } else if (S_ISDIR(st.st_mode)) {
                sb_add(b, "D %s\n", r);
                char sub[1500];
                snprintf(sub, sizeof sub, "%s/", r);
                state_of(b, p, sub);
            } else {
                size_t len;
                uint8_t *bytes = tu_read_file(p, &len);
                sb_add(b, "F %s %zu %016llx ino %llu\n", r, len, (unsigned long long)fnv(bytes, len),
                       (unsigned long long)st.st_ino);
                free(bytes);
            }
        }
        free(names[i]);
    }
    free(names);
}

static char *state(void)
{
    sbuf b = {0};
    sb_add(&b, "");
    state_of(&b, T, "");
    return b.s;
}

/* ---- Running the tools in T --------------------------------------------------- */

/* Runs "cd T && BIN/<args>" with stderr joined to stdout (or with stderr
 * dropped); returns the exit code, *out its output. */
static int tool(char **out, int keep_stderr, const char *fmt, ...)
{
    char args[2000], cmd[2000 + 600 + PATH_MAX + 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s'/%s %s", T, BIN, args, keep_stderr ? "2>&1" : "2>/dev/null");
    return tu_run(cmd, out);
}

static int lines_of(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int count_of(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static int exists(const char *rel)
{
    char p[1400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", T, rel);
    return lstat(p, &st) == 0;
}

/* A refusal: exit 2, one line naming the output and (when given) the input,
 * and the folder as it was. */
static void refused(const char *needle_out, const char *needle_in, const char *fmt, ...)
{
    char args[2000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *before = state(), *o;
    int rc = tool(&o, 1, "%s", args);
    char *after = state();
    CHECK_MSG(rc == 2, "%s: exit %d: %s", args, rc, o);
    CHECK_MSG(lines_of(o) == 1, "%s: not one line: %s", args, o);
    CHECK_MSG(strstr(o, needle_out) != NULL, "%s: the message does not name %s: %s", args, needle_out, o);
    CHECK_MSG(!needle_in || strstr(o, needle_in) != NULL, "%s: the message does not name %s: %s", args, needle_in,
              o);
    CHECK_MSG(strcmp(before, after) == 0, "%s: the folder changed:\n%s---\n%s", args, before, after);
    free(before);
    free(after);
    free(o);
}

/* A failure of the work (exit 1) that leaves the folder as it was and prints
 * nothing on stdout. */
static void fails_untouched(const char *fmt, ...)
{
    char args[2000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *before = state(), *o;
    int rc = tool(&o, 0, "%s", args);
    char *after = state();
    CHECK_MSG(rc == 1, "%s: exit %d", args, rc);
    CHECK_MSG(o[0] == '\0', "%s: printed before failing: %s", args, o);
    CHECK_MSG(strcmp(before, after) == 0, "%s: the folder changed:\n%s---\n%s", args, before, after);
    free(before);
    free(after);
    free(o);
}

static int ok(const char *fmt, ...)
{
    char args[2000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *o;
    int rc = tool(&o, 1, "%s", args);
    CHECK_MSG(rc == 0, "%s: exit %d: %s", args, rc, o);
    free(o);
    return rc == 0;
}

static int layers_of(const char *rel)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", T, rel);
    tc_model m;
    tc_error err = {{0}};
    if (tc_model_open(&m, p, &err))
        return -1;
    int n = m.cfg.n_layers;
    tc_model_close(&m);
    return n;
}

/* ---- Setting the folder up ------------------------------------------------------ */

static int copy(const char *from, const char *rel)
{
    size_t n;
    uint8_t *b = tu_read_file(from, &n);
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", T, rel);
    FILE *f = b ? fopen(p, "wb") : NULL;
    int okay = f && fwrite(b, 1, n, f) == n;
    if (f)
        okay &= fclose(f) == 0;
    free(b);
    return okay;
}

static void put(const char *rel, const char *text)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", T, rel);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void sh(const char *fmt, ...)
{
    char c[2000], cmd[2700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c, sizeof c, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s", T, c);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
}

static int setup(const char *assets)
{
    static const char *const hf_files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer.model",
                                           "tokenizer_config.json"};
    char from[1400], rel[200];
    sh("mkdir hf");
    for (size_t i = 0; i < sizeof hf_files / sizeof hf_files[0]; i++) {
        snprintf(from, sizeof from, "%s/models/stories260K-hf/%s", assets, hf_files[i]);
        snprintf(rel, sizeof rel, "hf/%s", hf_files[i]);
        if (!copy(from, rel))
            return 0;
    }
    static const char *const files[][2] = {
        {"models/stories260K/stories260K.gguf", "m.gguf"},
        {"models/stories260K/stories260K.bin", "m.bin"},
        {"models/stories260K/tok512.bin", "tok512.bin"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(from, sizeof from, "%s/%s", assets, files[i][0]);
        if (!copy(from, files[i][1]))
            return 0;
    }
    /* A small text: the first 60 stories. */
    snprintf(from, sizeof from, "%s/text/tinystories_valid_1000.txt", assets);
    sh("head -n 300 '%s' > text.txt", from);
    /* Other spellings of the inputs. */
    sh("ln -s hf lnhf && ln -s m.gguf lngguf && ln -s m.bin lnbin && ln m.gguf hlgguf && ln m.bin hlbin && "
       "ln hf/model.safetensors hlst");
    return 1;
}

/* ---- The cases ----------------------------------------------------------------- */

/* tc-prune: Hugging Face, GGUF and llama2.c inputs written over in every
 * spelling, with and without --force. */
static void test_prune_over_inputs(void)
{
    static const char *const force[] = {"", "--force"};
    for (int f = 0; f < 2; f++) {
        const char *F = force[f];
        /* Hugging Face directory -> directory */
        refused("./hf", "hf", "tc-prune hf --layers attn:1 %s -o ./hf", F);
        refused("hf/", "hf", "tc-prune hf --layers attn:1 %s -o hf/", F);
        refused(T, "hf", "tc-prune hf --layers attn:1 %s -o '%s/hf'", F, T);
        refused("lnhf", "hf", "tc-prune hf --layers attn:1 %s -o lnhf", F);
        refused("hf/x", "hf", "tc-prune hf --layers attn:1 %s -o hf/x", F);
        refused("hf/sub/x", "hf", "tc-prune hf --layers attn:1 %s -o hf/sub/x", F);
        refused("lnhf/x", "hf", "tc-prune hf --layers attn:1 %s -o lnhf/x", F);
        refused("hf/model.safetensors", "hf", "tc-prune hf --layers attn:1 %s -o hf/model.safetensors", F);
        refused("hlst", "hf", "tc-prune hf --layers attn:1 %s -o hlst", F);
        /* the file named instead of its directory */
        refused("./hf", "hf", "tc-prune hf/model.safetensors --layers attn:1 %s -o ./hf", F);
        /* Hugging Face -> GGUF, llama2.c inside or over the input */
        refused("hf/config.json", "hf", "tc-prune hf --layers attn:1 --format gguf %s -o hf/config.json", F);
        refused("lnhf/p.bin", "hf", "tc-prune hf --layers block:1 --format llama2c %s -o lnhf/p.bin", F);
        /* GGUF */
        refused("./m.gguf", "m.gguf", "tc-prune m.gguf --layers attn:1 %s -o ./m.gguf", F);
        refused("m.gguf/", "m.gguf", "tc-prune m.gguf --layers attn:1 %s -o m.gguf/", F);
        refused(T, "m.gguf", "tc-prune m.gguf --layers attn:1 %s -o '%s/m.gguf'", F, T);
        refused("lngguf", "m.gguf", "tc-prune m.gguf --layers attn:1 %s -o lngguf", F);
        refused("hlgguf", "m.gguf", "tc-prune m.gguf --layers attn:1 %s -o hlgguf", F);
        refused("lngguf", "m.gguf", "tc-prune m.gguf --layers attn:1 --format hf %s -o lngguf", F);
        /* llama2.c */
        refused("./m.bin", "m.bin", "tc-prune m.bin --layers block:1 %s -o ./m.bin", F);
        refused("m.bin/", "m.bin", "tc-prune m.bin --layers block:1 %s -o m.bin/", F);
        refused(T, "m.bin", "tc-prune m.bin --layers block:1 %s -o '%s/m.bin'", F, T);
        refused("lnbin", "m.bin", "tc-prune m.bin --layers block:1 %s -o lnbin", F);
        refused("hlbin", "m.bin", "tc-prune m.bin --layers block:1 %s -o hlbin", F);
        /* the other inputs: tokenizer, evaluation text, calibration text */
        refused("tok512.bin", "tok512.bin", "tc-prune m.bin --tokenizer tok512.bin --layers block:1 %s -o ./tok512.bin",
                F);
        refused("text.txt", "text.txt", "tc-prune hf --layers attn:1 --eval text.txt --format gguf %s -o ./text.txt", F);
        refused("text.txt", "text.txt", "tc-prune hf --drop-attn 1 --calib text.txt --format gguf %s -o text.txt", F);
        /* the folder of the inputs, replaced, would delete them */
        refused(".", "hf", "tc-prune hf --layers attn:1 %s -o .", F);
    }
}

/* tc-quantize: the packed file and GGUF over the inputs, a safetensors file
 * inside the input directory. */
static void test_quantize_over_inputs(void)
{
    static const char *const force[] = {"", "--force"};
    for (int f = 0; f < 2; f++) {
        const char *F = force[f];
        refused("hf/model.safetensors", "hf", "tc-quantize hf %s -o hf/model.safetensors", F);
        refused("hf/model.safetensors", "hf", "tc-quantize hf/model.safetensors %s -o '%s/hf/model.safetensors'", F,
                T);
        refused("hf/q.tcq", "hf", "tc-quantize hf %s -o hf/q.tcq", F);
        refused("lnhf/q.tcq", "hf", "tc-quantize hf %s -o lnhf/q.tcq", F);
        refused("hlst", "hf", "tc-quantize hf %s -o hlst", F);
        refused("./m.gguf", "m.gguf", "tc-quantize m.gguf --format gguf-tq2 %s -o ./m.gguf", F);
        refused("hlgguf", "m.gguf", "tc-quantize m.gguf %s -o hlgguf", F);
        refused("lngguf", "m.gguf", "tc-quantize m.gguf --format gguf-tq2 %s -o lngguf", F);
        refused("hlgguf", "m.gguf", "tc-quantize m.gguf --format gguf-tq1 %s -o hlgguf", F);
        refused("m.bin/", "m.bin", "tc-quantize m.bin %s -o m.bin/", F);
        refused("text.txt", "text.txt", "tc-quantize hf --calib text.txt %s -o ./text.txt", F);
        refused("tok512.bin", "tok512.bin", "tc-quantize m.bin --tokenizer tok512.bin %s -o tok512.bin", F);
    }
}

/* tc-analyze's report and HTML page are outputs too. */
static void test_analyze_over_inputs(void)
{
    refused("text.txt", "text.txt", "tc-analyze hf text.txt --report ./text.txt");
    refused("hf/r.json", "hf", "tc-analyze hf text.txt --report hf/r.json --force");
    refused("lnhf/r.html", "hf", "tc-analyze hf text.txt --html lnhf/r.html");
    refused("./r.json", "r.json", "tc-analyze hf text.txt --report r.json --html ./r.json");
}

/* A directory that holds an input is never replaced. */
static void test_output_holds_input(void)
{
    sh("mkdir box && cp m.gguf box/m.gguf && echo '{}' > box/config.json");
    refused("box", "box/m.gguf", "tc-prune box/m.gguf --layers attn:1 --format hf --force -o box");
    refused("box/", "box/m.gguf", "tc-prune box/m.gguf --layers attn:1 --format hf --force -o box/");
    sh("rm -r box");
}

/* Existing outputs: refused without --force in every format; with it a file
 * is replaced and a directory is replaced as a whole. */
static void test_existing_outputs(void)
{
    if (!ok("tc-prune -q hf --layers attn:1 -o out-hf") || !ok("tc-prune -q m.gguf --layers attn:1 -o out.gguf") ||
        !ok("tc-prune -q m.bin --layers block:1 -o out.bin") || !ok("tc-quantize -q hf -o out.tcq") ||
        !ok("tc-quantize -q m.gguf --format gguf-tq2 -o out-tq2.gguf") || !ok("tc-synth -q -o syn.gguf") ||
        !ok("tc-synth -q --format hf -o syn-hf") ||
        !ok("tc-analyze -q hf text.txt --samples 2 --seq-len 32 --no-measured --report r.json --html r.html"))
        return;
    refused("out-hf", NULL, "tc-prune hf --layers attn:2 -o out-hf");
    refused("out-hf/", "--force", "tc-prune hf --layers attn:2 -o out-hf/");
    refused("out.gguf", "--force", "tc-prune m.gguf --layers attn:2 -o out.gguf");
    refused("out.bin", "--force", "tc-prune m.bin --layers block:2 -o out.bin");
    refused("out.tcq", "--force", "tc-quantize hf -o out.tcq");
    refused("out-tq2.gguf", "--force", "tc-quantize m.gguf --format gguf-tq2 -o out-tq2.gguf");
    refused("syn.gguf", "--force", "tc-synth -o syn.gguf");
    refused("syn-hf", "--force", "tc-synth --format hf -o syn-hf");
    refused("r.json", "--force", "tc-analyze hf text.txt --report r.json");
    refused("r.html", "--force", "tc-analyze hf text.txt --html r.html");
    /* A directory where a file goes, a directory that is no checkpoint: not
     * even with --force. */
    refused("out-hf", NULL, "tc-prune m.gguf --layers attn:2 --force -o out-hf");
    sh("mkdir notes && echo keep > notes/a.txt");
    refused("notes", NULL, "tc-prune hf --layers attn:2 --force -o notes");

    /* --force: a directory replaced as a whole, stale shards and notes gone. */
    put("out-hf/notes.txt", "an earlier run's notes\n");
    put("out-hf/model-00001-of-00002.safetensors", "a stale shard\n");
    put("out-hf/model.safetensors.index.json", "{\"weight_map\": {}}\n");
    if (ok("tc-prune -q hf --layers block:1 --force -o out-hf")) {
        CHECK(!exists("out-hf/notes.txt") && !exists("out-hf/model-00001-of-00002.safetensors") &&
              !exists("out-hf/model.safetensors.index.json"));
        CHECK(exists("out-hf/config.json") && exists("out-hf/model.safetensors") && exists("out-hf/tokenizer.json"));
        CHECK(layers_of("out-hf") == 4);
    }
    put("syn-hf/stale.txt", "stale\n");
    if (ok("tc-synth -q --format hf --layers 2 --force -o syn-hf/"))
        CHECK(!exists("syn-hf/stale.txt") && layers_of("syn-hf") == 2);
    /* a file replaced, and a file replaced by a directory */
    put("out.gguf", "not a model\n");
    if (ok("tc-prune -q m.gguf --layers block:1,block:2 --force -o out.gguf"))
        CHECK(layers_of("out.gguf") == 3);
    if (ok("tc-prune -q m.bin --layers block:1 --force -o out.bin"))
        CHECK(layers_of("out.bin") == 4);
    CHECK(ok("tc-quantize -q hf --force -o out.tcq"));
    CHECK(ok("tc-analyze -q hf text.txt --samples 2 --seq-len 32 --no-measured --force --report r.json"));
    if (ok("tc-prune -q m.gguf --layers attn:1 --format hf --force -o out.bin"))
        CHECK(layers_of("out.bin") == 5 && exists("out.bin/config.json"));
    /* nothing left beside the outputs */
    char *s = state();
    CHECK_MSG(strstr(s, ".tmp.") == NULL, "a temporary was left:\n%s", s);
    free(s);
}

/* Every input is read before the first byte is written (or printed). */
static void test_inputs_first(void)
{
    fails_untouched("tc-prune hf --layers attn:1 -o new-hf --eval /missing/eval.txt");
    fails_untouched("tc-prune m.gguf --layers attn:1 -o new.gguf --eval /missing/eval.txt");
    fails_untouched("tc-prune hf --drop-attn 1 --report /missing/r.json -o new-hf");
    fails_untouched("tc-prune hf --drop-attn 1 --calib /missing/calib.txt -o new-hf");
    fails_untouched("tc-prune m.bin --layers block:1 --tokenizer /missing/tok.bin -o new.bin");
    fails_untouched("tc-quantize hf --calib /missing/calib.txt -o new.tcq");
    fails_untouched("tc-quantize hf --tokenizer /missing/tok.bin -o new.tcq");
    fails_untouched("tc-analyze hf /missing/text.txt --report new.json");
    fails_untouched("tc-analyze hf text.txt --tokenizer /missing/tok.bin --report new.json");
    fails_untouched("tc-run out.tcq --verify --compare hf --eval /missing/eval.txt");
    fails_untouched("tc-run out.tcq --verify --compare /missing/model --generate Once");
}

/* ---- Frictions --------------------------------------------------------------------- */

static void test_options(void)
{
    char *o;
    /* a bad value: one message naming the option, then the way to help */
    CHECK(tool(&o, 1, "tc-prune hf --drop-attn 1 --samples abc -o x") == 2);
    CHECK_MSG(count_of(o, "--samples") == 1 && count_of(o, "abc") == 1 && lines_of(o) == 2, "%s", o);
    free(o);
    CHECK(tool(&o, 1, "tc-quantize hf --seq-len 1 -o x") == 2);
    CHECK_MSG(count_of(o, "--seq-len") == 1 && lines_of(o) == 2, "%s", o);
    free(o);
    CHECK(tool(&o, 1, "tc-synth --dim big -o x") == 2);
    CHECK_MSG(count_of(o, "--dim") == 1 && lines_of(o) == 2, "%s", o);
    free(o);
    /* a missing value or an unknown option: getopt's message, said once */
    CHECK(tool(&o, 1, "tc-prune hf --samples") == 2);
    CHECK_MSG(count_of(o, "samples") == 1 && lines_of(o) == 2, "%s", o);
    free(o);
    CHECK(tool(&o, 1, "tc-analyze hf text.txt --bogus") == 2);
    CHECK_MSG(count_of(o, "--bogus") == 1 && lines_of(o) == 2, "%s", o);
    free(o);
    /* more to drop than the model has: a usage error, before any analysis */
    char *before = state();
    CHECK(tool(&o, 1, "tc-prune hf --drop-attn 40 --calib text.txt -o y") == 2);
    CHECK_MSG(strstr(o, "--drop-attn 40") && strstr(o, "5 layers"), "%s", o);
    free(o);
    CHECK(tool(&o, 1, "tc-prune hf --drop-blocks 4 --keep-first 1 --keep-last 1 --calib text.txt -o y") == 2);
    CHECK_MSG(strstr(o, "--drop-blocks 4"), "%s", o);
    free(o);
    CHECK(tool(&o, 1, "tc-prune hf --joint 11 --report r.json -o y") == 2);
    CHECK_MSG(strstr(o, "--joint 11"), "%s", o);
    free(o);
    char *after = state();
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
    /* tc-synth --json prints what it wrote */
    CHECK(tool(&o, 0, "tc-synth -q --json -o syn-json.gguf") == 0);
    cJSON *j = cJSON_Parse(o);
    CHECK_MSG(j && cJSON_IsString(cJSON_GetObjectItem(j, "format")) &&
              !strcmp(cJSON_GetObjectItem(j, "format")->valuestring, "gguf"), "not JSON: %s", o);
    cJSON_Delete(j);
    free(o);
    /* generated text ends its line */
    static const char *const gens[] = {"tc-run -q hf --generate Once -n 12", "tc-run hf --generate Once -n 12",
                                       "tc-run -q out.tcq --compare hf --generate Once -n 12"};
    for (size_t i = 0; i < sizeof gens / sizeof gens[0]; i++) {
        CHECK(tool(&o, 0, "%s", gens[i]) == 0);
        size_t n = strlen(o);
        CHECK_MSG(n > 4 && !strncmp(o, "Once", 4) && o[n - 1] == '\n' && count_of(o, "\n") == 1, "%s: [%s]",
                  gens[i], o);
        free(o);
    }
    /* the statistics begin their own line when both streams are joined */
    CHECK(tool(&o, 1, "tc-run hf --generate Once -n 12") == 0);
    CHECK_MSG(strstr(o, "\ntc-run: prompt") != NULL, "%s", o);
    free(o);
}

/* The progress bar on a terminal: elapsed time and ETA.  Not drawn when
 * stderr is not a terminal. */
static void test_progress(void)
{
    char *o;
    CHECK(tool(&o, 1, "tc-run hf --ppl text.txt --seq-len 64") == 0);
    CHECK_MSG(!strstr(o, "elapsed") && !strstr(o, "\r"), "a bar without a terminal: %s", o);
    free(o);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master) || !ptsname(master)) {
        printf("progress bar not tested: no pseudo-terminal\n");
        if (master >= 0)
            close(master);
        return;
    }
    char slave_name[256];
    snprintf(slave_name, sizeof slave_name, "%s", ptsname(master));
    char prog[PATH_MAX + 16], model[700], text[700];
    snprintf(prog, sizeof prog, "%s/tc-run", BIN);
    snprintf(model, sizeof model, "%s/hf", T);
    snprintf(text, sizeof text, "%s/text.txt", T);
    pid_t pid = fork();
    if (pid == 0) {
        int slave = open(slave_name, O_RDWR | O_NOCTTY);
        int null = open("/dev/null", O_WRONLY);
        if (slave < 0 || null < 0)
            _exit(126);
        dup2(null, STDOUT_FILENO);
        dup2(slave, STDERR_FILENO);
        close(master);
        execl(prog, prog, model, "--ppl", text, "--seq-len", "64", (char *)NULL);
        _exit(127);
    }
    sbuf got = {0};
    sb_add(&got, "");
    char buf[4096];
    for (;;) {
        ssize_t k = read(master, buf, sizeof buf - 1);
        if (k <= 0)
            break; /* EIO once the child's side is closed */
        buf[k] = 0;
        sb_add(&got, "%s", buf);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    close(master);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_MSG(strstr(got.s, "ppl") && strstr(got.s, "100.0%") && strstr(got.s, "elapsed") && strstr(got.s, "ETA"),
              "the bar: %s", got.s);
    free(got.s);
}

/* ---- The library's guard without the tools ----------------------------------------- */

/* A model directory of links into a store (as the Hugging Face cache lays
 * one out): the linked files and their folder are inputs too. */
static void test_guard_links(void)
{
    sh("mkdir -p cache/blobs cache/snap && cp hf/config.json cache/blobs/c1 && cp hf/model.safetensors cache/blobs/w1 "
       "&& ln -s ../blobs/c1 cache/snap/config.json && ln -s ../blobs/w1 cache/snap/model.safetensors "
       "&& echo '{}' > cache/config.json");
    tc_pathguard g;
    tc_pathguard_init(&g);
    tc_error err = {{0}};
    char p[1400];
    tc_output_verdict why;
    snprintf(p, sizeof p, "%s/cache/snap", T);
    CHECK_OK(tc_pathguard_add_input(&g, p, &err), &err);
    CHECK_OK(tc_pathguard_add_input(&g, "/nonexistent/file", &err), &err);
    snprintf(p, sizeof p, "%s/cache/blobs/w1", T);
    CHECK(tc_pathguard_check(&g, p, TC_OUTPUT_FILE, 1, &why, &err) == TC_ERR && why == TC_OUTPUT_CLASH &&
          strstr(err.msg, "snap/model.safetensors"));
    snprintf(p, sizeof p, "%s/cache/blobs/new", T);
    CHECK_MSG(tc_pathguard_check(&g, p, TC_OUTPUT_FILE, 1, &why, &err) == TC_OK, "%s", err.msg);
    /* the same place again, spelled otherwise */
    snprintf(p, sizeof p, "%s/cache/snap/../blobs/new", T);
    CHECK(tc_pathguard_check(&g, p, TC_OUTPUT_FILE, 1, &why, &err) == TC_ERR && strstr(err.msg, "also the output"));
    snprintf(p, sizeof p, "%s/cache", T); /* a checkpoint-looking directory that holds the links' targets */
    CHECK(tc_pathguard_check(&g, p, TC_OUTPUT_DIR, 1, &why, &err) == TC_ERR && strstr(err.msg, "would delete"));
    snprintf(p, sizeof p, "%s/cache/blobs", T);
    CHECK(tc_pathguard_check(&g, p, TC_OUTPUT_DIR, 1, &why, &err) == TC_ERR && strstr(err.msg, "would delete"));
    snprintf(p, sizeof p, "%s/out.gguf", T);
    CHECK(tc_pathguard_check(&g, p, TC_OUTPUT_FILE, 0, &why, &err) == TC_ERR && why == TC_OUTPUT_EXISTS);
    CHECK(tc_pathguard_check(&g, "/dev/null", TC_OUTPUT_FILE, 1, &why, &err) == TC_ERR);
    tc_pathguard_free(&g);
    sh("rm -r cache");
}

int main(void)
{
    const char *assets = tu_assets();
    char probe[700];
    if (!assets || !tu_asset(probe, sizeof probe, "models/stories260K-hf/model.safetensors") ||
        !tu_asset(probe, sizeof probe, "models/stories260K/stories260K.gguf"))
        return tu_skip("the stories260K assets are missing");
    if (!realpath(tu_bin(), BIN))
        return tu_skip("the tools are not built (TC_BIN)");
    char tmp[600];
    if (!tu_tmpdir(tmp, sizeof tmp) || !realpath(tmp, T))
        return tu_skip("no temporary folder");
    if (!setup(assets)) {
        fprintf(stderr, "cannot copy the assets into %s\n", T);
        return 1;
    }
    test_prune_over_inputs();
    test_quantize_over_inputs();
    test_analyze_over_inputs();
    test_output_holds_input();
    test_existing_outputs();
    test_inputs_first();
    test_options();
    test_progress();
    test_guard_links();
    if (tu_failures == 0)
        sh("rm -rf '%s'", T);
    return tu_finish("test_outputs");
}
