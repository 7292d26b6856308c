/*
 * The version librill was built as, for a program to compare at run time
 * with the RILL_VERSION_* it was compiled against.
 */
#include "rill/version.h"

const char *rill_version(void) { return RILL_VERSION_STRING; }

int rill_version_number(void) { return RILL_VERSION_NUMBER; }
