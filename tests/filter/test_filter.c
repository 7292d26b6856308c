#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/filter.h"
#include "rill/mem.h"

static rill_filter_t *mk(const char *json) {
  rill_filter_t *f = NULL;
  int rc = rill_filter_compile(&f, json, strlen(json));
  cr_assert_eq(rc, 0, "compile %s: %s (%s)", json, rill_strerror(rc), rill_errmsg());
  cr_assert_not_null(f);
  return f;
}

static bool match(const char *filter, const char *payload) {
  rill_filter_t *f = mk(filter);
  bool m = rill_filter_match(f, payload, strlen(payload));
  rill_filter_destroy(f);
  return m;
}

/* ---- the filter table ----------------------------------------------------- */

typedef struct {
  const char *filter;
  const char *payload;
  bool want;
} row_t;

static const char *EV = "{\"user\":{\"name\":\"ann\",\"role\":\"admin\",\"age\":41,\"tags\":[\"a\","
                        "\"b\",{\"k\":[10,20,30]}]},\"size\":1500,\"ok\":true,\"gone\":null,"
                        "\"items\":[{\"id\":1},{\"id\":2}],\"f\":false}";

static const row_t table[] = {
    /* nested paths and scalars */
    {"{\"user.name\": \"ann\"}", NULL, true},
    {"{\"user.name\": \"bob\"}", NULL, false},
    {"{\"user.role\": \"admin\", \"size\": {\"$gte\": 1000}}", NULL, true},
    {"{\"user.age\": 41}", NULL, true},
    {"{\"user.age\": \"41\"}", NULL, false},
    {"{\"user.name\": {\"$eq\": \"ann\"}}", NULL, true},
    {"{\"user\": \"ann\"}", NULL, false},
    {"{\"user.name.x\": \"ann\"}", NULL, false},
    {"{\"ok\": true}", NULL, true},
    {"{\"ok\": false}", NULL, false},
    {"{\"f\": false}", NULL, true},
    {"{\"gone\": null}", NULL, true},
    {"{\"ok\": null}", NULL, false},
    {"{\"ok\": 1}", NULL, false},
    {"{\"missing\": null}", NULL, false},
    /* arrays and indexes */
    {"{\"items[0].id\": 1}", NULL, true},
    {"{\"items[1].id\": 2}", NULL, true},
    {"{\"items[1].id\": 1}", NULL, false},
    {"{\"items[2].id\": {\"$exists\": true}}", NULL, false},
    {"{\"items[2]\": {\"$exists\": false}}", NULL, true},
    {"{\"items[99999].id\": 1}", NULL, false},
    {"{\"user.tags[2].k[2]\": 30}", NULL, true},
    {"{\"user.tags[2].k[3]\": {\"$exists\": true}}", NULL, false},
    {"{\"user.tags[1]\": \"b\"}", NULL, true},
    {"{\"user[0]\": {\"$exists\": true}}", NULL, false}, /* index on an object */
    {"{\"items.id\": 1}", NULL, false},                  /* key on an array */
    {"{\"items.0.id\": 1}", NULL, false},                /* .0 is a key, not an index */
    {"{\"size[0]\": 1500}", NULL, false},                /* index on a number */
    {"{\"[1]\": 5}", "[4,5,6]", true},
    {"{\"[0][1]\": 2}", "[[1,2],[3]]", true},
    {"{\"[1][0]\": 3}", "[[1,2],[3]]", true},
    {"{\"[1][1]\": {\"$exists\": true}}", "[[1,2],[3]]", false},
    {"{\"[0]\": 1}", "[]", false},
    {"{\"a[0]\": 1}", "{\"a\":[]}", false},
    {"{\"a[0]\": 1}", "{\"a\":[ 1 ]}", true},
    {"{\"a[1]\": {\"$exists\": true}}", "{\"a\":[ [1,[2,{\"x\":\"]\"}]] , 9 ]}", true},
    {"{\"a[1]\": 9}", "{\"a\":[ [1,[2,{\"x\":\"]\\\"\"}]] , 9 ]}", true},
    {"{\"a.b\": 2}", "{\"a\":{\"x\":{\"b\":1},\"b\":2}}", true},
    {"{\"a.b\": 2}", "{\"a\":{\"x\":\"{\\\"b\\\":2}\"}}", false}, /* not inside strings */
    /* whitespace everywhere */
    {"  {  \"a\"  :  {  \"$gt\"  :  1  }  }  ", " \t\r\n{ \"a\" \n:\t 2 }\n", true},
    /* escapes in keys */
    {"{\"a\\\\.b\": 1}", "{\"a.b\":1}", true},
    {"{\"a\\\\.b\": 1}", "{\"a\":{\"b\":1}}", false},
    {"{\"a.b\": 1}", "{\"a.b\":1}", false},
    {"{\"x\\\\[0\\\\]\": 1}", "{\"x[0]\":1}", true},
    {"{\"x\\\\\\\\y\": 1}", "{\"x\\\\y\":1}", true},
    {"{\"\\\\$ref\": 1}", "{\"$ref\":1}", true},
    {"{\"a$\": 1}", "{\"a$\":1}", true},
    {"{\"a]b\": 1}", "{\"a]b\":1}", true},
    {"{\"\\\"q\\\"\": 1}", "{\"\\\"q\\\"\":1}", true},
    {"{\"k\": 1}", "{\"\\u006b\":1}", true},
    {"{\"\\u006b\": 1}", "{\"k\":1}", true},
    {"{\"a/b\": 1}", "{\"a\\/b\":1}", true},
    {"{\"a\\tb\": 1}", "{\"a\\u0009b\":1}", true},
    {"{\"ab\": 1}", "{\"a\":1, \"abc\":2, \"ab\":1}", true},
    {"{\"abc\": 1}", "{\"ab\":1}", false},
    /* escapes and unicode in values */
    {"{\"s\": \"a\\\"b\"}", "{\"s\":\"a\\\"b\"}", true},
    {"{\"s\": \"a\\\"b\"}", "{\"s\":\"a\\u0022b\"}", true},
    {"{\"s\": \"line\\n\"}", "{\"s\":\"line\\u000A\"}", true},
    {"{\"s\": \"\\u00e9\"}", "{\"s\":\"\xc3\xa9\"}", true},
    {"{\"s\": \"\xc3\xa9\"}", "{\"s\":\"\\u00E9\"}", true},
    {"{\"s\": \"e\xcc\x81\"}", "{\"s\":\"\xc3\xa9\"}", false}, /* no normalization */
    {"{\"s\": \"\\ud83d\\ude00\"}", "{\"s\":\"\xf0\x9f\x98\x80\"}", true},
    {"{\"s\": \"\xf0\x9f\x98\x80\"}", "{\"s\":\"\\uD83D\\uDE00\"}", true},
    {"{\"s\": \"\xf0\x9f\x98\x80\"}", "{\"s\":\"\\uD83D\\uDE01\"}", false},
    {"{\"\xf0\x9f\x98\x80.x\": 1}", "{\"\\ud83d\\ude00\":{\"x\":1}}", true},
    {"{\"s\": \"\\u0000\"}", "{\"s\":\"\\u0000\"}", true},
    {"{\"s\": \"\"}", "{\"s\":\"\\u0000\"}", false},
    {"{\"s\": \"\"}", "{\"s\":\"\"}", true},
    {"{\"s\": \"ab\"}", "{\"s\":\"abc\"}", false},
    {"{\"s\": \"abc\"}", "{\"s\":\"ab\"}", false},
    {"{\"s\": \"\\\\\"}", "{\"s\":\"\\\\\"}", true},
    /* numbers */
    {"{\"n\": 1}", "{\"n\":1.0}", true},
    {"{\"n\": 1}", "{\"n\":1e0}", true},
    {"{\"n\": 1}", "{\"n\":10E-1}", true},
    {"{\"n\": 1}", "{\"n\":0.1e1}", true},
    {"{\"n\": 100}", "{\"n\":1e+2}", true},
    {"{\"n\": 0}", "{\"n\":-0}", true}, /* IEEE: -0 == 0 */
    {"{\"n\": -0.0}", "{\"n\":0}", true},
    {"{\"n\": {\"$lt\": 0}}", "{\"n\":-0}", false},
    {"{\"n\": 1e400}", "{\"n\":1e999}", true}, /* both +inf */
    {"{\"n\": {\"$gt\": 1.7976931348623157e308}}", "{\"n\":1e400}", true},
    {"{\"n\": -1e400}", "{\"n\":-1e309}", true},
    {"{\"n\": 0}", "{\"n\":1e-400}", true}, /* underflows to 0 */
    {"{\"n\": {\"$gt\": 0}}", "{\"n\":5e-324}", true},
    {"{\"n\": 9007199254740993}", "{\"n\":9007199254740992}", true}, /* beyond 2^53 */
    {"{\"n\": 9007199254740992}", "{\"n\":9007199254740994}", false},
    {"{\"n\": 18446744073709551616}", "{\"n\":18446744073709551615}", true},
    {"{\"n\": 0.1}", "{\"n\":0.1000000000000000055511151231257827}", true},
    {"{\"n\": 0.3}", "{\"n\":0.30000000000000004}", false},
    {"{\"n\": 123456789012345678901234567890}", "{\"n\":1.2345678901234567890123456789e29}", true},
    {"{\"n\": {\"$gt\": 1, \"$lt\": 2}}", "{\"n\":1.5}", true},
    {"{\"n\": {\"$gt\": 1, \"$lt\": 2}}", "{\"n\":2}", false},
    {"{\"n\": {\"$gte\": 2, \"$lte\": 2}}", "{\"n\":2}", true},
    {"{\"n\": {\"$lt\": 2}}", "{\"n\":\"1\"}", false},
    {"{\"n\": {\"$lt\": 2}}", "{\"n\":null}", false},
    {"{\"n\": {\"$lt\": 2}}", "{\"n\":[1]}", false},
    {"{\"n\": {\"$lt\": 2}}", "{}", false},
    {"{\"n\": -5}", "{\"n\":-5.00}", true},
    {"{\"n\": 5}", "{\"n\":\"5\"}", false},
    {"{\"n\": 2.5e-3}", "{\"n\":0.0025}", true},
    /* m * 10^e with m past 2^53 must not round twice (m, then the scaling) */
    {"{\"n\": 1173122633160.899400000000}", "{\"n\":1173122633160899524e-6}", true},
    {"{\"n\": 1173122633160.8997}", "{\"n\":1173122633160899524e-6}", false},
    /* $exists */
    {"{\"gone\": {\"$exists\": true}}", NULL, true}, /* present with null */
    {"{\"nope\": {\"$exists\": true}}", NULL, false},
    {"{\"nope\": {\"$exists\": false}}", NULL, true},
    {"{\"user\": {\"$exists\": true}}", NULL, true},
    {"{\"user.nope.deeper\": {\"$exists\": false}}", NULL, true},
    /* $ne */
    {"{\"user.name\": {\"$ne\": \"bob\"}}", NULL, true},
    {"{\"user.name\": {\"$ne\": \"ann\"}}", NULL, false},
    {"{\"nope\": {\"$ne\": 1}}", NULL, true}, /* missing: $ne matches */
    {"{\"user\": {\"$ne\": 1}}", NULL, true}, /* an object is not 1 */
    {"{\"size\": {\"$ne\": \"1500\"}}", NULL, true},
    {"{\"gone\": {\"$ne\": null}}", NULL, false},
    /* logic */
    {"{}", NULL, true},
    {"{\"$and\": []}", NULL, true},
    {"{\"$or\": []}", NULL, false},
    {"{\"$not\": {}}", NULL, false},
    {"{\"$not\": {\"$or\": []}}", NULL, true},
    {"{\"$or\": [{\"size\": 1}, {\"ok\": true}]}", NULL, true},
    {"{\"$or\": [{\"size\": 1}, {\"ok\": false}]}", NULL, false},
    {"{\"$and\": [{\"size\": 1500}, {\"ok\": true}]}", NULL, true},
    {"{\"$and\": [{\"size\": 1500}, {\"ok\": false}]}", NULL, false},
    {"{\"$not\": {\"size\": 1500}}", NULL, false},
    {"{\"$not\": {\"nope\": 1}}", NULL, true},
    {"{\"$and\": [{\"$or\": [{\"a\": 1}, {\"size\": {\"$gt\": 1000}}]}, {\"$not\": {\"$and\": "
     "[{\"ok\": true}, {\"f\": true}]}}]}",
     NULL, true},
    {"{\"$or\": [{\"$and\": []}], \"size\": 1500}", NULL, true},
    {"{\"size\": 1500, \"size\": {\"$lt\": 10}}", NULL, false}, /* duplicate filter keys AND */
    {"{\"$or\": [{}]}", NULL, true},
    /* duplicate keys in the payload: the first wins */
    {"{\"a\": 1}", "{\"a\":1,\"a\":2}", true},
    {"{\"a\": 2}", "{\"a\":1,\"a\":2}", false},
    {"{\"a\": {\"$exists\": true}}", "{\"b\":{\"a\":1}}", false},
    /* payloads that are not objects */
    {"{\"a\": 1}", "[1]", false},
    {"{\"a\": 1}", "1", false},
    {"{\"a\": {\"$exists\": false}}", "\"str\"", true},
    {"{\"a\": {\"$ne\": 1}}", "null", true},
};

Test(filter, table) {
  for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
    const row_t *r = &table[i];
    const char *p = r->payload ? r->payload : EV;
    cr_expect(rill_filter_json_valid(p, strlen(p)), "row %zu: payload %s is not valid", i, p);
    cr_expect_eq(match(r->filter, p), r->want, "row %zu: %s on %s: want %d", i, r->filter, p,
                 r->want);
  }
}

/* ---- invalid payloads ------------------------------------------------------- */

/* Each of these would match (a missing path, $ne) if it were read as JSON. */
static const char *never[] = {
    "{\"a\": {\"$exists\": false}}",
    "{\"a\": {\"$ne\": 1}}",
    "{\"$not\": {\"x\": 1}}",
    "{\"x\": {\"$exists\": true}}",
};

static void expect_invalid(const char *p, size_t len, const char *what) {
  cr_expect_not(rill_filter_json_valid(p, len), "%s: accepted: %.*s", what, (int)len, p);
  for (size_t k = 0; k < sizeof never / sizeof *never; k++) {
    rill_filter_t *f = mk(never[k]);
    cr_expect_not(rill_filter_match(f, p, len), "%s: %s matched %.*s", what, never[k], (int)len, p);
    rill_filter_destroy(f);
  }
}

Test(filter, invalid_payloads_never_match) {
  static const char *bad[] = {
      "",
      " ",
      "{",
      "}",
      "{\"x\":1,}",
      "[1,]",
      "[,1]",
      "{,}",
      "{\"x\" 1}",
      "{\"x\":}",
      "{x:1}",
      "{'x':1}",
      "{\"x\":1}}",
      "{\"x\":1} {}",
      "{\"x\":1} x",
      "{\"x\":01}",
      "{\"x\":-01}",
      "{\"x\":00}",
      "{\"x\":1.}",
      "{\"x\":.5}",
      "{\"x\":+1}",
      "{\"x\":-}",
      "{\"x\":1e}",
      "{\"x\":1e+}",
      "{\"x\":0x10}",
      "{\"x\":1.5.3}",
      "{\"x\":NaN}",
      "{\"x\":Infinity}",
      "{\"x\":-Infinity}",
      "{\"x\":tru}",
      "{\"x\":True}",
      "{\"x\":nul}",
      "{\"x\":nulll}",
      "{\"x\":\"a\\x\"}",
      "{\"x\":\"a\\u12\"}",
      "{\"x\":\"a\\u12g4\"}",
      "{\"x\":\"a\\\"}",
      "{\"x\":\"\\ud800\"}",
      "{\"x\":\"\\udc00\"}",
      "{\"x\":\"\\ud800\\u0041\"}",
      "{\"x\":\"\\ud800\\ud800\"}",
      "{\"x\":\"\\ude00\\ud83d\"}",
      "{\"x\":\"\\ud83d\"}",
      "{\"x\":\"tab\there\"}",
      "{\"x\":\"nl\nhere\"}",
      "{\"x\":\"\xff\"}",
      "{\"x\":\"\xc3\"}",
      "{\"x\":\"\xc0\xaf\"}",         /* overlong / */
      "{\"x\":\"\xe0\x80\xaf\"}",     /* overlong */
      "{\"x\":\"\xed\xa0\x80\"}",     /* encoded surrogate */
      "{\"x\":\"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
      "{\"x\":\"\xf0\x9f\x98\"}",     /* truncated emoji */
      "{\"\xff\":1}",
      "\xef\xbb\xbf{\"x\":1}", /* BOM */
      "{\"x\":[1 2]}",
      "{\"x\":{\"a\" \"b\"}}",
      "{\"x\":1 \"y\":2}",
      "[\"unterminated]",
      "{\"x\":\"abc",
      "\"\\",
      "-",
      "/* comment */ {}",
      "{\"x\":1}\x00",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    size_t len = strlen(bad[i]);
    if (i == sizeof bad / sizeof *bad - 1)
      len++; /* the trailing NUL byte */
    expect_invalid(bad[i], len, "bad payload");
  }
  /* A NUL inside a string is a raw control character. */
  expect_invalid("{\"x\":\"a\0b\"}", 11, "raw NUL in a string");
}

Test(filter, truncated_documents_never_match) {
  const char *docs[] = {
      EV,
      "{\"s\":\"\\ud83d\\ude00 \xf0\x9f\x98\x80 \\u00e9\\n\",\"n\":[-1.5e-3,true,false,null]}",
      "[{\"a\":[[]]},{}]",
  };
  for (size_t d = 0; d < sizeof docs / sizeof *docs; d++) {
    size_t n = strlen(docs[d]);
    cr_assert(rill_filter_json_valid(docs[d], n), "doc %zu", d);
    /* A copy of exactly len bytes in its own allocation, so ASan catches a
     * read past the end. */
    for (size_t len = 0; len < n; len++) {
      char *p = malloc(len ? len : 1);
      memcpy(p, docs[d], len);
      expect_invalid(p, len, "truncated");
      free(p);
    }
  }
}

Test(filter, valid_odd_payloads) {
  const char *ok[] = {
      "0",
      "-0",
      "1E5",
      "-1.5e-7",
      "\"\"",
      "[]",
      "{}",
      "[[],{}]",
      "null",
      " true ",
      "\"\\u0000\"",
      "1e999",
      "\"\\/\"",
      "[0,-0.0]",
      "\"\x7f\"",
      "{\"\":1}",
      "\"\xf4\x8f\xbf\xbf\"",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    cr_expect(rill_filter_json_valid(ok[i], strlen(ok[i])), "%s", ok[i]);
  cr_expect(match("{\"a\": 1}", "{\"\":0,\"a\":1}"), "an empty key in the payload is skipped");
}

Test(filter, never_reads_past_len) {
  /* The payload continues in memory past len; what lies beyond must not count. */
  const char *p = "{\"a\":1}garbage";
  rill_filter_t *f = mk("{\"a\": 1}");
  cr_expect(rill_filter_match(f, p, 7));
  cr_expect_not(rill_filter_match(f, p, 8));
  cr_expect_not(rill_filter_match(f, "{\"a\":12}", 6), "cut inside the number");
  rill_filter_destroy(f);
  f = mk("{\"a\": 12}");
  cr_expect_not(rill_filter_match(f, "{\"a\":12}", 7));
  rill_filter_destroy(f);
}

/* ---- malformed filters ------------------------------------------------------- */

typedef struct {
  const char *filter;
  size_t at; /* byte offset the message must name */
  const char *says;
} bad_t;

static const bad_t bad_filters[] = {
    /* malformed JSON */
    {"", 0, "expected a value"},
    {"{", 1, "expected a string key"},
    {"{\"a\":1,}", 7, "expected a string key"},
    {"{\"a\" 1}", 5, "expected ':'"},
    {"{\"a\":01}", 5, "leading zero"},
    {"{\"a\":\"\\q\"}", 6, "bad escape"},
    {"{\"a\":\"\\ud800\"}", 6, "surrogate"},
    {"{\"a\":\"\xff\"}", 6, "UTF-8"},
    {"{\"a\":1} x", 8, "trailing"},
    {"{\"a\":1}{}", 7, "trailing"},
    {"{\"a\":tru}", 5, "expected a value"},
    /* not a filter object */
    {"[]", 0, "filter object"},
    {"1", 0, "filter object"},
    {"\"a\"", 0, "filter object"},
    {"null", 0, "filter object"},
    /* unknown operators */
    {"{\"$foo\":1}", 1, "unknown operator \"$foo\""},
    {"{\"$eq\":1}", 1, "unknown operator \"$eq\""},
    {"{\"a\":{\"$in\":[1]}}", 6, "unknown operator \"$in\""},
    {"{\"a\":{\"b\":1}}", 6, "unknown operator \"b\""},
    {"{\"a\":{\"$and\":[]}}", 6, "unknown operator"},
    /* wrong operand types */
    {"{\"a\":{\"$gt\":\"x\"}}", 12, "expected a number for $gt"},
    {"{\"a\":{\"$lt\":null}}", 12, "expected a number for $lt"},
    {"{\"a\":{\"$lte\":true}}", 13, "expected a number for $lte"},
    {"{\"a\":{\"$gte\":[1]}}", 13, "expected a number for $gte"},
    {"{\"a\":{\"$exists\":1}}", 16, "true or false for $exists"},
    {"{\"a\":{\"$exists\":null}}", 16, "true or false for $exists"},
    {"{\"a\":{\"$eq\":[1]}}", 12, "not comparable"},
    {"{\"a\":{\"$ne\":{}}}", 12, "not comparable"},
    {"{\"a\":[1,2]}", 5, "not comparable"},
    {"{\"a\":{}}", 5, "empty condition"},
    {"{\"$and\":{}}", 8, "array of filter objects for $and"},
    {"{\"$or\":1}", 7, "array of filter objects for $or"},
    {"{\"$and\":[1]}", 9, "filter object"},
    {"{\"$or\":[{},[]]}", 11, "filter object"},
    {"{\"$not\":[]}", 8, "filter object for $not"},
    {"{\"$not\":true}", 8, "filter object for $not"},
    /* paths */
    {"{\"\":1}", 1, "empty path"},
    {"{\"a..b\":1}", 1, "empty key"},
    {"{\".a\":1}", 1, "empty key"},
    {"{\"a.\":1}", 1, "empty key"},
    {"{\"a.[0]\":1}", 1, "empty key"},
    {"{\"a[\":1}", 1, "bad index"},
    {"{\"a[]\":1}", 1, "bad index"},
    {"{\"a[x]\":1}", 1, "bad index"},
    {"{\"a[-1]\":1}", 1, "bad index"},
    {"{\"a[01]\":1}", 1, "leading zero"},
    {"{\"a[1\":1}", 1, "expected ']'"},
    {"{\"a[99999999999]\":1}", 1, "larger than"},
    {"{\"a[0]b\":1}", 1, "after ']'"},
    {"{\"a\\\\\":1}", 1, "lone backslash"},
    {"{\"a\\\\x\":1}", 1, "bad escape in path"},
    {"{\"b\":1,\"x\":{\"$eq\":1,\"$gt\":\"s\"}}", 26, "expected a number"},
};

Test(filter, malformed_filters) {
  for (size_t i = 0; i < sizeof bad_filters / sizeof *bad_filters; i++) {
    const bad_t *b = &bad_filters[i];
    rill_filter_t *f = (rill_filter_t *)0x1;
    rill_errmsg_clear();
    int rc = rill_filter_compile(&f, b->filter, strlen(b->filter));
    cr_expect_eq(rc, RILL_EINVAL, "%s: got %d", b->filter, rc);
    cr_expect_null(f, "%s: out must be NULL on failure", b->filter);
    char at[32];
    snprintf(at, sizeof at, "byte %zu:", b->at);
    cr_expect(strstr(rill_errmsg(), at) != NULL, "%s: message \"%s\" does not name %s", b->filter,
              rill_errmsg(), at);
    cr_expect(strstr(rill_errmsg(), b->says) != NULL, "%s: message \"%s\" does not say \"%s\"",
              b->filter, rill_errmsg(), b->says);
    if (rc == 0)
      rill_filter_destroy(f);
  }
}

Test(filter, bad_arguments) {
  rill_filter_t *f = NULL;
  cr_expect_eq(rill_filter_compile(NULL, "{}", 2), RILL_EINVAL);
  cr_expect_eq(rill_filter_compile(&f, NULL, 2), RILL_EINVAL);
  cr_expect_null(f);
  cr_expect_eq(rill_filter_compile(&f, NULL, 0), RILL_EINVAL);
  cr_expect_eq(rill_filter_compile(&f, "{}", RILL_FILTER_MAX_LEN + 1), RILL_EINVAL);
  cr_expect_not(rill_filter_match(NULL, "{}", 2));
  rill_filter_destroy(NULL);
  f = mk("{\"a\":1}");
  cr_expect_not(rill_filter_match(f, NULL, 0));
  cr_expect_not(rill_filter_match(f, NULL, 10));
  rill_filter_destroy(f);
  f = mk("{}");
  cr_expect(rill_filter_match(f, NULL, 0), "{} matches anything, even no payload");
  cr_expect(rill_filter_match(f, "not json", 8));
  rill_filter_destroy(f);
  /* Not NUL-terminated: the filter text is taken by length. */
  cr_expect_eq(rill_filter_compile(&f, "{\"a\":1}xyz", 7), 0, "%s", rill_errmsg());
  rill_filter_destroy(f);
}

Test(filter, stats_share_paths) {
  rill_filter_t *f = mk("{\"a\": {\"$gt\": 1, \"$lt\": 5}, \"$or\": [{\"a\": 3}, {\"b.c\": 1}], "
                        "\"b.c\": {\"$exists\": true}}");
  cr_expect_eq(rill_filter_paths(f), 2);
  cr_expect_eq(rill_filter_conds(f), 5);
  rill_filter_destroy(f);
  f = mk("{}");
  cr_expect_eq(rill_filter_paths(f), 0);
  cr_expect_eq(rill_filter_conds(f), 0);
  rill_filter_destroy(f);
  cr_expect_eq(rill_filter_paths(NULL), 0);
}

Test(filter, compile_is_one_allocation) {
  uint64_t before = rill_mem_allocs_thread();
  rill_filter_t *f = mk("{\"a.b[2]\": \"x\", \"c\": {\"$gte\": 10}, \"$or\": [{\"d\": true}]}");
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rill_filter_destroy(f);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.frees - c0.frees, 1, "the compiled filter is one block");
  cr_expect_gt(rill_mem_allocs_thread(), before);
}

/* ---- nesting limits ----------------------------------------------------------- */

static char *nest(int depth, const char *open, const char *inner, const char *close) {
  size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
  char *s = malloc((size_t)depth * (lo + lc) + li + 1), *p = s;
  for (int i = 0; i < depth; i++, p += lo)
    memcpy(p, open, lo);
  memcpy(p, inner, li);
  p += li;
  for (int i = 0; i < depth; i++, p += lc)
    memcpy(p, close, lc);
  *p = '\0';
  return s;
}

Test(filter, payload_depth_limit) {
  rill_filter_t *f = mk("{\"a\": {\"$exists\": false}}");
  for (int d = RILL_FILTER_MAX_DEPTH - 1; d <= RILL_FILTER_MAX_DEPTH + 2; d++) {
    char *arr = nest(d, "[", "1", "]");
    bool ok = d <= RILL_FILTER_MAX_DEPTH;
    cr_expect_eq(rill_filter_json_valid(arr, strlen(arr)), ok, "arrays %d deep", d);
    cr_expect_eq(rill_filter_match(f, arr, strlen(arr)), ok, "arrays %d deep", d);
    free(arr);
    char *obj = nest(d, "{\"a\":", "1", "}");
    cr_expect_eq(rill_filter_json_valid(obj, strlen(obj)), ok, "objects %d deep", d);
    free(obj);
  }
  /* A deep path into a document at the limit. */
  char *obj = nest(RILL_FILTER_MAX_DEPTH, "{\"a\":", "7", "}");
  char path[2 * RILL_FILTER_MAX_DEPTH + 16];
  size_t n = 0;
  for (int i = 0; i < RILL_FILTER_MAX_DEPTH; i++)
    n += (size_t)sprintf(path + n, i ? ".a" : "a");
  char filt[sizeof path + 16];
  snprintf(filt, sizeof filt, "{\"%s\": 7}", path);
  cr_expect(match(filt, obj));
  free(obj);
  /* Far beyond: no stack overflow, just no match. */
  char *deep = nest(100000, "[", "", "]");
  cr_expect_not(rill_filter_json_valid(deep, strlen(deep)));
  cr_expect_not(rill_filter_match(f, deep, strlen(deep)));
  free(deep);
  rill_filter_destroy(f);
}

Test(filter, filter_depth_limit) {
  /* {"$not": ... {} ...}: each $not adds one object level. */
  for (int d = RILL_FILTER_MAX_DEPTH - 2; d <= RILL_FILTER_MAX_DEPTH + 1; d++) {
    char *s = nest(d - 1, "{\"$not\":", "{}", "}"); /* d objects */
    rill_filter_t *f = NULL;
    int rc = rill_filter_compile(&f, s, strlen(s));
    if (d <= RILL_FILTER_MAX_DEPTH) {
      cr_expect_eq(rc, 0, "%d deep: %s", d, rill_errmsg());
      cr_expect_eq(rill_filter_match(f, "{}", 2), (d - 1) % 2 == 0, "%d deep", d);
      rill_filter_destroy(f);
    } else {
      cr_expect_eq(rc, RILL_EINVAL, "%d deep", d);
      cr_expect(strstr(rill_errmsg(), "nesting deeper than 128") != NULL, "%s", rill_errmsg());
      cr_expect(strstr(rill_errmsg(), "byte ") != NULL, "%s", rill_errmsg());
    }
    free(s);
  }
  char *s = nest(200000, "{\"$and\":[", "{}", "]}");
  rill_filter_t *f = NULL;
  cr_expect_eq(rill_filter_compile(&f, s, strlen(s)), RILL_EINVAL);
  free(s);
}

/* ---- zero allocations ------------------------------------------------------------ */

Test(filter, match_allocates_nothing) {
  rill_filter_t *f = mk("{\"user.role\": \"admin\", \"size\": {\"$gt\": 1000, \"$lt\": 1e400}, "
                        "\"$or\": [{\"items[1].id\": 2}, {\"nope\": {\"$exists\": true}}], "
                        "\"n\": {\"$ne\": 123456789012345678901234567890.5e-3}}");
  const char *p = "{\"user\":{\"role\":\"adm\\u0069n\"},\"size\":1500.25e0,\"items\":[{\"id\":1},"
                  "{\"id\":2.0}],\"n\":0.1000000000000000055511151231257827}";
  size_t len = strlen(p);
  cr_assert(rill_filter_match(f, p, len));
  uint64_t before = rill_mem_allocs_thread();
  size_t hits = 0;
  for (int i = 0; i < 1000000; i++)
    hits += rill_filter_match(f, p, len);
  uint64_t allocs = rill_mem_allocs_thread() - before;
  cr_expect_eq(hits, 1000000);
  cr_expect_eq(allocs, 0, "%llu allocations in 1,000,000 matches", (unsigned long long)allocs);
  rill_filter_destroy(f);
}

/* ---- differential: random documents against a naive tree ------------------------ */

/* A tiny JSON tree built by the test, serialised with random whitespace and
 * random escaping; a naive lookup on the tree is the reference. */
enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jnode {
  int type;
  int num; /* J_NUM: index in nums[]; J_STR: index in strs[] */
  int n;
  int key[4]; /* J_OBJ: index in strs[] */
  struct jnode *kid[4];
} jnode;

static const struct {
  const char *text;
  double v;
} nums[] = {{"0", 0},
            {"-0", -0.0},
            {"1", 1},
            {"1.0", 1},
            {"1e0", 1},
            {"2", 2},
            {"-1.5", -1.5},
            {"-15e-1", -1.5},
            {"1e400", 1e300 * 1e300},
            {"-1E999", -1e300 * 1e300},
            {"9007199254740993", 9007199254740992.0},
            {"0.5", 0.5},
            {"5E-1", 0.5},
            {"123456789012345678901234567890", 1.2345678901234568e29}};

/* Decoded UTF-8; strs[0..3] double as keys. */
static const char *strs[] = {"a", "b", "\xc3\xa9", "x.y", "", "\xf0\x9f\x98\x80", "a\"\\", "B"};

typedef struct rng {
  uint64_t s;
} rng;

static uint32_t rnd(rng *r, uint32_t n) {
  r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)((r->s >> 33) % n);
}

static jnode *gen(rng *r, jnode *pool, int *used, int depth) {
  jnode *j = &pool[(*used)++];
  memset(j, 0, sizeof *j);
  int t = depth >= 3 ? (int)rnd(r, 5) : (int)rnd(r, 7);
  j->type = t;
  if (t == J_NUM)
    j->num = (int)rnd(r, sizeof nums / sizeof *nums);
  if (t == J_STR)
    j->num = (int)rnd(r, sizeof strs / sizeof *strs);
  if (t == J_ARR || t == J_OBJ) {
    j->n = (int)rnd(r, 5);
    for (int i = 0; i < j->n; i++) {
      j->key[i] = (int)rnd(r, 4);
      j->kid[i] = gen(r, pool, used, depth + 1);
    }
  }
  return j;
}

typedef struct sbuf {
  char b[8192];
  size_t n;
} sbuf;

static void put(sbuf *s, const char *t) {
  size_t l = strlen(t);
  cr_assert(s->n + l < sizeof s->b);
  memcpy(s->b + s->n, t, l);
  s->n += l;
}

static void ws(rng *r, sbuf *s) {
  static const char *w[] = {"", "", "", " ", "\n", "\t ", "\r\n"};
  put(s, w[rnd(r, 7)]);
}

/* Serialises decoded UTF-8 as a JSON string, escaping at random. */
static void put_str(rng *r, sbuf *s, const char *t) {
  put(s, "\"");
  for (const unsigned char *p = (const unsigned char *)t; *p;) {
    char e[16];
    if (*p == '"' || *p == '\\') {
      snprintf(e, sizeof e, rnd(r, 2) ? "\\%c" : "\\u%04x", *p);
      p++;
    } else if (*p < 0x80) {
      if (rnd(r, 4) == 0)
        snprintf(e, sizeof e, rnd(r, 2) ? "\\u%04x" : "\\u%04X", *p);
      else
        snprintf(e, sizeof e, "%c", *p);
      p++;
    } else if ((*p & 0xe0) == 0xc0) {
      unsigned cp = (unsigned)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
      if (rnd(r, 2))
        snprintf(e, sizeof e, "\\u%04x", cp);
      else
        snprintf(e, sizeof e, "%c%c", p[0], p[1]);
      p += 2;
    } else { /* four bytes */
      unsigned cp = (unsigned)(p[0] & 0x07) << 18 | (unsigned)(p[1] & 0x3f) << 12 |
                    (unsigned)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
      if (rnd(r, 2))
        snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                 0xdc00 + ((cp - 0x10000) & 0x3ff));
      else
        snprintf(e, sizeof e, "%c%c%c%c", p[0], p[1], p[2], p[3]);
      p += 4;
    }
    put(s, e);
  }
  put(s, "\"");
}

static void ser(rng *r, sbuf *s, const jnode *j) {
  ws(r, s);
  switch (j->type) {
  case J_NULL: put(s, "null"); break;
  case J_FALSE: put(s, "false"); break;
  case J_TRUE: put(s, "true"); break;
  case J_NUM: put(s, nums[j->num].text); break;
  case J_STR: put_str(r, s, strs[j->num]); break;
  default:
    put(s, j->type == J_ARR ? "[" : "{");
    for (int i = 0; i < j->n; i++) {
      if (i)
        put(s, ",");
      if (j->type == J_OBJ) {
        ws(r, s);
        put_str(r, s, strs[j->key[i]]);
        ws(r, s);
        put(s, ":");
      }
      ser(r, s, j->kid[i]);
    }
    ws(r, s);
    put(s, j->type == J_ARR ? "]" : "}");
  }
  ws(r, s);
}

typedef struct seg {
  int key; /* index in strs[], or -1 */
  int idx;
} seg;

static const jnode *ref_find(const jnode *j, const seg *p, int n) {
  for (int i = 0; i < n && j; i++) {
    const jnode *next = NULL;
    if (p[i].key >= 0 && j->type == J_OBJ) {
      for (int k = 0; k < j->n && !next; k++)
        if (j->key[k] == p[i].key)
          next = j->kid[k]; /* the first of duplicate keys */
    } else if (p[i].key < 0 && j->type == J_ARR && p[i].idx < j->n) {
      next = j->kid[p[i].idx];
    }
    j = next;
  }
  return j;
}

typedef struct cond {
  seg path[3];
  int npath;
  int op;  /* 0 $eq 1 $ne 2 $lt 3 $lte 4 $gt 5 $gte 6 $exists */
  jnode c; /* a scalar; $exists: J_TRUE or J_FALSE */
} cond;

static bool ref_eq(const jnode *v, const jnode *c) {
  if (!v || v->type != c->type)
    return false;
  if (v->type == J_NUM)
    return nums[v->num].v == nums[c->num].v;
  if (v->type == J_STR)
    return strcmp(strs[v->num], strs[c->num]) == 0;
  return v->type != J_ARR && v->type != J_OBJ;
}

static bool ref_cond(const jnode *doc, const cond *c) {
  const jnode *v = ref_find(doc, c->path, c->npath);
  switch (c->op) {
  case 0: return ref_eq(v, &c->c);
  case 1: return !ref_eq(v, &c->c);
  case 6: return (v != NULL) == (c->c.type == J_TRUE);
  default: break;
  }
  if (!v || v->type != J_NUM)
    return false;
  double a = nums[v->num].v, b = nums[c->c.num].v;
  return c->op == 2 ? a < b : c->op == 3 ? a <= b : c->op == 4 ? a > b : a >= b;
}

static void gen_cond(rng *r, cond *c) {
  memset(c, 0, sizeof *c);
  c->npath = 1 + (int)rnd(r, 3);
  for (int i = 0; i < c->npath; i++) {
    c->path[i].key = (i > 0 || rnd(r, 4)) && rnd(r, 3) ? (int)rnd(r, 4) : -1;
    c->path[i].idx = (int)rnd(r, 3);
  }
  c->op = (int)rnd(r, 7);
  if (c->op == 6)
    c->c.type = rnd(r, 2) ? J_TRUE : J_FALSE;
  else if (c->op >= 2 || rnd(r, 2))
    c->c = (jnode){.type = J_NUM, .num = (int)rnd(r, sizeof nums / sizeof *nums)};
  else
    c->c = (jnode){.type = (int)rnd(r, 5), .num = (int)rnd(r, sizeof strs / sizeof *strs)};
}

static void ser_cond(rng *r, sbuf *s, const cond *c) {
  static const char *ops[] = {"$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$exists"};
  put(s, "{\"");
  for (int i = 0; i < c->npath; i++) {
    char t[32];
    if (c->path[i].key < 0) {
      snprintf(t, sizeof t, "[%d]", c->path[i].idx);
      put(s, t);
      continue;
    }
    if (i)
      put(s, ".");
    const char *k = strs[c->path[i].key];
    for (; *k; k++) {
      if (*k == '.')
        put(s, "\\\\"); /* a path escape, itself escaped for JSON */
      snprintf(t, sizeof t, "%c", *k);
      put(s, t);
    }
  }
  put(s, "\": ");
  bool bare = c->op == 0 && rnd(r, 2);
  if (!bare) {
    put(s, "{\"");
    put(s, ops[c->op]);
    put(s, "\": ");
  }
  ser(r, s, &c->c);
  put(s, bare ? "}" : "}}");
}

Test(filter, differential_against_a_tree) {
  rng r = {0x5eed};
  jnode pool[512];
  size_t matched = 0, checked = 0;
  for (int iter = 0; iter < 20000; iter++) {
    int used = 0;
    jnode *doc = gen(&r, pool, &used, (int)rnd(&r, 2)); /* mostly containers at the top */
    if (iter % 3)
      doc->type = J_OBJ, doc->n = doc->n ? doc->n : 1;
    if (doc->type == J_OBJ || doc->type == J_ARR)
      for (int i = 0; i < doc->n; i++)
        if (!doc->kid[i])
          doc->kid[i] = gen(&r, pool, &used, 1);
    sbuf d = {.n = 0};
    ser(&r, &d, doc);
    cr_assert(rill_filter_json_valid(d.b, d.n), "generated %.*s", (int)d.n, d.b);

    cond a, b;
    gen_cond(&r, &a);
    gen_cond(&r, &b);
    int mode = (int)rnd(&r, 4);
    sbuf fs = {.n = 0}, sa = {.n = 0}, sb = {.n = 0};
    ser_cond(&r, &sa, &a);
    ser_cond(&r, &sb, &b);
    sa.b[sa.n] = sb.b[sb.n] = '\0';
    bool want;
    switch (mode) {
    case 0: /* one condition */
      put(&fs, sa.b);
      want = ref_cond(doc, &a);
      break;
    case 1:
      put(&fs, "{\"$and\": [");
      put(&fs, sa.b);
      put(&fs, ",");
      put(&fs, sb.b);
      put(&fs, "]}");
      want = ref_cond(doc, &a) && ref_cond(doc, &b);
      break;
    case 2:
      put(&fs, "{\"$or\": [");
      put(&fs, sa.b);
      put(&fs, ",");
      put(&fs, sb.b);
      put(&fs, "]}");
      want = ref_cond(doc, &a) || ref_cond(doc, &b);
      break;
    default:
      put(&fs, "{\"$not\": ");
      put(&fs, sa.b);
      put(&fs, "}");
      want = !ref_cond(doc, &a);
      break;
    }
    rill_filter_t *f = NULL;
    int rc = rill_filter_compile(&f, fs.b, fs.n);
    cr_assert_eq(rc, 0, "compile %.*s: %s", (int)fs.n, fs.b, rill_errmsg());
    bool got = rill_filter_match(f, d.b, d.n);
    cr_assert_eq(got, want, "filter %.*s on %.*s: got %d, reference says %d", (int)fs.n, fs.b,
                 (int)d.n, d.b, got, want);
    matched += got;
    checked++;
    /* Broken by one byte, the document never matches unless it is still JSON. */
    if (d.n > 1) {
      size_t at = rnd(&r, (uint32_t)d.n);
      char old = d.b[at];
      d.b[at] = "{}[],:\"\\x0"[rnd(&r, 10)];
      if (!rill_filter_json_valid(d.b, d.n))
        cr_assert_not(rill_filter_match(f, d.b, d.n), "mutated %.*s matched %.*s", (int)d.n, d.b,
                      (int)fs.n, fs.b);
      d.b[at] = old;
    }
    rill_filter_destroy(f);
  }
  /* Both outcomes must be common, or the comparison proves little. */
  cr_expect_gt(matched, checked / 10, "%zu of %zu matched", matched, checked);
  cr_expect_lt(matched, checked * 9 / 10, "%zu of %zu matched", matched, checked);
}

Test(filter, many_paths_beyond_the_cache) {
  /* Paths past the first 64 are found by a scan of their own, not the
   * validating pass: both must agree. */
  char filt[8192], doc[8192];
  size_t fn = 0, dn = 0;
  fn += (size_t)snprintf(filt + fn, sizeof filt - fn, "{");
  dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "{\"o\":{");
  for (int i = 0; i < 100; i++) {
    fn += (size_t)snprintf(filt + fn, sizeof filt - fn, "%s\"o.k%d[%d]\": %d", i ? ", " : "", i,
                           i % 2, i);
    dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "%s\"k%d\":[%d,%d]", i ? "," : "", i,
                           i % 2 ? -1 : i, i % 2 ? i : -1);
  }
  snprintf(filt + fn, sizeof filt - fn, "}");
  snprintf(doc + dn, sizeof doc - dn, ",\"k5\":[0,0]}}");
  rill_filter_t *f = mk(filt);
  cr_expect_eq(rill_filter_paths(f), 100);
  cr_expect(rill_filter_match(f, doc, strlen(doc)), "%s on %s", filt, doc);
  rill_filter_destroy(f);
  /* One wrong value at the end (path 99, uncached) fails the match. */
  char *at = strstr(doc, "\"k99\":[-1,99]");
  cr_assert_not_null(at);
  at[11] = '8';
  f = mk(filt);
  cr_expect_not(rill_filter_match(f, doc, strlen(doc)));
  at[11] = '9';
  at = strstr(doc, "\"k3\":[-1,3]");
  at[9] = '4'; /* path 3, cached */
  cr_expect_not(rill_filter_match(f, doc, strlen(doc)));
  rill_filter_destroy(f);
}
