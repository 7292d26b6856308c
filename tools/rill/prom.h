/*
 * The Prometheus text parser of rill stat (prom.c). Private to the rill
 * command and its fuzz target.
 */
#ifndef RILL_TOOL_PROM_H
#define RILL_TOOL_PROM_H

#include <stddef.h>

typedef struct rill_prom_sample {
  char *name;   /* as written: rill_ask_seconds_bucket */
  char *topic;  /* the topic label's value, or NULL */
  char *labels; /* the other labels but le, "k=v," each: what groups a histogram's series */
  double le;    /* a bucket's bound (INFINITY for +Inf); NAN when there is no le */
  double v;
} rill_prom_sample_t;

typedef struct rill_prom_samples {
  rill_prom_sample_t *s;
  size_t n, cap;
} rill_prom_samples_t;

/** Appends the samples of text (len bytes, no NUL needed) to ss; a line
 *  that is neither a comment nor a sample is RILL_EPROTO, said on stderr
 *  naming src and the line (ss then holds the lines before it). Exits on
 *  no memory, as the rill command does. */
int rill_prom_parse(const char *text, size_t len, rill_prom_samples_t *ss, const char *src);

/** Frees what ss holds and empties it. */
void rill_prom_free(rill_prom_samples_t *ss);

#endif
