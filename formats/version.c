#include "tc/version.h"

/* TC_VERSION is defined for this file alone, by the build, from the project
 * version: one place holds the number, everything else asks tc_version(). */
const char *tc_version(void)
{
    return TC_VERSION;
}
