/*
 * rill version: the one place the version is written. CMake reads these
 * three numbers for the project's version, librill.so's soname
 * (librill.so.MAJOR) and rill.pc; change them here at a release.
 *
 * The macros say which rill a program was compiled against, the functions
 * which librill it runs with: a program linked to the shared library can
 * compare the two.
 */
#ifndef RILL_VERSION_H
#define RILL_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define RILL_VERSION_MAJOR 0
#define RILL_VERSION_MINOR 1
#define RILL_VERSION_PATCH 0

#define RILL__STR(x)  RILL__XSTR(x)
#define RILL__XSTR(x) #x
/* "MAJOR.MINOR.PATCH". */
#define RILL_VERSION_STRING                                                                        \
  RILL__STR(RILL_VERSION_MAJOR)                                                                    \
  "." RILL__STR(RILL_VERSION_MINOR) "." RILL__STR(RILL_VERSION_PATCH)
/* One number that orders versions: 0xMMmmpp, as libuv's UV_VERSION_HEX. */
#define RILL_VERSION_NUMBER                                                                        \
  ((RILL_VERSION_MAJOR << 16) | (RILL_VERSION_MINOR << 8) | RILL_VERSION_PATCH)

/* The running library's version as "MAJOR.MINOR.PATCH": a static string,
 * never NULL. */
const char *rill_version(void);

/* The running library's version as RILL_VERSION_NUMBER gives it:
 * (major << 16) | (minor << 8) | patch. A program built against 0.1.x
 * that needs what 0.2 added checks rill_version_number() >= 0x000200. */
int rill_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* RILL_VERSION_H */
