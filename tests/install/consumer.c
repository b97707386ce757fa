/* A program that uses libtc as an installed library, built by test_install
 * with `pkg-config --cflags --libs tc` and through find_package(tc): it opens
 * the model named on its command line through the public API and prints what
 * the test checks. */
#include <stdio.h>
#include <stdlib.h>

#include <tc/info.h>
#include <tc/model.h>
#include <tc/version.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    tc_model m;
    tc_error err;
    if (tc_model_open(&m, argv[1], &err) != TC_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* cJSON is part of the API: the info tree is the caller's to free. */
    cJSON *info = tc_model_info_json(&m);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(info, "arch");
    printf("tc %s\nformat %s\narch %s\nlayers %d\ndim %d\nparams %llu\n", tc_version(), tc_format_name(m.format),
           cJSON_IsString(arch) ? arch->valuestring : "?", m.cfg.n_layers, m.cfg.dim,
           (unsigned long long)tc_model_n_params(&m));
    cJSON_Delete(info);
    tc_model_close(&m);
    return 0;
}
