#include "tc/hfdir.h"
#include "tc/json_text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "tc/checked.h"
#include "tc/mapfile.h"
#include "tc/outfile.h"
#include "tc/safetensors.h"

/* Configs and indexes are a few kB; 16 MiB leaves room for any real one
 * while refusing to read a weight file by mistake. */
#define HF_MAX_JSON ((uint64_t)16 << 20)

#define HF_CONFIG "config.json"
#define HF_SINGLE "model.safetensors"
#define HF_INDEX "model.safetensors.index.json"

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Parses a small JSON file that must hold one object. */
static int read_json_object(const char *path, cJSON **out, tc_error *err)
{
    char *text;
    uint64_t len;
    *out = NULL;
    if (tc_read_small_file(path, HF_MAX_JSON, &text, &len, err))
        return TC_ERR;
    if (strlen(text) != len) {
        free(text);
        return tc_err(err, "%s: contains a NUL byte", path);
    }
    cJSON *root = cJSON_ParseWithOpts(text, NULL, 1);
    tc_json_mark_floats(root, text); /* so that 3.0 is written back as 3.0 */
    free(text);
    if (!root)
        return tc_err(err, "%s: not valid JSON", path);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tc_err(err, "%s: not a JSON object", path);
    }
    *out = root;
    return TC_OK;
}

/* ---- The index ---------------------------------------------------------- */

typedef struct hf_entry {
    const char *tensor; /* inside the parsed index */
    const char *shard;
    int found;
} hf_entry;

typedef struct hf_index {
    const char *path;
    hf_entry *entries; /* sorted by tensor name */
    size_t n;
} hf_index;

static int by_tensor(const void *a, const void *b)
{
    return strcmp(((const hf_entry *)a)->tensor, ((const hf_entry *)b)->tensor);
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard must sit in the directory itself: an index is untrusted and must
 * not steer us to other files. */
static int plain_file_name(const char *s)
{
    return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int read_weight_map(hf_index *ix, const cJSON *root, tc_error *err)
{
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map))
        return tc_err(err, "%s: no \"weight_map\" object", ix->path);
    int n = cJSON_GetArraySize(map);
    if (n == 0)
        return tc_err(err, "%s: the weight_map is empty", ix->path);
    ix->entries = calloc((size_t)n, sizeof *ix->entries);
    if (!ix->entries)
        return tc_err(err, "%s: out of memory", ix->path);
    for (const cJSON *kv = map->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv) || !plain_file_name(kv->valuestring))
            return tc_err(err, "%s: tensor '%s' is mapped to something other than a file name in this directory",
                          ix->path, kv->string);
        ix->entries[ix->n].tensor = kv->string;
        ix->entries[ix->n].shard = kv->valuestring;
        ix->n++;
    }
    qsort(ix->entries, ix->n, sizeof *ix->entries, by_tensor);
    for (size_t i = 1; i < ix->n; i++)
        if (strcmp(ix->entries[i - 1].tensor, ix->entries[i].tensor) == 0)
            return tc_err(err, "%s: the weight_map lists tensor '%s' twice", ix->path, ix->entries[i].tensor);
    return TC_OK;
}

/* The distinct shard names, sorted, so each file is opened once. */
static int distinct_shards(const hf_index *ix, const char ***out, size_t *n_out, tc_error *err)
{
    const char **s = malloc(ix->n * sizeof *s);
    if (!s)
        return tc_err(err, "%s: out of memory", ix->path);
    for (size_t i = 0; i < ix->n; i++)
        s[i] = ix->entries[i].shard;
    qsort(s, ix->n, sizeof *s, by_string);
    size_t n = 0;
    for (size_t i = 0; i < ix->n; i++)
        if (n == 0 || strcmp(s[n - 1], s[i]) != 0)
            s[n++] = s[i];
    *out = s;
    *n_out = n;
    return TC_OK;
}

/* Every tensor a shard brought must be the one the index placed there. */
static int match_shard(hf_index *ix, const tc_tensordir *dir, size_t from, const char *shard, tc_error *err)
{
    for (size_t i = from; i < dir->n_tensors; i++) {
        const char *name = dir->tensors[i].name;
        hf_entry key = {.tensor = name};
        hf_entry *e = bsearch(&key, ix->entries, ix->n, sizeof *ix->entries, by_tensor);
        if (!e)
            return tc_err(err, "%s: tensor '%s' of shard %s is not listed in the weight_map", ix->path, name,
                          shard);
        if (strcmp(e->shard, shard) != 0)
            return tc_err(err, "%s: tensor '%s' is in shard %s but the weight_map places it in %s", ix->path,
                          name, shard, e->shard);
        e->found = 1;
    }
    return TC_OK;
}

static int open_shards(hf_index *ix, const char *dirpath, tc_tensordir *dir, tc_error *err)
{
    const char **shards = NULL;
    size_t n_shards = 0;
    if (distinct_shards(ix, &shards, &n_shards, err))
        return TC_ERR;
    int rc = TC_OK;
    for (size_t i = 0; i < n_shards && rc == TC_OK; i++) {
        char *p = path_join(dirpath, shards[i]);
        size_t from = dir->n_tensors;
        if (!p)
            rc = tc_err(err, "%s: out of memory", ix->path);
        else if (tc_safetensors_add(dir, p, NULL, err))
            rc = tc_err_prefix(err, "%s", ix->path);
        else
            rc = match_shard(ix, dir, from, shards[i], err);
        free(p);
    }
    free(shards);
    for (size_t i = 0; i < ix->n && rc == TC_OK; i++)
        if (!ix->entries[i].found)
            rc = tc_err(err, "%s: the weight_map places tensor '%s' in %s, which does not hold it", ix->path,
                        ix->entries[i].tensor, ix->entries[i].shard);
    return rc;
}

static int read_index(tc_hfdir *h, const char *index_path, tc_error *err)
{
    cJSON *root;
    if (read_json_object(index_path, &root, err))
        return TC_ERR;
    hf_index ix = {.path = index_path};
    int rc = read_weight_map(&ix, root, err);
    if (rc == TC_OK)
        rc = open_shards(&ix, h->path, &h->dir, err);
    free(ix.entries);
    cJSON_Delete(root);
    return rc;
}

/* ---- Opening ------------------------------------------------------------ */

/* A single model.safetensors wins over an index, as in the reference loader. */
static int read_weights(tc_hfdir *h, tc_error *err)
{
    char *single = path_join(h->path, HF_SINGLE);
    char *index = path_join(h->path, HF_INDEX);
    int rc;
    if (!single || !index)
        rc = tc_err(err, "%s: out of memory", h->path);
    else if (file_exists(single))
        rc = tc_safetensors_add(&h->dir, single, NULL, err);
    else if (file_exists(index))
        rc = read_index(h, index, err);
    else
        rc = tc_err(err, "%s: neither %s nor %s is present", h->path, HF_SINGLE, HF_INDEX);
    free(single);
    free(index);
    return rc;
}

int tc_hfdir_open(tc_hfdir *h, const char *path, tc_error *err)
{
    memset(h, 0, sizeof *h);
    tc_tensordir_init(&h->dir);
    h->path = strdup(path);
    char *config = path_join(path, HF_CONFIG);
    int rc;
    if (!h->path || !config)
        rc = tc_err(err, "%s: out of memory", path);
    else
        rc = read_json_object(config, &h->config, err);
    free(config);
    if (rc == TC_OK)
        rc = read_weights(h, err);
    if (rc != TC_OK)
        tc_hfdir_close(h);
    return rc;
}

void tc_hfdir_close(tc_hfdir *h)
{
    cJSON_Delete(h->config);
    free(h->path);
    tc_tensordir_free(&h->dir);
    memset(h, 0, sizeof *h);
}

/* ---- Writing ------------------------------------------------------------ */

static int make_dir(const char *path, tc_error *err)
{
    if (mkdir(path, 0755) == 0)
        return TC_OK;
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return TC_OK;
    return tc_err(err, "%s: cannot create the directory: %s", path, strerror(e));
}

/* JSON text plus a final newline, atomically. */
static int write_json(const char *path, const cJSON *json, tc_error *err)
{
    char *text = tc_json_print(json);
    if (!text)
        return tc_err(err, "%s: out of memory, or a number JSON cannot hold", path);
    tc_outfile o;
    int rc = tc_outfile_open(&o, path, err);
    if (rc == TC_OK)
        rc = tc_outfile_write(&o, text, strlen(text), err);
    if (rc == TC_OK)
        rc = tc_outfile_write(&o, "\n", 1, err);
    if (rc == TC_OK)
        rc = tc_outfile_commit(&o, err);
    tc_outfile_abort(&o);
    free(text);
    return rc;
}

/* Removes a file left from an earlier write of the other layout, which the
 * reader would otherwise prefer or trip over. */
static int remove_stale(const char *dir, const char *name, tc_error *err)
{
    char *p = path_join(dir, name);
    if (!p)
        return tc_err(err, "%s: out of memory", dir);
    int rc = TC_OK;
    if (remove(p) != 0 && errno != ENOENT)
        rc = tc_err(err, "%s: cannot remove the stale file: %s", p, strerror(errno));
    free(p);
    return rc;
}

static int write_single(const char *dir, const tc_out_tensor *t, size_t n, tc_error *err)
{
    static const tc_kv_str format = {"format", "pt"};
    char *p = path_join(dir, HF_SINGLE);
    if (!p)
        return tc_err(err, "%s: out of memory", dir);
    int rc = tc_safetensors_write(p, t, n, &format, 1, err);
    free(p);
    return rc == TC_OK ? remove_stale(dir, HF_INDEX, err) : rc;
}

/* Greedy cut: a shard closes when the next tensor would push it past the
 * limit; a tensor larger than the limit gets a shard of its own. */
static size_t plan_shards(const uint64_t *sizes, size_t n, uint64_t limit, size_t *first)
{
    size_t shards = 0;
    uint64_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (shards == 0 || (used > 0 && (used >= limit || sizes[i] > limit - used))) {
            first[shards++] = i;
            used = 0;
        }
        used += sizes[i];
    }
    first[shards] = n;
    return shards;
}

static int shard_name(char *buf, size_t cap, size_t i, size_t n)
{
    return snprintf(buf, cap, "model-%05zu-of-%05zu.safetensors", i + 1, n) < (int)cap ? TC_OK : TC_ERR;
}

static cJSON *build_index(const tc_out_tensor *t, const size_t *first, size_t n_shards, uint64_t total)
{
    char num[24], name[64];
    cJSON *root = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    snprintf(num, sizeof num, "%llu", (unsigned long long)total);
    cJSON *size = cJSON_CreateRaw(num);
    if (!root || !md || !map || !size || !cJSON_AddItemToObject(md, "total_size", size)) {
        cJSON_Delete(size);
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t s = 0; s < n_shards; s++) {
        shard_name(name, sizeof name, s, n_shards);
        for (size_t i = first[s]; i < first[s + 1]; i++) {
            if (!cJSON_AddStringToObject(map, t[i].name, name)) {
                cJSON_Delete(root);
                return NULL;
            }
        }
    }
    return root;
}

static int write_shards(const char *dir, const tc_out_tensor *t, const size_t *first, size_t n_shards,
                        tc_error *err)
{
    static const tc_kv_str format = {"format", "pt"};
    char name[64];
    for (size_t s = 0; s < n_shards; s++) {
        shard_name(name, sizeof name, s, n_shards);
        char *p = path_join(dir, name);
        if (!p)
            return tc_err(err, "%s: out of memory", dir);
        int rc = tc_safetensors_write(p, t + first[s], first[s + 1] - first[s], &format, 1, err);
        free(p);
        if (rc)
            return TC_ERR;
    }
    return TC_OK;
}

static int write_sharded(const char *dir, const tc_out_tensor *t, size_t n, const uint64_t *sizes,
                         uint64_t total, uint64_t limit, tc_error *err)
{
    size_t *first = malloc((n + 1) * sizeof *first);
    char *index = path_join(dir, HF_INDEX);
    cJSON *json = NULL;
    int rc = TC_ERR;
    if (!first || !index) {
        tc_err(err, "%s: out of memory", dir);
        goto done;
    }
    size_t n_shards = plan_shards(sizes, n, limit, first);
    if (write_shards(dir, t, first, n_shards, err))
        goto done;
    json = build_index(t, first, n_shards, total);
    if (!json) {
        tc_err(err, "%s: out of memory", index);
        goto done;
    }
    if (write_json(index, json, err) == TC_OK)
        rc = remove_stale(dir, HF_SINGLE, err);
done:
    cJSON_Delete(json);
    free(index);
    free(first);
    return rc;
}

/* Byte sizes of every tensor and their sum; names must be unique across the
 * whole checkpoint, not only within a shard. */
static int measure(const char *dir, const tc_out_tensor *t, size_t n, uint64_t *sizes, uint64_t *total,
                   tc_error *err)
{
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t[i].name)
            return tc_err(err, "%s: output tensor %zu has no name", dir, i);
        if (tc_out_tensor_nbytes(&t[i], &sizes[i], err))
            return tc_err_prefix(err, "%s", dir);
        if (tc_add_u64(*total, sizes[i], total))
            return tc_err(err, "%s: the tensors' total size overflows", dir);
    }
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return tc_err(err, "%s: out of memory", dir);
    for (size_t i = 0; i < n; i++)
        names[i] = t[i].name;
    qsort(names, n, sizeof *names, by_string);
    int rc = TC_OK;
    for (size_t i = 1; i < n && rc == TC_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = tc_err(err, "%s: tensor name '%s' appears twice", dir, names[i]);
    free(names);
    return rc;
}

static const char *const side_files[] = {
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
    "generation_config.json",
};

int tc_hfdir_copy_side_files(const char *src, const char *dst, int *copied, tc_error *err)
{
    if (copied)
        *copied = 0;
    if (make_dir(dst, err))
        return TC_ERR;
    for (size_t i = 0; i < sizeof side_files / sizeof side_files[0]; i++) {
        char *from = path_join(src, side_files[i]), *to = path_join(dst, side_files[i]);
        int rc = from && to ? TC_OK : tc_err(err, "%s: out of memory", dst);
        struct stat st;
        if (rc == TC_OK && stat(from, &st) == 0 && S_ISREG(st.st_mode)) {
            if (tc_same_file(from, to)) {
                rc = tc_err(err, "%s: is the source's own %s", to, side_files[i]);
            } else {
                tc_mapfile m;
                rc = tc_mapfile_open(&m, from, err);
                if (rc == TC_OK) {
                    tc_outfile o;
                    rc = tc_outfile_open(&o, to, err);
                    if (rc == TC_OK)
                        rc = tc_outfile_write(&o, m.data, (size_t)m.size, err);
                    if (rc == TC_OK)
                        rc = tc_outfile_commit(&o, err);
                    tc_outfile_abort(&o);
                    tc_mapfile_close(&m);
                }
                if (rc == TC_OK && copied)
                    (*copied)++;
            }
        }
        free(from);
        free(to);
        if (rc)
            return TC_ERR;
    }
    return TC_OK;
}

int tc_hfdir_write(const char *path, const cJSON *config, const tc_out_tensor *tensors, size_t n_tensors,
                   uint64_t shard_bytes, tc_error *err)
{
    if (!cJSON_IsObject(config))
        return tc_err(err, "%s: the config to write is not a JSON object", path);
    if (make_dir(path, err))
        return TC_ERR;
    uint64_t *sizes = malloc((n_tensors ? n_tensors : 1) * sizeof *sizes);
    char *config_path = path_join(path, HF_CONFIG);
    uint64_t total = 0;
    int rc;
    if (!sizes || !config_path)
        rc = tc_err(err, "%s: out of memory", path);
    else
        rc = measure(path, tensors, n_tensors, sizes, &total, err);
    if (rc == TC_OK) {
        if (shard_bytes == 0 || total <= shard_bytes)
            rc = write_single(path, tensors, n_tensors, err);
        else
            rc = write_sharded(path, tensors, n_tensors, sizes, total, shard_bytes, err);
    }
    /* The config goes last: a directory with one is complete. */
    if (rc == TC_OK)
        rc = write_json(config_path, config, err);
    free(config_path);
    free(sizes);
    return rc;
}
