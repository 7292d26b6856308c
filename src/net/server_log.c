/*
 * The server's log: lines to the log callback, each kind held to log_rate
 * lines a second, so a flood of refused connections cannot hide the one
 * line saying the disk is full.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>

#include "net/addr.h"
#include "net/server_internal.h"

static const char *const log_kind_name[L_KINDS] = {
    "refused connection", "topic",     "out of descriptors",
    "no space",           "I/O error", "closed connection",
};

/* Under log_mu: the count of a kind's lines dropped in a second that has
 * ended, as a line of its own. */
static void log_suppressed(rill_server_t *s, int kind, uint64_t now) {
  struct logkind *k = &s->logk[kind];
  if (now - k->since < 1000000000ull)
    return;
  if (k->suppressed) {
    char line[128];
    snprintf(line, sizeof line, "%s: suppressed %llu similar lines in the last second",
             log_kind_name[kind], (unsigned long long)k->suppressed);
    s->o.log(s->o.log_ctx,
             kind == L_NOSPC || kind == L_NOFILE || kind == L_IO ? RILL_SERVER_LOG_ERROR
                                                                 : RILL_SERVER_LOG_WARN,
             line);
  }
  *k = (struct logkind){.since = now};
}

/* A line to the log callback, unless its kind used its lines this second. */
void rill__srv_log(rill_server_t *s, int kind, rill_server_log_level_t level, const char *fmt,
                   ...) {
  if (!s->o.log)
    return;
  pthread_mutex_lock(&s->log_mu);
  uint64_t now = rill_time_ns();
  log_suppressed(s, kind, now);
  struct logkind *k = &s->logk[kind];
  if (k->lines >= s->o.log_rate) {
    k->suppressed++;
  } else {
    k->lines++;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_ctx, level, line);
  }
  pthread_mutex_unlock(&s->log_mu);
}

/* The suppressed counts of seconds that ended with no line after them
 * (loop 0's sweep). */
void rill__srv_log_flush(rill_server_t *s) {
  if (!s->o.log)
    return;
  pthread_mutex_lock(&s->log_mu);
  uint64_t now = rill_time_ns();
  for (int kind = 0; kind < L_KINDS; kind++)
    if (s->logk[kind].suppressed)
      log_suppressed(s, kind, now);
  pthread_mutex_unlock(&s->log_mu);
}

/* "ADDRESS:PORT" of a connection's peer ("[ADDRESS]:PORT" for IPv6), for the log. */
const char *rill__srv_peer_of(int fd, char *buf, size_t cap) {
  struct sockaddr_storage a;
  socklen_t l = sizeof a;
  if (getpeername(fd, (struct sockaddr *)&a, &l) == 0 &&
      (a.ss_family == AF_INET || a.ss_family == AF_INET6))
    return rill__addr_str((struct sockaddr *)&a, buf, cap);
  snprintf(buf, cap, "(unknown peer)");
  return buf;
}

/* An error the server answers a request with that is the server's
 * trouble, not the client's: logged, by kind. */
void rill__srv_log_answer(rill_server_t *s, int fd, int code, const char *msg) {
  int kind = code == RILL_ENOSPC                         ? L_NOSPC
             : code == -EMFILE || code == -ENFILE        ? L_NOFILE
             : code == RILL_EIO || code == RILL_ECORRUPT ? L_IO
                                                         : -1;
  if (kind < 0 || !s->o.log)
    return;
  char peer[64];
  rill__srv_log(s, kind, RILL_SERVER_LOG_ERROR, "%s (answering %s)", msg,
                rill__srv_peer_of(fd, peer, sizeof peer));
}
