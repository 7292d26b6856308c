/* The one naming rule for topics and services (the log's directories, the
 * protocol's BIND, SUBSCRIBE and SERVE): safe as a file name, and the same
 * on disk and on the wire. */
#include "internal.h"

bool rill__name_ok(const void *name, size_t len, size_t max) {
  const uint8_t *s = name;
  if (len == 0 || len > max || s[0] == '.')
    return false;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  }
  return true;
}
