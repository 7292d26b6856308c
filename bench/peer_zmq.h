/*
 * ZeroMQ's far end in a process of its own, as its perf tools run it
 * (local_thr/remote_thr, local_lat/remote_lat): the forked process makes a
 * context of its own with the default settings (one I/O thread, high-water
 * marks of 1000) and one socket over tcp://127.0.0.1; the bench's process
 * holds the near end in its own context. Internal to `rill bench net`.
 *
 * One far end at a time: a process forked while another is alive would
 * hold that one's order pipe open, and it would not see its EOF.
 */
#ifndef RILL_BENCH_PEER_ZMQ_H
#define RILL_BENCH_PEER_ZMQ_H

#include <stddef.h>
#include <stdint.h>

#include "fork_harness.h"

typedef struct bench_zmq_far {
  bench_kid_t kid;
  char ep[128]; /* an echo's bound endpoint */
} bench_zmq_far_t;

/** Forks a PUSH connected to ep (a PULL the caller has bound), which sends
 *  messages of size bytes when told to with bench_zmq_far_send: each a
 *  zmq_msg_t of that size with the payload copied in, as remote_thr sends
 *  (plus the copy a user's data needs). Dies when the fork fails or the
 *  far end cannot connect. */
void bench_zmq_far_push(bench_zmq_far_t *f, const char *ep, size_t size);

/** Tells the PUSH to send n messages; returns at once. */
void bench_zmq_far_send(bench_zmq_far_t *f, uint64_t n);

/** Waits until the PUSH says it has sent them (dies if it failed). */
void bench_zmq_far_sent(bench_zmq_far_t *f);

/** Forks a socket of type (ZMQ_ROUTER or ZMQ_REP) bound on a free port
 *  of 127.0.0.1, f->ep, that sends every message it receives back as it
 *  came (frame by frame, a ROUTER's routing frame first), zero-copy with
 *  zmq_msg_t, until bench_zmq_far_end. */
void bench_zmq_far_echo(bench_zmq_far_t *f, int type);

/** Ends the far end and waits for it; dies if it failed. */
void bench_zmq_far_end(bench_zmq_far_t *f);

#endif
