/*
 * Durability end to end: a server in a child process takes acknowledged
 * publishes under group commit while another child kills it with SIGKILL
 * at a random moment; a new server on the same data must hold every
 * acknowledged message, in order, exactly once per sequence, and go on
 * from there. 30 rounds, each on the data the earlier ones left.
 *
 * Also: a client that floods requests and never reads its answers is held
 * back by TCP, not by the server's memory, and a second client is served
 * meanwhile.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill/net.h"
#include "stress.h"

static char dir[64];
static rill_server_t *child_srv;

static void on_term(int sig) {
  (void)sig;
  rill_server_stop(child_srv);
}

/* A server child; its port comes back through a pipe. */
static pid_t serve(uint16_t *port) {
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    close(p[0]);
    rill_server_t *s;
    if (rill_server_create(&s, &(rill_server_opts_t){.data_dir = dir,
                                                     .any_port = true,
                                                     .sync = RILL_SERVER_SYNC_GROUP}) != 0)
      _exit(1);
    child_srv = s;
    signal(SIGTERM, on_term);
    uint16_t pt = rill_server_port(s);
    if (write(p[1], &pt, sizeof pt) != sizeof pt)
      _exit(1);
    close(p[1]);
    _exit(rill_server_run(s) == 0 ? 0 : 1);
  }
  close(p[1]);
  CHECK(read(p[0], port, sizeof *port) == sizeof *port, "the server did not start");
  close(p[0]);
  return pid;
}

static rill_client_t *connect_to(uint16_t port) {
  rill_client_t *c;
  CHECK(rill_client_connect(&c, &(rill_client_opts_t){.port = port, .name = "kill"}) == 0,
        "connect: %s", rill_errmsg());
  return c;
}

static uint64_t values[1 << 16]; /* what each acknowledged sequence holds */

static void killed_during_acknowledged_publishing(void) {
  uint64_t acked = 0, value = 1;
  srand((unsigned)time(NULL));
  for (int round = 0; round < 30; round++) {
    uint16_t port;
    pid_t srv = serve(&port);
    rill_client_t *c = connect_to(port);
    /* What the last rounds acknowledged is all there, in order. */
    uint16_t sub;
    uint64_t start;
    CHECK(rill_client_subscribe_ex(c, "k", RILL_NET_FROM_EARLIEST, 1 << 16, RILL_CLIENT_SUB_CREATE,
                                   &sub, &start) == 0,
          "subscribe: %s", rill_errmsg());
    CHECK(start == 0, "the topic starts at %llu", (unsigned long long)start);
    for (uint64_t s = 0; s < acked; s++) {
      rill_client_msg_t m;
      CHECK(rill_client_next(c, &m, 5000000000ull) == 0, "round %d: record %llu missing: %s", round,
            (unsigned long long)s, rill_errmsg());
      CHECK(m.seq == s, "round %d: seq %llu where %llu was due", round, (unsigned long long)m.seq,
            (unsigned long long)s);
      uint64_t v;
      CHECK(m.len == 8, "record %llu: %u bytes", (unsigned long long)s, m.len);
      memcpy(&v, m.data, 8);
      CHECK(v == values[s], "record %llu holds %llu, acknowledged %llu", (unsigned long long)s,
            (unsigned long long)v, (unsigned long long)values[s]);
    }
    /* Unacknowledged survivors of the last kill are allowed (the server
     * appended, the ACK was lost with it): they extend the log. */
    uint64_t next = acked;
    rill_client_msg_t m;
    while (rill_client_next(c, &m, 20000000) == 0) {
      CHECK(m.seq == next, "a gap after the acknowledged records");
      memcpy(&values[next], m.data, 8);
      next++;
    }
    acked = next;
    /* Publish with acks while a killer waits a random 0-30 ms. */
    pid_t killer = fork();
    CHECK(killer >= 0, "fork");
    if (killer == 0) {
      struct timespec ts = {0, (long)(rand() % 30000) * 1000};
      nanosleep(&ts, NULL);
      kill(srv, SIGKILL);
      _exit(0);
    }
    uint16_t ch;
    if (rill_client_bind(c, "k", &ch) == 0) {
      for (;;) {
        if (acked >= sizeof values / sizeof values[0] - 1)
          break;
        uint64_t seq, v = value++;
        if (rill_client_publish(c, ch, &v, sizeof v, true, &seq) != 0)
          break; /* the server died */
        CHECK(seq == acked, "ack for %llu where %llu was due", (unsigned long long)seq,
              (unsigned long long)acked);
        values[acked++] = v;
      }
    }
    rill_client_close(c);
    waitpid(killer, NULL, 0);
    kill(srv, SIGKILL); /* in case the publishing ended first */
    waitpid(srv, NULL, 0);
  }
  printf("     %llu acknowledged messages over 30 kills, all found\n", (unsigned long long)acked);
}

static void a_client_that_never_reads(void) {
  uint16_t port;
  pid_t srv = serve(&port);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
  uint8_t hello[64];
  rill_net_hello_encode(hello, NULL, 0, "flood", 5);
  uint8_t hdr[RILL_NET_HDR];
  rill_frame_header(hdr, RILL_F_HELLO, 0, 0, 0, 0, (uint32_t)rill_net_hello_size(0, 5));
  CHECK(send(fd, hdr, sizeof hdr, 0) == sizeof hdr, "send");
  CHECK(send(fd, hello, rill_net_hello_size(0, 5), 0) == (ssize_t)rill_net_hello_size(0, 5),
        "send");
  /* PINGs until the socket takes no more: the server stopped reading us. */
  static uint8_t pings[RILL_NET_HDR * 1024];
  for (int i = 0; i < 1024; i++)
    rill_frame_header(pings + i * RILL_NET_HDR, RILL_F_PING, 0, 0, (uint64_t)i, 0, 0);
  uint64_t sent = 0;
  for (int idle = 0; idle < 50;) {
    ssize_t n = send(fd, pings, sizeof pings, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += (uint64_t)n;
      idle = 0;
    } else {
      idle++;
      usleep(2000);
    }
    CHECK(sent < ((uint64_t)1 << 30), "the server read a gigabyte of pings it cannot answer");
  }
  /* Another client is served meanwhile. */
  rill_client_t *c = connect_to(port);
  uint64_t rtt;
  CHECK(rill_client_ping(c, &rtt) == 0, "ping: %s", rill_errmsg());
  rill_client_close(c);
  printf("     the flooder got %llu bytes in before TCP held it back\n", (unsigned long long)sent);
  close(fd);
  kill(srv, SIGTERM);
  int st;
  waitpid(srv, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's exit after SIGTERM");
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  snprintf(dir, sizeof dir, "/tmp/rill-stress-kill-XXXXXX");
  CHECK(mkdtemp(dir), "mkdtemp");
  const stress_case_t cases[] = {
      {"killed_during_acknowledged_publishing", killed_during_acknowledged_publishing},
      {"a_client_that_never_reads", a_client_that_never_reads},
  };
  int rc = stress_run(cases, (int)(sizeof cases / sizeof cases[0]));
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    return 1;
  return rc;
}
