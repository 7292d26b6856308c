/* The subcommands' shared helpers (tools.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

char **rill_tool_alloc_args(int argc) {
  char **v = calloc((size_t)argc + 1, sizeof *v);
  if (!v) {
    fprintf(stderr, "rill: out of memory\n");
    exit(1);
  }
  return v;
}

int rill_tool_bad(const char *why) {
  fprintf(stderr, "rill: %s\n", why);
  return -1;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_len(const uint8_t *p, size_t left) {
  uint8_t c = p[0];
  size_t n = c < 0x80             ? 1
             : (c & 0xe0) == 0xc0 ? 2
             : (c & 0xf0) == 0xe0 ? 3
             : (c & 0xf8) == 0xf0 ? 4
                                  : 0;
  if (!n || n > left || (n == 2 && c < 0xc2))
    return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  if (n == 3) {
    uint32_t cp = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
    if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
  }
  if (n == 4) {
    uint32_t cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
                  (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
    if (cp < 0x10000 || cp > 0x10ffff)
      return 0;
  }
  return n;
}

void rill_tool_json_string(FILE *f, const void *data, size_t len) {
  const uint8_t *p = data;
  fputc('"', f);
  for (size_t i = 0; i < len;) {
    uint8_t c = p[i];
    size_t n = utf8_len(p + i, len - i);
    if (c == '"' || c == '\\') {
      fprintf(f, "\\%c", c);
      i++;
    } else if (c == '\n') {
      fputs("\\n", f), i++;
    } else if (c == '\t') {
      fputs("\\t", f), i++;
    } else if (c < 0x20 || c == 0x7f || n == 0) {
      fprintf(f, "\\u%04x", c);
      i++;
    } else {
      fwrite(p + i, 1, n, f);
      i += n;
    }
  }
  fputc('"', f);
}

void rill_tool_text(FILE *f, const void *data, size_t len) {
  const uint8_t *p = data;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_len(p + i, len - i);
    if (p[i] == '\\') {
      fputs("\\\\", f);
      i++;
    } else if (n > 1 || (n == 1 && p[i] >= 0x20 && p[i] < 0x7f)) {
      fwrite(p + i, 1, n, f); /* text, UTF-8 included */
      i += n;
    } else {
      fprintf(f, "\\x%02x", p[i]);
      i++;
    }
  }
}

void rill_tool_hex(FILE *f, const void *data, size_t len) {
  const uint8_t *p = data;
  for (size_t i = 0; i < len; i++)
    fprintf(f, "%02x", p[i]);
}

bool rill_tool_next_record(rill_tool_records_t *r, const char **rec, size_t *len) {
  if (r->nargs) {
    if (r->next == r->nargs)
      return false;
    *rec = r->args[r->next++];
    *len = strlen(*rec);
    return true;
  }
  ssize_t n = getline(&r->line, &r->cap, stdin);
  if (n < 0)
    return false;
  if (n && r->line[n - 1] == '\n')
    n--;
  *rec = r->line;
  *len = (size_t)n;
  return true;
}

void rill_tool_records_free(rill_tool_records_t *r) {
  free(r->line);
  r->line = NULL;
}

bool rill_tool_parse_addr(const char *s, char *hbuf, size_t cap, const char **host,
                          uint16_t *port) {
  const char *colon = strrchr(s, ':');
  size_t hl = colon ? (size_t)(colon - s) : strlen(s);
  if (hl >= cap)
    return false;
  memcpy(hbuf, s, hl);
  hbuf[hl] = 0;
  if (hl)
    *host = hbuf;
  if (colon) {
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
      return false;
    *port = (uint16_t)p;
  }
  return true;
}
