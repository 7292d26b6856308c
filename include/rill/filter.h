/*
 * rill filter: JSON predicates compiled once and matched on raw bytes.
 *
 * A filter is a small JSON predicate language (docs/FILTERS.md), for
 * example {"user.role": "admin", "size": {"$gte": 100}, "$or": [...]}.
 * It is compiled once into flat arrays (paths split into decoded keys and
 * indexes, constants parsed) and matched against raw JSON payloads without
 * building a tree and without allocating: one validating pass over the
 * payload that also finds where each path's value starts.
 *
 * A payload that is not valid JSON (RFC 8259, strings valid UTF-8, nesting
 * at most RILL_FILTER_MAX_DEPTH) never matches a filter that tests a path.
 *
 * A compiled filter is immutable: any number of threads may match against
 * it at once. Compile and destroy are not thread-safe for the same filter.
 */
#ifndef RILL_FILTER_H
#define RILL_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rill_filter rill_filter_t;

/* Deepest nesting of arrays and objects accepted, in a filter (deeper is
 * RILL_EINVAL) and in a payload (deeper does not match). */
#define RILL_FILTER_MAX_DEPTH 128

/* Longest filter text rill_filter_compile() accepts. */
#define RILL_FILTER_MAX_LEN ((size_t)1 << 30)

/** Compiles the len bytes at json (need not be NUL-terminated) into *out.
 *  RILL_EINVAL for a filter that is malformed JSON, uses an unknown
 *  operator, gives an operator the wrong operand type, has an empty path or
 *  key, a bad array index, nesting deeper than RILL_FILTER_MAX_DEPTH, or
 *  trailing bytes; rill_errmsg() names the byte offset and what was
 *  expected there. RILL_ENOMEM. *out is NULL on failure. */
int rill_filter_compile(rill_filter_t **out, const char *json, size_t len);

/** True when the len bytes at payload satisfy the filter. Allocates
 *  nothing, reads nothing outside [payload, payload + len). A NULL filter
 *  matches nothing; an invalid payload matches only filters without path
 *  conditions (such as {}). */
bool rill_filter_match(const rill_filter_t *f, const void *payload, size_t len);

/** Frees a compiled filter. NULL is ignored. */
void rill_filter_destroy(rill_filter_t *f);

/** Distinct paths the filter tests (0 for a filter such as {}). */
size_t rill_filter_paths(const rill_filter_t *f);

/** Conditions (leaf tests) in the filter. */
size_t rill_filter_conds(const rill_filter_t *f);

/** True when the len bytes at p are one JSON value by the rules a payload
 *  is held to (RFC 8259, UTF-8 strings without lone surrogates, nesting at
 *  most RILL_FILTER_MAX_DEPTH). Allocates nothing. */
bool rill_filter_json_valid(const void *p, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* RILL_FILTER_H */
