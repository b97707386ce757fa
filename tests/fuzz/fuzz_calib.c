/* libFuzzer harness: a calibration file as JSON Lines, plain text and token lines. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_calib(data, size);
}
