/*
 * A histogram written by one thread while the HTTP endpoint's thread
 * renders it for scrapes, as the server's loops and metrics thread will:
 * under TSan this is the check that relaxed loads and stores are all the
 * sharing needs. Each scrape's count may only grow, and never passes
 * what was written; after the writer stops, the count is exact.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/metrics.h"

#define N 2000000u

static rill_hist_t hist;
static uint32_t written; /* the writer's progress, for the checks */

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "stress_metrics: %s:%d: %s\n", __FILE__, __LINE__, #c);                      \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static void *writer(void *arg) {
  (void)arg;
  for (uint32_t i = 0; i < N; i++) {
    rill_hist_record(&hist, 100 + (i % 100000) * 37);
    __atomic_store_n(&written, i + 1, __ATOMIC_RELEASE);
  }
  return NULL;
}

static int render(void *ctx, rill__prom_t *p) {
  (void)ctx;
  /* Loaded before the histogram: with acquire, every value counted here
   * is in the copy, so the copy holds at least this many. */
  uint32_t before = __atomic_load_n(&written, __ATOMIC_ACQUIRE);
  rill_hist_t copy;
  rill_hist_init(&copy);
  rill_hist_merge(&copy, &hist);
  uint64_t n = copy.count;
  CHECK(n >= before && n <= N);
  rill__prom_family(p, "rill_publish_ack_seconds", "histogram", "Test.");
  rill__prom_hist(p, "rill_publish_ack_seconds", NULL, &copy);
  return 0;
}

/* The _count of one scrape. */
static unsigned long scrape(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  const char req[] = "GET /metrics HTTP/1.1\r\n\r\n";
  CHECK(write(fd, req, sizeof req - 1) == (ssize_t)sizeof req - 1);
  static char buf[1 << 16];
  size_t len = 0;
  ssize_t r;
  while ((r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t)r;
  close(fd);
  buf[len] = 0;
  CHECK(!strncmp(buf, "HTTP/1.1 200 OK", 15));
  const char *c = strstr(buf, "\nrill_publish_ack_seconds_count ");
  CHECK(c);
  return strtoul(c + 32, NULL, 10);
}

int main(void) {
  rill__metrics_http_t *m;
  CHECK(rill__metrics_http_start(&m, "127.0.0.1:0", render, NULL) == 0);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, writer, NULL) == 0);
  unsigned long last = 0;
  int scrapes = 0;
  while (__atomic_load_n(&written, __ATOMIC_ACQUIRE) < N) {
    unsigned long n = scrape(rill__metrics_http_port(m));
    CHECK(n >= last);
    last = n;
    scrapes++;
  }
  pthread_join(t, NULL);
  CHECK(scrape(rill__metrics_http_port(m)) == N);
  rill__metrics_http_stop(m);
  printf("stress_metrics: %d scrapes during %u writes\n", scrapes, N);
  return 0;
}
