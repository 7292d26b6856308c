/* The version is written once (rill/version.h): the macros, the running
 * library and what CMake built (soname, rill.pc) must all say the same. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "rill/rill.h"

Test(version, the_library_reports_the_header_version) {
  cr_expect_str_eq(rill_version(), RILL_VERSION_STRING);
  cr_expect_eq(rill_version_number(), RILL_VERSION_NUMBER);
}

Test(version, the_string_and_the_number_agree) {
  char s[32];
  int n = rill_version_number();
  snprintf(s, sizeof s, "%d.%d.%d", n >> 16, (n >> 8) & 0xff, n & 0xff);
  cr_expect_str_eq(s, rill_version());
  cr_expect_eq(n >> 16, RILL_VERSION_MAJOR);
  cr_expect_eq((n >> 8) & 0xff, RILL_VERSION_MINOR);
  cr_expect_eq(n & 0xff, RILL_VERSION_PATCH);
}

/* RILL_PROJECT_VERSION is CMake's project version, which names the shared
 * library and fills rill.pc. */
Test(version, cmake_read_the_same_version) {
  cr_expect_str_eq(RILL_PROJECT_VERSION, rill_version());
}
