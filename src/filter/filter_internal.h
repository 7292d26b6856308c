#ifndef RILL_FILTER_INTERNAL_H
#define RILL_FILTER_INTERNAL_H

/*
 * Filters: a JSON predicate language compiled to flat arrays and matched on
 * raw JSON bytes (docs/FILTERS.md has the language). This header holds what
 * the filter's files share:
 *  - compile.c: the filter text parsed and compiled to the flat form below;
 *  - match.c: the validating scan of a payload that finds the paths, the
 *    numbers, and the evaluation (one file: the scan and the evaluation are
 *    rill_filter_match's hot path, and stay where the compiler inlines them).
 *
 * Compile: the filter text is validated by the same validator payloads go
 * through (so a malformed filter gets the same offset-precise message),
 * then walked once to build
 *  - nodes: AND / OR (a range of kids[]), NOT (one child), COND (a path, an
 *    operator and a pre-parsed constant);
 *  - paths: ranges of segs[], each a decoded key (bytes in pool[]) or an
 *    index; equal paths are shared, so a path tested twice is found once;
 *  - pool: decoded key bytes and string constants.
 * All of it lands in one allocation.
 *
 * Match: one validating pass over the whole payload (never matched: bad
 * JSON) that also finds the first 64 paths as it goes: a bitmask of the
 * paths still live at each level, narrowed at each key and index, and a
 * path ending at a value records where the value starts (the first of
 * duplicate keys claims it). Then the node tree is evaluated with
 * short-circuit, comparing constants with the bytes where the values
 * start. Paths past the 64th are found on demand by a scan that skips what
 * it does not need (strings with memchr, containers by counting brackets
 * outside strings). Nothing allocates and no tree is built. The validator
 * recurses once per nesting level, at most RILL_FILTER_MAX_DEPTH;
 * everything else is iterative.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "rill/filter.h"

/* ---- compiled form ------------------------------------------------------- */

enum { N_AND, N_OR, N_NOT, N_COND };
enum { OP_EQ, OP_NE, OP_LT, OP_LTE, OP_GT, OP_GTE, OP_EXISTS };
enum { C_STR, C_NUM, C_TRUE, C_FALSE, C_NULL };

typedef struct fnode {
  uint8_t kind;  /* N_* */
  uint8_t op;    /* OP_*, for N_COND */
  uint8_t ctype; /* C_*, for N_COND (OP_EXISTS: C_TRUE or C_FALSE) */
  uint8_t pad;
  uint32_t a; /* AND/OR: first kid in kids[]; NOT: the child; COND: path index */
  uint32_t n; /* AND/OR: kid count; COND with C_STR: string length */
  uint32_t s; /* COND with C_STR: string offset in pool[] */
  double num; /* COND with C_NUM */
} fnode;

#define SEG_INDEX 0x80000000u /* in fseg.kind: an array index (the low bits) */

typedef struct fseg {
  uint32_t kind; /* SEG_INDEX | index, or 0 for a key */
  uint32_t off;  /* key: bytes in pool[] */
  uint32_t len;
} fseg;

typedef struct fpath {
  uint32_t first; /* in segs[] */
  uint32_t n;
} fpath;

struct rill_filter {
  uint32_t root;
  uint32_t nnodes, nkids, npaths, nsegs, nconds;
  const fnode *nodes;
  const uint32_t *kids;
  const fpath *paths;
  const fseg *segs;
  const uint8_t *pool;
};

/* Paths whose lookups a match remembers (on the stack). */
#define CACHED_PATHS 64

/* ---- lexing shared by the validator, the compiler and the matcher ------- */

typedef struct jerr {
  const uint8_t *at;
  const char *why;
} jerr;

static inline int is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
static inline int is_digit(uint8_t c) { return (uint8_t)(c - '0') < 10; }

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *e) {
  while (p < e && is_ws(*p))
    p++;
  return p;
}

/* The byte after the string that opens at p. */
static inline const uint8_t *skip_string(const uint8_t *p, const uint8_t *e) {
  p++;
  for (;;) {
    const uint8_t *q = p < e ? memchr(p, '"', (size_t)(e - p)) : NULL;
    if (!q)
      return e;
    /* The quote closes the string unless an odd run of backslashes escapes it. */
    const uint8_t *b = q;
    while (b > p && b[-1] == '\\')
      b--;
    if (((q - b) & 1) == 0)
      return q + 1;
    p = q + 1;
  }
}

/* What a validating pass records as it goes (match.c). */
typedef struct scan scan;

/* Validates [p, e) as one JSON value; with live paths, records where each
 * one's value starts in sc (match.c). */
bool rill__filter_json_scan(const uint8_t *p, const uint8_t *e, uint64_t live, scan *sc, jerr *er);

/* Validates [p, e) as one JSON value; *er says where and why not. */
static inline bool json_valid(const uint8_t *p, const uint8_t *e, jerr *er) {
  return rill__filter_json_scan(p, e, 0, NULL, er);
}

/* Decodes the (valid) escape at p into out (up to four UTF-8 bytes); sets
 * *n and returns the byte after the escape (match.c). */
const uint8_t *rill__filter_decode_escape(const uint8_t *p, uint8_t out[4], int *n);

/* The double nearest the (valid) JSON number at p, correctly rounded;
 * returns the byte after the number (match.c). */
const uint8_t *rill__filter_num_parse(const uint8_t *p, const uint8_t *e, double *out);

#endif
