/* libFuzzer harness: a safetensors file (header, offsets, dtypes). */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_safetensors(data, size);
}
