/* libFuzzer harness: a Hugging Face tokenizer.json, then encoding and decoding with it. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_tokenizer_json(data, size);
}
