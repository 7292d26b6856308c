/*
 * Requests answered at once, with nothing to restore after a reconnect:
 * PING, STATS, and the topics' TOPICS, TOPIC_INFO and TOPIC_DELETE.
 */

#include "net/client_internal.h"

int rill_client_ping(rill_client_t *c, uint64_t *rtt_ns) {
  int rc = ready(c);
  if (rc)
    return rc;
  uint64_t id = c->next_id++, t0 = rill_time_ns();
  rc = send_frame(c, RILL_F_PING, 0, 0, id, 0, NULL, 0);
  rill_frame_t f;
  if (!rc)
    rc = rill__cli_await(c, RILL_F_PONG, id, &f, c->o.timeout_ns);
  if (!rc && rtt_ns)
    *rtt_ns = rill_time_ns() - t0;
  return rc;
}

int rill_client_server_stats_text(rill_client_t *c, char *buf, size_t cap, size_t *len) {
  if (!len || (cap && !buf))
    return rill__err(RILL_EINVAL, "client: stats wants len (and buf when cap > 0)");
  int rc = ready(c);
  if (rc)
    return rc;
  uint64_t id = c->next_id++;
  rc = send_frame(c, RILL_F_STATS, 0, 0, id, 0, NULL, 0);
  rill_frame_t f;
  if (!rc)
    rc = rill__cli_await(c, RILL_F_STATS, id, &f, c->o.timeout_ns);
  if (rc)
    return rc;
  *len = f.len;
  if (cap <= f.len)
    return rill__err(RILL_ENOBUFS, "client: the metrics are %u bytes, the buffer %zu", f.len, cap);
  memcpy(buf, f.body, f.len);
  buf[f.len] = 0;
  return 0;
}

/* A request about topics (TOPICS, TOPIC_INFO, TOPIC_DELETE) naming one,
 * and its answer of type `answer` into *f. */
static int topic_request(rill_client_t *c, uint8_t type, uint8_t answer, const char *name,
                         rill_frame_t *f) {
  int rc = ready(c);
  if (rc)
    return rc;
  uint64_t id = c->next_id++;
  rc = send_frame(c, type, 0, 0, id, 0, name, (uint32_t)strlen(name));
  return rc ? rc : rill__cli_await(c, answer, id, f, c->o.timeout_ns);
}

int rill_client_topics(rill_client_t *c, rill_client_topic_cb cb, void *ctx) {
  if (!cb)
    return rill__err(RILL_EINVAL, "client: topics without a callback");
  char after[RILL_NET_MAX_NAME + 1] = {0}, name[RILL_NET_MAX_NAME + 1];
  for (;;) {
    rill_frame_t f;
    int rc = topic_request(c, RILL_F_TOPICS, RILL_F_TOPICS, after, &f);
    if (rc)
      return rc;
    /* Checked whole before any callback: names, in order, each after the
     * last, as many as arg says; so a next request always moves on. */
    uint64_t count = 0;
    const char *prev = after;
    size_t prev_len = strlen(after);
    for (uint32_t off = 0; off < f.len; count++) {
      uint8_t nl = f.body[off];
      const uint8_t *nm = f.body + off + 1;
      if (nl > f.len - off - 1 || !rill_net_name_ok(nm, nl))
        return rill__err(RILL_EPROTO, "client: a TOPICS answer that does not decode");
      int cmp = memcmp(nm, prev, prev_len < nl ? prev_len : nl);
      if (prev_len && (cmp < 0 || (cmp == 0 && nl <= prev_len)))
        return rill__err(RILL_EPROTO, "client: a TOPICS answer out of order");
      prev = (const char *)nm;
      prev_len = nl;
      off += 1u + nl;
    }
    if (count != f.arg || ((f.flags & RILL_FF_MORE) && !count))
      return rill__err(RILL_EPROTO, "client: a TOPICS answer that does not decode");
    for (uint32_t off = 0; off < f.len; off += 1u + f.body[off]) {
      memcpy(name, f.body + off + 1, f.body[off]);
      name[f.body[off]] = 0;
      cb(ctx, name);
    }
    if (!(f.flags & RILL_FF_MORE))
      return 0;
    memcpy(after, name, strlen(name) + 1);
  }
}

int rill_client_topic_info(rill_client_t *c, const char *topic, rill_topic_info_t *info) {
  int rc = rill__cli_name_arg(topic, "topic");
  if (rc)
    return rc;
  if (!info)
    return rill__err(RILL_EINVAL, "client: topic_info without info");
  rill_frame_t f;
  if ((rc = topic_request(c, RILL_F_TOPIC_INFO, RILL_F_TOPIC_INFO, topic, &f)))
    return rc;
  if (f.len != RILL_NET_TOPIC_INFO_SIZE)
    return rill__err(RILL_EPROTO, "client: a %u-byte TOPIC_INFO answer", f.len);
  const uint8_t *b = f.body;
  *info = (rill_topic_info_t){.first = rill__get64(b),
                              .next = rill__get64(b + 8),
                              .bytes = rill__get64(b + 16),
                              .disk_bytes = rill__get64(b + 24),
                              .segment_bytes = rill__get64(b + 32),
                              .segments = rill__get64(b + 40),
                              .retain_bytes = rill__get64(b + 48),
                              .retain_count = rill__get64(b + 56),
                              .retain_age_ns = rill__get64(b + 64),
                              .subscribers = rill__get32(b + 72),
                              .publishers = rill__get32(b + 76)};
  return 0;
}

int rill_client_topic_delete(rill_client_t *c, const char *topic) {
  int rc = rill__cli_name_arg(topic, "topic");
  if (rc)
    return rc;
  rill_frame_t f;
  return topic_request(c, RILL_F_TOPIC_DELETE, RILL_F_ACK, topic, &f);
}
