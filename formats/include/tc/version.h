/* The library's version, for programs that link it (shared or static) and for
 * the tools' --version.  It lives in the lowest layer so that every layer can
 * record it (reports name the version that wrote them). */
#ifndef TC_VERSION_H
#define TC_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

/* The project version libtc was built as ("0.1.0"): the VERSION of
 * CMakeLists.txt's project(), the same string the shared library's file name,
 * tc.pc and the CMake package carry.  A static string; never NULL. */
const char *tc_version(void);

#ifdef __cplusplus
}
#endif

#endif
