/* libFuzzer harness: the packed ternary model file, then the LUT runner over it. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_tmodel(data, size);
}
