/*
 * Filters: a JSON predicate language compiled to flat arrays and matched on
 * raw JSON bytes (docs/FILTERS.md has the language).
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

static const uint8_t *fail(jerr *er, const uint8_t *at, const char *why) {
  er->at = at;
  er->why = why;
  return NULL;
}

static int hexval(uint8_t c) {
  if (is_digit(c))
    return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Four hex digits at p (the caller checked there are four bytes). */
static int hex4(const uint8_t *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0)
      return -1;
    v = v << 4 | h;
  }
  return v;
}

/* Validates the escape at p (a backslash); returns the byte after it. */
static const uint8_t *v_escape(const uint8_t *p, const uint8_t *e, jerr *er) {
  if (e - p < 2)
    return fail(er, p, "unterminated escape in string");
  switch (p[1]) {
  case '"':
  case '\\':
  case '/':
  case 'b':
  case 'f':
  case 'n':
  case 'r':
  case 't': return p + 2;
  case 'u': break;
  default:
    return fail(er, p,
                "bad escape in string (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
  }
  if (e - p < 6)
    return fail(er, p, "truncated \\u escape in string");
  int cp = hex4(p + 2);
  if (cp < 0)
    return fail(er, p, "\\u escape needs four hex digits");
  if (cp >= 0xdc00 && cp <= 0xdfff)
    return fail(er, p, "lone low surrogate \\u escape in string");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (e - p < 12 || p[6] != '\\' || p[7] != 'u')
      return fail(er, p, "high surrogate \\u escape not followed by a low surrogate");
    int lo = hex4(p + 8);
    if (lo < 0xdc00 || lo > 0xdfff)
      return fail(er, p, "high surrogate \\u escape not followed by a low surrogate");
    return p + 12;
  }
  return p + 6;
}

/* Validates one UTF-8 sequence of two to four bytes at p (*p >= 0x80). */
static const uint8_t *v_utf8(const uint8_t *p, const uint8_t *e, jerr *er) {
  uint8_t c = p[0];
  int n;
  uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0; /* overlong */
    else if (c == 0xed)
      hi = 0x9f; /* UTF-16 surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90; /* overlong */
    else if (c == 0xf4)
      hi = 0x8f; /* above U+10FFFF */
  } else
    return fail(er, p, "invalid UTF-8 in string");
  if (e - p < n)
    return fail(er, p, "truncated UTF-8 sequence in string");
  if (p[1] < lo || p[1] > hi)
    return fail(er, p, "invalid UTF-8 in string");
  for (int i = 2; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return fail(er, p, "invalid UTF-8 in string");
  return p + n;
}

/* Bytes that may stand in a string as they are and need no further look:
 * printable ASCII other than '"' and '\'. */
static const uint8_t plain[256] = {
    [0x20 ... 0x21] = 1, /* '"' is 0x22 */
    [0x23 ... 0x5b] = 1, /* '\\' is 0x5c */
    [0x5d ... 0x7f] = 1,
};

/* The high bit of each byte of x that is not plain (a quote, a backslash,
 * below 0x20 or above 0x7f). Only the lowest flagged byte is exact (a
 * borrow may flag bytes above it), which is the one the caller wants. */
static inline uint64_t not_plain8(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ull;
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
  return (((q - ones) & ~q) | ((b - ones) & ~b) | (x - ones * 0x20) | x) & (ones * 0x80);
}

/* Validates the string at p (its opening quote); *esc is set when it holds
 * an escape. Returns the byte after the closing quote. */
static const uint8_t *v_string(const uint8_t *p, const uint8_t *e, bool *esc, jerr *er) {
  const uint8_t *start = p;
  p++;
  for (;;) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Eight bytes at a time to the first that is not plain. */
    while (e - p >= 8) {
      uint64_t x;
      memcpy(&x, p, 8);
      uint64_t t = not_plain8(x);
      if (t) {
        p += __builtin_ctzll(t) >> 3;
        break;
      }
      p += 8;
    }
#endif
    while (p < e && plain[*p])
      p++;
    if (p >= e)
      return fail(er, start, "unterminated string");
    uint8_t c = *p;
    if (c == '"')
      return p + 1;
    if (c == '\\') {
      *esc = true;
      if (!(p = v_escape(p, e, er)))
        return NULL;
    } else if (c < 0x20) {
      return fail(er, p, "raw control character in string (it must be escaped)");
    } else if (!(p = v_utf8(p, e, er))) {
      return NULL;
    }
  }
}

static const uint8_t *v_number(const uint8_t *p, const uint8_t *e, jerr *er) {
  if (*p == '-')
    p++;
  if (p >= e || !is_digit(*p))
    return fail(er, p, "expected a digit");
  if (*p == '0') {
    p++;
    if (p < e && is_digit(*p))
      return fail(er, p - 1, "leading zero in number");
  } else {
    while (p < e && is_digit(*p))
      p++;
  }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || !is_digit(*p))
      return fail(er, p, "expected a digit after the decimal point");
    while (p < e && is_digit(*p))
      p++;
  }
  if (p < e && (*p | 0x20) == 'e') {
    p++;
    if (p < e && (*p == '+' || *p == '-'))
      p++;
    if (p >= e || !is_digit(*p))
      return fail(er, p, "expected a digit in the exponent");
    while (p < e && is_digit(*p))
      p++;
  }
  return p;
}

static const uint8_t *v_literal(const uint8_t *p, const uint8_t *e, const char *lit, size_t n,
                                jerr *er) {
  if ((size_t)(e - p) < n || memcmp(p, lit, n) != 0)
    return fail(er, p, "expected a value (a literal must be true, false or null)");
  return p + n;
}

/* Validates a value that is not an array or an object. */
static inline const uint8_t *v_scalar(const uint8_t *p, const uint8_t *e, jerr *er) {
  if (p >= e)
    return fail(er, p, "unexpected end: expected a value");
  switch (*p) {
  case '"': {
    bool esc = false;
    return v_string(p, e, &esc, er);
  }
  case 't': return v_literal(p, e, "true", 4, er);
  case 'f': return v_literal(p, e, "false", 5, er);
  case 'n': return v_literal(p, e, "null", 4, er);
  default:
    if (*p == '-' || is_digit(*p))
      return v_number(p, e, er);
    return fail(er, p, "expected a value");
  }
}

/* The paths a validating pass looks for as it goes: bit i of a mask stands
 * for path i (i < CACHED_PATHS). A value at depth d is on path i when the
 * first d segments of the path led to it; when the path has exactly d
 * segments, the value is the path's. NULL when only validating. */
typedef struct scan {
  const rill_filter_t *f;
  uint64_t found;
  const uint8_t **val;
} scan;

static bool str_eq(const uint8_t *p, const uint8_t *e, const uint8_t *s, size_t n,
                   const uint8_t **after);

/* Paths among live whose segment at depth is the key of the string [k, q)
 * (validated; esc if it holds escapes). */
static uint64_t key_paths(const scan *sc, uint64_t live, uint32_t depth, const uint8_t *k,
                          const uint8_t *q, bool esc) {
  uint64_t hit = 0;
  for (uint64_t m = live; m; m &= m - 1) {
    uint32_t i = (uint32_t)__builtin_ctzll(m);
    const fseg *sg = &sc->f->segs[sc->f->paths[i].first + depth];
    if (sg->kind & SEG_INDEX)
      continue;
    const uint8_t *kb = sc->f->pool + sg->off;
    bool eq;
    if (!esc) {
      eq = (size_t)(q - k - 2) == sg->len && memcmp(k + 1, kb, sg->len) == 0;
    } else {
      const uint8_t *after;
      eq = str_eq(k, q, kb, sg->len, &after);
    }
    if (eq)
      hit |= m & -m;
  }
  return hit;
}

/* Paths among live whose segment at depth is index ix. */
static uint64_t index_paths(const scan *sc, uint64_t live, uint32_t depth, size_t ix) {
  if (ix >= SEG_INDEX)
    return 0; /* past the largest index a path can name (a payload of 4 GB and more) */
  uint64_t hit = 0;
  for (uint64_t m = live; m; m &= m - 1) {
    uint32_t i = (uint32_t)__builtin_ctzll(m);
    if (sc->f->segs[sc->f->paths[i].first + depth].kind == (SEG_INDEX | (uint32_t)ix))
      hit |= m & -m;
  }
  return hit;
}

/* Validates the value at p, nested depth levels deep; records the paths
 * among live that end here and follows the others into it. */
static const uint8_t *v_value(const uint8_t *p, const uint8_t *e, uint32_t depth, uint64_t live,
                              scan *sc, jerr *er);

/* The value of an object member or array element at depth: a scalar off
 * every path needs no call of v_value of its own. */
static inline const uint8_t *v_member(const uint8_t *p, const uint8_t *e, uint32_t depth,
                                      uint64_t sub, scan *sc, jerr *er) {
  if (!sub && p < e && *p != '{' && *p != '[')
    return v_scalar(p, e, er);
  return v_value(p, e, depth + 1, sub, sc, er);
}

/* After a member or element: 0 with *pp past the ',' and the blanks after
 * it (another follows); 1 with *pp past the closer (the container ends) or
 * NULL (anything else, with the message). */
static inline int v_next(const uint8_t **pp, const uint8_t *e, uint8_t closer, jerr *er) {
  const uint8_t *p = skip_ws(*pp, e);
  if (p < e && *p == ',') {
    *pp = skip_ws(p + 1, e);
    return 0;
  }
  if (p < e && *p == closer) {
    *pp = p + 1;
    return 1;
  }
  *pp =
      fail(er, p,
           closer == '}' ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
  return 1;
}

static const uint8_t *v_value(const uint8_t *p, const uint8_t *e, uint32_t depth, uint64_t live,
                              scan *sc, jerr *er) {
  if (p >= e)
    return fail(er, p, "unexpected end: expected a value");
  if (live) {
    for (uint64_t m = live; m; m &= m - 1) {
      uint32_t i = (uint32_t)__builtin_ctzll(m);
      if (sc->f->paths[i].n == depth) {
        sc->val[i] = p;
        sc->found |= m & -m;
        live &= ~(m & -m);
      }
    }
  }
  switch (*p) {
  case '{': {
    if (depth >= RILL_FILTER_MAX_DEPTH)
      return fail(er, p, "nesting deeper than 128");
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}')
      return p + 1;
    uint64_t claimed = 0; /* paths that met their key here: the first of duplicates wins */
    for (;;) {
      if (p >= e || *p != '"')
        return fail(er, p, "expected a string key");
      const uint8_t *k = p;
      bool esc = false;
      if (!(p = v_string(p, e, &esc, er)))
        return NULL;
      uint64_t sub = 0;
      if (live & ~claimed) {
        sub = key_paths(sc, live & ~claimed, depth, k, p, esc);
        claimed |= sub;
      }
      p = skip_ws(p, e);
      if (p >= e || *p != ':')
        return fail(er, p, "expected ':' after a key");
      p = v_member(skip_ws(p + 1, e), e, depth, sub, sc, er);
      if (!p || v_next(&p, e, '}', er))
        return p;
    }
  }
  case '[': {
    if (depth >= RILL_FILTER_MAX_DEPTH)
      return fail(er, p, "nesting deeper than 128");
    p = skip_ws(p + 1, e);
    if (p < e && *p == ']')
      return p + 1;
    for (size_t ix = 0;; ix++) {
      uint64_t sub = live ? index_paths(sc, live, depth, ix) : 0;
      p = v_member(p, e, depth, sub, sc, er);
      if (!p || v_next(&p, e, ']', er))
        return p;
    }
  }
  default: return v_scalar(p, e, er);
  }
}

/* Validates [p, e) as one JSON value; with live paths, records where each
 * one's value starts in sc. */
static bool json_scan(const uint8_t *p, const uint8_t *e, uint64_t live, scan *sc, jerr *er) {
  p = v_value(skip_ws(p, e), e, 0, live, sc, er);
  if (!p)
    return false;
  p = skip_ws(p, e);
  if (p != e) {
    fail(er, p, "trailing characters after the JSON value");
    return false;
  }
  return true;
}

static bool json_valid(const uint8_t *p, const uint8_t *e, jerr *er) {
  return json_scan(p, e, 0, NULL, er);
}

bool rill_filter_json_valid(const void *p, size_t len) {
  if (!p)
    return false;
  jerr er;
  return json_valid(p, (const uint8_t *)p + len, &er);
}

/* Decodes the (valid) escape at p into out (up to four UTF-8 bytes); sets
 * *n and returns the byte after the escape. */
static const uint8_t *decode_escape(const uint8_t *p, uint8_t out[4], int *n) {
  uint32_t cp;
  switch (p[1]) {
  case 'b': cp = '\b'; break;
  case 'f': cp = '\f'; break;
  case 'n': cp = '\n'; break;
  case 'r': cp = '\r'; break;
  case 't': cp = '\t'; break;
  case 'u':
    cp = (uint32_t)hex4(p + 2);
    if (cp >= 0xd800 && cp <= 0xdbff) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)hex4(p + 8) - 0xdc00);
      p += 6;
    }
    p += 4;
    break;
  default: cp = p[1]; break; /* " \ / */
  }
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    *n = 1;
  } else if (cp < 0x800) {
    out[0] = (uint8_t)(0xc0 | cp >> 6);
    out[1] = (uint8_t)(0x80 | (cp & 0x3f));
    *n = 2;
  } else if (cp < 0x10000) {
    out[0] = (uint8_t)(0xe0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp & 0x3f));
    *n = 3;
  } else {
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    *n = 4;
  }
  return p + 2;
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

/* The byte after the value at p, for a payload already validated. */
static const uint8_t *skip_value(const uint8_t *p, const uint8_t *e) {
  if (p >= e)
    return e;
  uint8_t c = *p;
  if (c == '"')
    return skip_string(p, e);
  if (c == '{' || c == '[') {
    size_t depth = 0;
    while (p < e) {
      c = *p;
      if (c == '"') {
        p = skip_string(p, e);
        continue;
      }
      if (c == '{' || c == '[')
        depth++;
      else if ((c == '}' || c == ']') && --depth == 0)
        return p + 1;
      p++;
    }
    return e;
  }
  while (p < e && *p != ',' && *p != '}' && *p != ']' && !is_ws(*p))
    p++;
  return p;
}

/* ---- numbers --------------------------------------------------------------- */

static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Significant digits kept for strtod: 767 decide the rounding of any double;
 * one more, a sticky 1 when anything non-zero was dropped, keeps the
 * rounding of longer inputs correct. */
#define NUM_DIGITS 768

/* The double nearest the (valid) JSON number at p, correctly rounded.
 * Exact integers up to 2^53 with a power of ten up to 22 take the fast
 * path (one exact operation, Clinger's); the rest go to strtod through a
 * buffer of digits and an exponent without a decimal point, so the locale's
 * decimal separator never matters. Returns the byte after the number. */
static const uint8_t *num_parse(const uint8_t *p, const uint8_t *e, double *out) {
  bool neg = false;
  if (p < e && *p == '-') {
    neg = true;
    p++;
  }
  const uint8_t *digits = p;
  uint64_t m = 0;
  int sig = 0;      /* significant digits seen (leading zeros skipped) */
  int64_t frac = 0; /* digits after the point */
  bool seen_dot = false;
  for (; p < e; p++) {
    if (is_digit(*p)) {
      if (seen_dot)
        frac++;
      if (sig == 0 && *p == '0')
        continue;
      if (sig < 19)
        m = m * 10 + (uint64_t)(*p - '0');
      sig++;
    } else if (*p == '.' && !seen_dot) {
      seen_dot = true;
    } else {
      break;
    }
  }
  const uint8_t *mant_end = p;
  int64_t ex = 0;
  if (p < e && (*p | 0x20) == 'e') {
    p++;
    bool eneg = false;
    if (p < e && (*p == '+' || *p == '-'))
      eneg = *p++ == '-';
    for (; p < e && is_digit(*p); p++)
      if (ex < 1000000000)
        ex = ex * 10 + (*p - '0');
    if (eneg)
      ex = -ex;
  }
  if (sig == 0) {
    *out = neg ? -0.0 : 0.0;
    return p;
  }
  /* value = digits * 10^(ex - frac), digits the integer of all digits. */
  int64_t e10 = ex - frac;
  if (sig <= 19 && m <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
    double d = (double)m;
    d = e10 < 0 ? d / pow10_tab[-e10] : d * pow10_tab[e10];
    *out = neg ? -d : d;
    return p;
  }
  char buf[NUM_DIGITS + 32];
  size_t n = 0;
  int kept = 0;
  bool dropped = false;
  if (neg)
    buf[n++] = '-';
  for (const uint8_t *q = digits; q < mant_end; q++) {
    if (*q == '.' || (kept == 0 && *q == '0'))
      continue;
    if (kept < NUM_DIGITS) {
      buf[n++] = (char)*q;
      kept++;
    } else {
      e10++; /* a dropped digit still scales what was kept */
      if (*q != '0')
        dropped = true;
    }
  }
  if (dropped) {
    buf[n++] = '1';
    e10--;
  }
  /* buf holds at most NUM_DIGITS + 1 digits: beyond these bounds the result
   * is already 0 or infinite, so clamping changes nothing. */
  if (e10 > 99999)
    e10 = 99999;
  if (e10 < -99999)
    e10 = -99999;
  snprintf(buf + n, sizeof buf - n, "e%d", (int)e10);
  *out = strtod(buf, NULL);
  return p;
}

/* ---- matching ---------------------------------------------------------------- */

/* Compares the payload string at p with the decoded bytes s[0..n); sets
 * *after to the byte after the string. */
static bool str_eq(const uint8_t *p, const uint8_t *e, const uint8_t *s, size_t n,
                   const uint8_t **after) {
  const uint8_t *q = p + 1;
  size_t j = 0;
  while (q < e) {
    uint8_t c = *q;
    if (c == '"') {
      *after = q + 1;
      return j == n;
    }
    if (c == '\\') {
      uint8_t u[4];
      int k;
      if (e - q < 2)
        break;
      if (q[1] == 'u' && (e - q < 6 || (hex4(q + 2) >= 0xd800 && e - q < 12)))
        break; /* cannot happen in a validated payload; never read past e */
      q = decode_escape(q, u, &k);
      if (n - j < (size_t)k || memcmp(s + j, u, (size_t)k) != 0)
        break;
      j += (size_t)k;
    } else {
      if (j == n || s[j] != c)
        break;
      j++;
      q++;
    }
  }
  *after = skip_string(p, e);
  return false;
}

typedef struct mstate {
  const uint8_t *base, *end;
  uint64_t done;                    /* bit i: path i looked up */
  const uint8_t *val[CACHED_PATHS]; /* where path i's value starts, or NULL */
} mstate;

/* Where the value at path pi starts in the (validated) payload, or NULL. */
static const uint8_t *find(const rill_filter_t *f, const mstate *m, uint32_t pi) {
  const uint8_t *e = m->end;
  const uint8_t *p = skip_ws(m->base, e);
  const fpath *path = &f->paths[pi];
  for (uint32_t si = 0; si < path->n; si++) {
    const fseg *sg = &f->segs[path->first + si];
    if (p >= e)
      return NULL;
    if (sg->kind & SEG_INDEX) {
      if (*p != '[')
        return NULL;
      p = skip_ws(p + 1, e);
      if (p >= e || *p == ']')
        return NULL;
      for (uint32_t i = sg->kind & ~SEG_INDEX; i > 0; i--) {
        p = skip_ws(skip_value(p, e), e);
        if (p >= e || *p != ',')
          return NULL;
        p = skip_ws(p + 1, e);
      }
    } else {
      if (*p != '{')
        return NULL;
      p = skip_ws(p + 1, e);
      for (;;) {
        if (p >= e || *p != '"')
          return NULL; /* '}': the key is not there */
        const uint8_t *after;
        bool hit = str_eq(p, e, f->pool + sg->off, sg->len, &after);
        p = skip_ws(after, e);
        if (p >= e || *p != ':')
          return NULL;
        p = skip_ws(p + 1, e);
        if (hit)
          break; /* the first of duplicate keys wins */
        p = skip_ws(skip_value(p, e), e);
        if (p >= e || *p != ',')
          return NULL;
        p = skip_ws(p + 1, e);
      }
    }
  }
  return p < e ? p : NULL;
}

static const uint8_t *lookup(const rill_filter_t *f, mstate *m, uint32_t pi) {
  if (pi >= CACHED_PATHS)
    return find(f, m, pi);
  uint64_t bit = (uint64_t)1 << pi;
  if (!(m->done & bit)) {
    m->val[pi] = find(f, m, pi);
    m->done |= bit;
  }
  return m->val[pi];
}

static bool cond_eq(const rill_filter_t *f, const fnode *nd, const uint8_t *v, const uint8_t *e) {
  if (!v)
    return false;
  switch (nd->ctype) {
  case C_STR: {
    const uint8_t *after;
    return *v == '"' && str_eq(v, e, f->pool + nd->s, nd->n, &after);
  }
  case C_NUM: {
    if (*v != '-' && !is_digit(*v))
      return false;
    double d;
    num_parse(v, e, &d);
    return d == nd->num;
  }
  case C_TRUE: return *v == 't';
  case C_FALSE: return *v == 'f';
  default: return *v == 'n';
  }
}

static bool eval(const rill_filter_t *f, mstate *m, uint32_t ni) {
  const fnode *nd = &f->nodes[ni];
  switch (nd->kind) {
  case N_AND:
    for (uint32_t i = 0; i < nd->n; i++)
      if (!eval(f, m, f->kids[nd->a + i]))
        return false;
    return true;
  case N_OR:
    for (uint32_t i = 0; i < nd->n; i++)
      if (eval(f, m, f->kids[nd->a + i]))
        return true;
    return false;
  case N_NOT: return !eval(f, m, nd->a);
  default: break;
  }
  const uint8_t *v = lookup(f, m, nd->a);
  switch (nd->op) {
  case OP_EQ: return cond_eq(f, nd, v, m->end);
  case OP_NE: return !cond_eq(f, nd, v, m->end);
  case OP_EXISTS: return (v != NULL) == (nd->ctype == C_TRUE);
  default: break;
  }
  if (!v || (*v != '-' && !is_digit(*v)))
    return false;
  double d;
  num_parse(v, m->end, &d);
  switch (nd->op) {
  case OP_LT: return d < nd->num;
  case OP_LTE: return d <= nd->num;
  case OP_GT: return d > nd->num;
  default: return d >= nd->num;
  }
}

bool rill_filter_match(const rill_filter_t *f, const void *payload, size_t len) {
  if (!f)
    return false;
  mstate m;
  m.done = 0;
  if (f->npaths) {
    if (!payload)
      return false;
    m.base = payload;
    m.end = m.base + len;
    /* One pass validates the payload and finds the first CACHED_PATHS
     * paths; lookup() finds any beyond those on demand. */
    uint32_t n = f->npaths < CACHED_PATHS ? f->npaths : CACHED_PATHS;
    uint64_t live = n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
    for (uint32_t i = 0; i < n; i++)
      m.val[i] = NULL;
    scan sc = {.f = f, .found = 0, .val = m.val};
    jerr er;
    if (!json_scan(m.base, m.end, live, &sc, &er))
      return false;
    m.done = live;
  } else {
    m.base = m.end = NULL; /* no COND node: the payload is never read */
  }
  return eval(f, &m, f->root);
}

size_t rill_filter_paths(const rill_filter_t *f) { return f ? f->npaths : 0; }

size_t rill_filter_conds(const rill_filter_t *f) { return f ? f->nconds : 0; }

void rill_filter_destroy(rill_filter_t *f) { rill__free(f); }

/* ---- compiling --------------------------------------------------------------- */

typedef struct vec {
  void *p;
  size_t n, cap;
} vec;

typedef struct cc {
  const uint8_t *base, *end;
  vec nodes, kids, stack, paths, segs, pool, tmp; /* fnode, uint32_t x3... see push() */
  uint32_t nconds;
} cc;

static int vgrow(vec *v, size_t more, size_t elem) {
  if (v->cap - v->n >= more)
    return 0;
  size_t cap = v->cap ? v->cap : 16;
  while (cap - v->n < more)
    cap *= 2;
  void *p = rill__realloc(v->p, cap * elem);
  if (!p)
    return rill__err(RILL_ENOMEM, "filter: out of memory growing a table to %zu entries", cap);
  v->p = p;
  v->cap = cap;
  return 0;
}

static int push(vec *v, const void *x, size_t elem) {
  int rc = vgrow(v, 1, elem);
  if (rc)
    return rc;
  memcpy((uint8_t *)v->p + v->n * elem, x, elem);
  v->n++;
  return 0;
}

static int push_u32(vec *v, uint32_t x) { return push(v, &x, sizeof x); }

static int cerr(const cc *c, const uint8_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cerr(const cc *c, const uint8_t *at, const char *fmt, ...) {
  char what[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return rill__err(RILL_EINVAL, "filter: byte %zu: %s", (size_t)(at - c->base), what);
}

/* Decodes the (valid) string at p into v (appending); *after gets the byte
 * after it. */
static int decode_string(vec *v, const uint8_t *p, const uint8_t *e, const uint8_t **after) {
  const uint8_t *end = skip_string(p, e);
  int rc = vgrow(v, (size_t)(end - p), 1); /* decoded is never longer */
  if (rc)
    return rc;
  uint8_t *o = (uint8_t *)v->p + v->n;
  const uint8_t *q = p + 1;
  while (q < end - 1) {
    if (*q == '\\') {
      int k;
      q = decode_escape(q, o, &k);
      o += k;
    } else {
      *o++ = *q++;
    }
  }
  v->n = (size_t)(o - (uint8_t *)v->p);
  *after = end;
  return 0;
}

/* A short, printable rendition of a key for messages. */
static const char *show(const vec *tmp, char *buf, size_t cap) {
  size_t n = tmp->n < cap - 4 ? tmp->n : cap - 4;
  const uint8_t *s = tmp->p;
  for (size_t i = 0; i < n; i++)
    buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
  if (n < tmp->n)
    memcpy(buf + n, "...", 4);
  else
    buf[n] = '\0';
  return buf;
}

static bool same_path(const cc *c, const fpath *a, const fpath *b) {
  if (a->n != b->n)
    return false;
  const fseg *sa = (const fseg *)c->segs.p + a->first, *sb = (const fseg *)c->segs.p + b->first;
  const uint8_t *pool = c->pool.p;
  for (uint32_t i = 0; i < a->n; i++) {
    if (sa[i].kind != sb[i].kind || sa[i].len != sb[i].len)
      return false;
    if (!(sa[i].kind & SEG_INDEX) && memcmp(pool + sa[i].off, pool + sb[i].off, sa[i].len) != 0)
      return false;
  }
  return true;
}

/* Splits the decoded path in c->tmp into segments; *pi gets its index.
 * at: the path's key in the filter, for messages. */
static int compile_path(cc *c, const uint8_t *at, uint32_t *pi) {
  const uint8_t *s = c->tmp.p;
  size_t n = c->tmp.n, i = 0;
  char shown[48];
  if (n == 0)
    return cerr(c, at, "empty path");
  fpath path = {(uint32_t)c->segs.n, 0};
  int rc;
  for (;;) {
    fseg sg = {0, 0, 0};
    if (s[i] == '[') {
      size_t d = ++i;
      uint64_t idx = 0;
      while (i < n && is_digit(s[i])) {
        idx = idx * 10 + (uint64_t)(s[i] - '0');
        if (idx >= SEG_INDEX)
          return cerr(c, at, "bad index in path \"%s\": larger than 2147483647",
                      show(&c->tmp, shown, sizeof shown));
        i++;
      }
      if (i == d)
        return cerr(c, at, "bad index in path \"%s\": expected digits after '['",
                    show(&c->tmp, shown, sizeof shown));
      if (s[d] == '0' && i - d > 1)
        return cerr(c, at, "bad index in path \"%s\": leading zero",
                    show(&c->tmp, shown, sizeof shown));
      if (i >= n || s[i] != ']')
        return cerr(c, at, "bad index in path \"%s\": expected ']'",
                    show(&c->tmp, shown, sizeof shown));
      i++;
      sg.kind = SEG_INDEX | (uint32_t)idx;
    } else {
      if ((rc = vgrow(&c->pool, n - i, 1)))
        return rc;
      uint8_t *o = (uint8_t *)c->pool.p + c->pool.n;
      sg.off = (uint32_t)c->pool.n;
      while (i < n && s[i] != '.' && s[i] != '[') {
        if (s[i] == '\\') {
          if (i + 1 == n)
            return cerr(c, at, "path \"%s\" ends in a lone backslash",
                        show(&c->tmp, shown, sizeof shown));
          uint8_t x = s[i + 1];
          if (x != '.' && x != '[' && x != ']' && x != '\\' && x != '$')
            return cerr(c, at, "bad escape in path \"%s\": a backslash escapes only . [ ] \\ or $",
                        show(&c->tmp, shown, sizeof shown));
          o[sg.len++] = x;
          i += 2;
        } else {
          o[sg.len++] = s[i++];
        }
      }
      if (sg.len == 0)
        return cerr(c, at, "empty key in path \"%s\"", show(&c->tmp, shown, sizeof shown));
      c->pool.n += sg.len;
    }
    if ((rc = push(&c->segs, &sg, sizeof sg)))
      return rc;
    path.n++;
    if (i == n)
      break;
    if (s[i] == '.') {
      i++;
      if (i == n || s[i] == '.' || s[i] == '[')
        return cerr(c, at, "empty key in path \"%s\"", show(&c->tmp, shown, sizeof shown));
    } else if (s[i] != '[') {
      return cerr(c, at, "bad path \"%s\": expected '.' or '[' after ']'",
                  show(&c->tmp, shown, sizeof shown));
    }
  }
  /* Share the lookup with an equal path among the cached ones. */
  const fpath *ps = c->paths.p;
  for (size_t k = 0; k < c->paths.n && k < CACHED_PATHS; k++) {
    if (same_path(c, &ps[k], &path)) {
      c->segs.n = path.first;
      *pi = (uint32_t)k;
      return 0;
    }
  }
  *pi = (uint32_t)c->paths.n;
  return push(&c->paths, &path, sizeof path);
}

static int new_node(cc *c, const fnode *nd, uint32_t *ni) {
  *ni = (uint32_t)c->nodes.n;
  return push(&c->nodes, nd, sizeof *nd);
}

/* Makes an AND or OR node of the stack's entries from base up, pops them
 * and pushes the node. A one-kid AND is the kid itself. */
static int close_group(cc *c, size_t base, uint8_t kind) {
  uint32_t *st = c->stack.p;
  size_t k = c->stack.n - base;
  if (kind == N_AND && k == 1) {
    c->stack.n = base;
    return push_u32(&c->stack, st[base]);
  }
  int rc = vgrow(&c->kids, k, sizeof(uint32_t));
  if (rc)
    return rc;
  fnode nd = {.kind = kind, .a = (uint32_t)c->kids.n, .n = (uint32_t)k};
  if (k) {
    memcpy((uint32_t *)c->kids.p + c->kids.n, st + base, k * sizeof(uint32_t));
    c->kids.n += k;
  }
  c->stack.n = base;
  uint32_t ni;
  if ((rc = new_node(c, &nd, &ni)))
    return rc;
  return push_u32(&c->stack, ni);
}

/* Compiles the operand of an operator at p into nd; *after the byte after. */
static int compile_operand(cc *c, fnode *nd, const uint8_t *p, const char *opname,
                           const uint8_t **after) {
  const uint8_t *e = c->end;
  int rc;
  if (nd->op == OP_EXISTS) {
    if (*p != 't' && *p != 'f')
      return cerr(c, p, "expected true or false for %s", opname);
    nd->ctype = *p == 't' ? C_TRUE : C_FALSE;
    *after = p + (*p == 't' ? 4 : 5);
    return 0;
  }
  bool numeric = nd->op != OP_EQ && nd->op != OP_NE;
  if (*p == '-' || is_digit(*p)) {
    nd->ctype = C_NUM;
    *after = num_parse(p, e, &nd->num);
    return 0;
  }
  if (numeric)
    return cerr(c, p, "expected a number for %s", opname);
  switch (*p) {
  case '"':
    nd->ctype = C_STR;
    nd->s = (uint32_t)c->pool.n;
    if ((rc = decode_string(&c->pool, p, e, after)))
      return rc;
    nd->n = (uint32_t)(c->pool.n - nd->s);
    return 0;
  case 't':
    nd->ctype = C_TRUE;
    *after = p + 4;
    return 0;
  case 'f':
    nd->ctype = C_FALSE;
    *after = p + 5;
    return 0;
  case 'n':
    nd->ctype = C_NULL;
    *after = p + 4;
    return 0;
  default:
    return cerr(c, p,
                "expected a string, number, true, false or null for %s (arrays and "
                "objects are not comparable)",
                opname);
  }
}

static const struct {
  const char *name;
  uint8_t op;
} cond_ops[] = {{"$eq", OP_EQ}, {"$ne", OP_NE},   {"$lt", OP_LT},        {"$lte", OP_LTE},
                {"$gt", OP_GT}, {"$gte", OP_GTE}, {"$exists", OP_EXISTS}};

static bool key_is(const vec *tmp, const char *name) {
  size_t n = strlen(name);
  return tmp->n == n && memcmp(tmp->p, name, n) == 0;
}

static int push_cond(cc *c, fnode *nd) {
  uint32_t ni;
  int rc = new_node(c, nd, &ni);
  if (rc)
    return rc;
  c->nconds++;
  return push_u32(&c->stack, ni);
}

/* The condition for path pi at p: a scalar or an object of operators. Each
 * operator pushes a COND node on the stack (the enclosing AND takes them). */
static int compile_condition(cc *c, uint32_t pi, const uint8_t *p, const uint8_t **after) {
  const uint8_t *e = c->end;
  int rc;
  char shown[48];
  if (*p == '[')
    return cerr(c, p,
                "expected a scalar or an object of operators for a path (arrays are not "
                "comparable)");
  if (*p != '{') {
    fnode nd = {.kind = N_COND, .op = OP_EQ, .a = pi};
    if ((rc = compile_operand(c, &nd, p, "a path", after)))
      return rc;
    return push_cond(c, &nd);
  }
  const uint8_t *open = p;
  p = skip_ws(p + 1, e);
  if (*p == '}')
    return cerr(c, open, "empty condition object: expected an operator such as $eq");
  for (;;) {
    const uint8_t *kp = p;
    c->tmp.n = 0;
    if ((rc = decode_string(&c->tmp, p, e, &p)))
      return rc;
    fnode nd = {.kind = N_COND, .a = pi};
    size_t k = 0, nops = sizeof cond_ops / sizeof *cond_ops;
    while (k < nops && !key_is(&c->tmp, cond_ops[k].name))
      k++;
    if (k == nops)
      return cerr(c, kp,
                  "unknown operator \"%s\" in a condition (expected $eq, $ne, $lt, $lte, $gt, "
                  "$gte or $exists)",
                  show(&c->tmp, shown, sizeof shown));
    nd.op = cond_ops[k].op;
    p = skip_ws(skip_ws(p, e) + 1, e); /* the ':' */
    if ((rc = compile_operand(c, &nd, p, cond_ops[k].name, &p)))
      return rc;
    if ((rc = push_cond(c, &nd)))
      return rc;
    p = skip_ws(p, e);
    if (*p == '}') {
      *after = p + 1;
      return 0;
    }
    p = skip_ws(p + 1, e); /* the ',' */
  }
}

/* Compiles the filter object at p; pushes its node on the stack. */
static int compile_object(cc *c, const uint8_t *p, const uint8_t **after) {
  const uint8_t *e = c->end;
  int rc;
  char shown[48];
  if (*p != '{')
    return cerr(c, p, "expected a filter object");
  size_t base = c->stack.n;
  p = skip_ws(p + 1, e);
  while (*p != '}') {
    const uint8_t *kp = p;
    c->tmp.n = 0;
    if ((rc = decode_string(&c->tmp, p, e, &p)))
      return rc;
    p = skip_ws(skip_ws(p, e) + 1, e); /* the ':' */
    const uint8_t *s = c->tmp.p;
    if (c->tmp.n > 0 && s[0] == '$') {
      if (key_is(&c->tmp, "$and") || key_is(&c->tmp, "$or")) {
        uint8_t kind = s[1] == 'a' ? N_AND : N_OR;
        if (*p != '[')
          return cerr(c, p, "expected an array of filter objects for %s",
                      kind == N_AND ? "$and" : "$or");
        size_t gbase = c->stack.n;
        p = skip_ws(p + 1, e);
        while (*p != ']') {
          if ((rc = compile_object(c, p, &p)))
            return rc;
          p = skip_ws(p, e);
          if (*p == ',')
            p = skip_ws(p + 1, e);
        }
        p++;
        if ((rc = close_group(c, gbase, kind)))
          return rc;
      } else if (key_is(&c->tmp, "$not")) {
        if (*p != '{')
          return cerr(c, p, "expected a filter object for $not");
        if ((rc = compile_object(c, p, &p)))
          return rc;
        uint32_t *st = c->stack.p;
        fnode nd = {.kind = N_NOT, .a = st[c->stack.n - 1]};
        uint32_t ni;
        if ((rc = new_node(c, &nd, &ni)))
          return rc;
        st = c->stack.p;
        st[c->stack.n - 1] = ni;
      } else {
        return cerr(c, kp,
                    "unknown operator \"%s\" (expected $and, $or, $not, or a path; a key "
                    "starting with $ is written \\\\$)",
                    show(&c->tmp, shown, sizeof shown));
      }
    } else {
      uint32_t pi = 0;
      if ((rc = compile_path(c, kp, &pi)))
        return rc;
      if ((rc = compile_condition(c, pi, p, &p)))
        return rc;
    }
    p = skip_ws(p, e);
    if (*p == ',')
      p = skip_ws(p + 1, e);
  }
  *after = p + 1;
  return close_group(c, base, N_AND);
}

static void cc_free(cc *c) {
  rill__free(c->nodes.p);
  rill__free(c->kids.p);
  rill__free(c->stack.p);
  rill__free(c->paths.p);
  rill__free(c->segs.p);
  rill__free(c->pool.p);
  rill__free(c->tmp.p);
}

int rill_filter_compile(rill_filter_t **out, const char *json, size_t len) {
  if (!out)
    return rill__err(RILL_EINVAL, "filter: out is NULL");
  *out = NULL;
  if (!json && len)
    return rill__err(RILL_EINVAL, "filter: json is NULL");
  if (len > RILL_FILTER_MAX_LEN)
    return rill__err(RILL_EINVAL, "filter: %zu bytes, longer than the limit of %zu", len,
                     RILL_FILTER_MAX_LEN);
  if (!json)
    json = ""; /* NULL with len 0: the empty text, malformed like any other */
  cc c = {.base = (const uint8_t *)json, .end = (const uint8_t *)json + len};
  jerr er;
  if (!json_valid(c.base, c.end, &er))
    return rill__err(RILL_EINVAL, "filter: byte %zu: malformed JSON: %s", (size_t)(er.at - c.base),
                     er.why);
  const uint8_t *p = skip_ws(c.base, c.end);
  int rc = compile_object(&c, p, &p);
  if (rc)
    goto free_scratch;
  uint32_t root = ((uint32_t *)c.stack.p)[0];

  /* One allocation: the header, then each table, 8-byte aligned. */
  size_t o_nodes = RILL__ALIGN_UP(sizeof(rill_filter_t), (size_t)8);
  size_t o_kids = o_nodes + c.nodes.n * sizeof(fnode);
  size_t o_paths = RILL__ALIGN_UP(o_kids + c.kids.n * sizeof(uint32_t), (size_t)8);
  size_t o_segs = o_paths + c.paths.n * sizeof(fpath);
  size_t o_pool = o_segs + c.segs.n * sizeof(fseg);
  size_t total = o_pool + c.pool.n;
  uint8_t *mem = rill__malloc(total);
  if (!mem) {
    rc = rill__err(RILL_ENOMEM, "filter: out of memory for %zu bytes", total);
    goto free_scratch;
  }
  rill_filter_t *f = (rill_filter_t *)(void *)mem;
  memcpy(mem + o_nodes, c.nodes.p, c.nodes.n * sizeof(fnode));
  if (c.kids.n)
    memcpy(mem + o_kids, c.kids.p, c.kids.n * sizeof(uint32_t));
  if (c.paths.n)
    memcpy(mem + o_paths, c.paths.p, c.paths.n * sizeof(fpath));
  if (c.segs.n)
    memcpy(mem + o_segs, c.segs.p, c.segs.n * sizeof(fseg));
  if (c.pool.n)
    memcpy(mem + o_pool, c.pool.p, c.pool.n);
  *f = (rill_filter_t){
      .root = root,
      .nnodes = (uint32_t)c.nodes.n,
      .nkids = (uint32_t)c.kids.n,
      .npaths = (uint32_t)c.paths.n,
      .nsegs = (uint32_t)c.segs.n,
      .nconds = c.nconds,
      .nodes = (const fnode *)(const void *)(mem + o_nodes),
      .kids = (const uint32_t *)(const void *)(mem + o_kids),
      .paths = (const fpath *)(const void *)(mem + o_paths),
      .segs = (const fseg *)(const void *)(mem + o_segs),
      .pool = mem + o_pool,
  };
  *out = f;
free_scratch:
  cc_free(&c);
  return rc;
}
