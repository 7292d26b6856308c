/*
 * Compiling: the filter text validated, then walked once into nodes, paths
 * and a pool, all in one allocation (see filter_internal.h for the form).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "filter/filter_internal.h"

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
      q = rill__filter_decode_escape(q, o, &k);
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
    *after = rill__filter_num_parse(p, e, &nd->num);
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

size_t rill_filter_paths(const rill_filter_t *f) { return f ? f->npaths : 0; }

size_t rill_filter_conds(const rill_filter_t *f) { return f ? f->nconds : 0; }

void rill_filter_destroy(rill_filter_t *f) { rill__free(f); }
