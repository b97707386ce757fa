/* libFuzzer harness: a Hugging Face config.json and shard index, then the model view. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_hfdir(data, size);
}
