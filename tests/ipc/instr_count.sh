#!/usr/bin/env bash
# Instruction counts of the ipc hot paths, for refactors that must not
# cost speed on a machine too busy to time: 1,000,000 messages of 64 bytes
# through a route and a channel (broadcast, queue; send/recv and
# reserve/commit; routebatch, bcastbatch: send_batch/recv_batch of BATCH),
# one thread,
# under callgrind; prints each case's total
# Ir. Compare two trees' counts (each built with
# -DCMAKE_BUILD_TYPE=Release); they move by a few thousand between runs
# (the queue's clock-paced reaping), so a change under 0.1% is noise.
# Not run by ctest (it takes minutes under valgrind).
# Usage: tests/ipc/instr_count.sh BUILD_DIR [CASE...]
set -euo pipefail
build=$(cd "$1" && pwd)
shift
src=$(cd "$(dirname "$0")/../.." && pwd)
cases=${*:-bcast queue bcastzc queuezc route routezc routebatch bcastbatch}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/count.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/ipc.h"

#define N     1000000u
#define BATCH 32u /* sent, then received: no waiting, no parking */

static void check(const char *what, int rc) {
  if (rc) {
    fprintf(stderr, "%s: %s (%s)\n", what, rill_strerror(rc), rill_errmsg());
    exit(1);
  }
}

/* The two kinds behind one set of calls: the indirect calls cost the
 * same in both trees compared, so they cancel out. */
typedef struct kind {
  int (*send)(void *h, const void *data, uint32_t len);
  int (*reserve)(void *h, uint32_t len, void **buf);
  int (*commit)(void *h, uint32_t len);
  int (*recv)(void *h, rill_ipc_msg_t *m);
  int (*send_batch)(void *h, const rill_iov_t *v, uint32_t n);
  int (*recv_batch)(void *h, rill_ipc_msg_t *m, uint32_t max, uint32_t *got);
} kind_t;

static int c_send(void *h, const void *d, uint32_t n) { return rill_ipc_chan_send(h, d, n, 0); }
static int c_reserve(void *h, uint32_t n, void **b) { return rill_ipc_chan_reserve(h, n, 0, b); }
static int c_commit(void *h, uint32_t n) { return rill_ipc_chan_commit(h, n); }
static int c_recv(void *h, rill_ipc_msg_t *m) { return rill_ipc_chan_recv(h, m, 0, NULL); }
static int r_send(void *h, const void *d, uint32_t n) { return rill_ipc_route_send(h, d, n, 0); }
static int r_reserve(void *h, uint32_t n, void **b) { return rill_ipc_route_reserve(h, n, 0, b); }
static int r_commit(void *h, uint32_t n) { return rill_ipc_route_commit(h, n); }
static int r_recv(void *h, rill_ipc_msg_t *m) { return rill_ipc_route_recv(h, m, 0, NULL); }

static int c_send_batch(void *h, const rill_iov_t *v, uint32_t n) {
  return rill_ipc_chan_send_batch(h, v, n, 0, NULL);
}
static int c_recv_batch(void *h, rill_ipc_msg_t *m, uint32_t max, uint32_t *got) {
  return rill_ipc_chan_recv_batch(h, m, max, got, 0, NULL);
}
static int r_send_batch(void *h, const rill_iov_t *v, uint32_t n) {
  return rill_ipc_route_send_batch(h, v, n, 0, NULL);
}
static int r_recv_batch(void *h, rill_ipc_msg_t *m, uint32_t max, uint32_t *got) {
  return rill_ipc_route_recv_batch(h, m, max, got, 0, NULL);
}

static const kind_t chan_kind = {c_send, c_reserve, c_commit, c_recv, c_send_batch, c_recv_batch};
static const kind_t route_kind = {r_send, r_reserve, r_commit, r_recv, r_send_batch, r_recv_batch};

/* in_place 2: the batch calls, BATCH messages a send_batch and a
 * recv_batch. */
static unsigned long run(const kind_t *k, void *s, void *r, int in_place) {
  unsigned char msg[64];
  memset(msg, 7, sizeof msg);
  unsigned long sum = 0;
  if (in_place == 2) {
    rill_iov_t v[BATCH];
    for (unsigned j = 0; j < BATCH; j++)
      v[j] = (rill_iov_t){msg, 64};
    for (unsigned i = 0; i < N; i += BATCH) {
      rill_ipc_msg_t m[BATCH];
      uint32_t got = 0;
      check("send_batch", k->send_batch(s, v, BATCH));
      check("recv_batch", k->recv_batch(r, m, BATCH, &got));
      for (unsigned j = 0; j < got; j++)
        sum += m[j].data[j & 63] + m[j].len;
    }
    return sum;
  }
  for (unsigned i = 0; i < N; i += BATCH) {
    for (unsigned j = 0; j < BATCH; j++) {
      if (in_place) {
        void *b;
        check("reserve", k->reserve(s, 64, &b));
        memcpy(b, msg, 64);
        check("commit", k->commit(s, 64));
      } else {
        check("send", k->send(s, msg, 64));
      }
    }
    for (unsigned j = 0; j < BATCH; j++) {
      rill_ipc_msg_t m;
      check("recv", k->recv(r, &m));
      sum += m.data[j & 63] + m.len;
    }
  }
  return sum;
}

static unsigned long chan(const char *name, rill_ipc_delivery_t d, int in_place) {
  rill_ipc_chan_opts_t o = {.slots = 1024, .delivery = d};
  rill_ipc_chan_t *s, *r;
  check("open", rill_ipc_chan_open(&s, name, &o, RILL_IPC_SENDER));
  check("open", rill_ipc_chan_open(&r, name, &o, RILL_IPC_RECEIVER));
  unsigned long sum = run(&chan_kind, s, r, in_place);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
  rill_ipc_chan_unlink(name);
  return sum;
}

static unsigned long route(const char *name, int in_place) {
  rill_ipc_route_opts_t o = {.slots = 1024};
  rill_ipc_route_t *s, *r;
  check("open", rill_ipc_route_open(&s, name, &o, RILL_IPC_SENDER));
  check("open", rill_ipc_route_open(&r, name, NULL, RILL_IPC_RECEIVER));
  unsigned long sum = run(&route_kind, s, r, in_place);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
  rill_ipc_route_unlink(name);
  return sum;
}

int main(int argc, char **argv) {
  const char *w = argc > 1 ? argv[1] : "";
  char name[64];
  snprintf(name, sizeof name, "instr-count-%d-%s", (int)getpid(), w);
  unsigned long sum;
  if (!strcmp(w, "bcast"))
    sum = chan(name, RILL_IPC_BROADCAST, 0);
  else if (!strcmp(w, "queue"))
    sum = chan(name, RILL_IPC_QUEUE, 0);
  else if (!strcmp(w, "bcastzc"))
    sum = chan(name, RILL_IPC_BROADCAST, 1);
  else if (!strcmp(w, "queuezc"))
    sum = chan(name, RILL_IPC_QUEUE, 1);
  else if (!strcmp(w, "route"))
    sum = route(name, 0);
  else if (!strcmp(w, "routezc"))
    sum = route(name, 1);
  else if (!strcmp(w, "routebatch"))
    sum = route(name, 2);
  else if (!strcmp(w, "bcastbatch"))
    sum = chan(name, RILL_IPC_BROADCAST, 2);
  else
    return 2;
  return sum == 71ul * N ? 0 : 1;
}
EOF
cc -O2 -std=gnu17 -I"$src/include" "$tmp/count.c" "$build/librill.a" -lxxhash -lpthread -lm \
  -o "$tmp/count"
for c in $cases; do
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$tmp/count" "$c" 2>"$tmp/err" ||
    { cat "$tmp/err" >&2; exit 1; }
  printf '%-8s %s\n' "$c" "$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err")"
done
