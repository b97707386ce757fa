/* libFuzzer harness: a llama2.c tokenizer.bin, then encoding and decoding with it. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_tokenizer_bin(data, size);
}
