/*
 * Syncing and group commit. One syncer at a time leads a round (the
 * `syncing` flag): it notes how far records go (next), fdatasyncs the last
 * segment (a roll syncs the segment it seals, so only the last can hold
 * unsynced records) and stores `durable`. Group commit is that and nothing
 * more: an appender under RILL_LOG_SYNC_GROUP needs its own record durable;
 * while a round runs, the others sleep on `sync_word` and most find their
 * record covered when it ends. Index checkpoints are written at rolls, open
 * and close, after syncing the segment and its index (rill__log_seg_sync).
 */
#include <unistd.h>

#include "log/log_internal.h"

/* Makes records below target (at least) durable. One syncer at a time,
 * the leader: it notes how far records go and fdatasyncs the segment that
 * holds them, so its one sync covers every record appended before it
 * began. The others (followers) sleep on sync_word until it is done, then
 * find their record covered and return, or one of them leads the next
 * round for the records appended meanwhile. Followers do not queue on a
 * mutex: they would each have to take it in turn to learn they are done,
 * and the leader, back for its next record, would win it again and again
 * (rounds of 1.3 records at 16 appenders, measured). Only the segment is
 * synced: index entries past the checkpoint are rebuilt by recovery, so
 * they need not cost a second fdatasync a round; checkpoints are written
 * at rolls, open and close, after syncing both files. */
int rill__log_sync_to(rill_log_t *l, uint64_t target) {
  for (;;) {
    if (ld(&l->durable) >= target)
      return 0;
    uint32_t w0 = __atomic_load_n(&l->sync_word, __ATOMIC_ACQUIRE);
    if (__atomic_exchange_n(&l->syncing, 1, __ATOMIC_ACQ_REL)) {
      /* A leader is at work: wait for its round (bounded, in case its
       * bump came between our load of the word and this wait). */
      rill__futex_wait(&l->sync_word, w0, 10000000);
      continue;
    }
    /* The lock orders our reads of the segment after the appends. */
    pthread_mutex_lock(&l->lock);
    uint64_t upto = l->next;
    /* Only the last segment can hold records not yet synced: a roll syncs
     * the segment it seals. A reference keeps it mapped meanwhile. */
    struct seg *g = l->segs[l->nsegs - 1];
    rill_buf_t ref;
    rill_buf_clone(&ref, &g->whole);
    pthread_mutex_unlock(&l->lock);
    int rc = 0;
    if (ld(&l->durable) < upto && fdatasync(g->fd))
      rc = rill__err_errno("log %s: fdatasync of segment %llu", l->path,
                           (unsigned long long)g->base);
    rill_buf_release(&ref);
    if (!rc && ld(&l->durable) < upto) {
      __atomic_fetch_add(&l->syncs, 1, __ATOMIC_RELAXED);
      __atomic_store_n(&l->durable, upto, __ATOMIC_SEQ_CST);
      if (l->o.sync != RILL_LOG_SYNC_NEVER && __atomic_load_n(&l->sleepers, __ATOMIC_SEQ_CST))
        rill__futex_bump(&l->wake);
    }
    __atomic_store_n(&l->syncing, 0, __ATOMIC_RELEASE);
    rill__futex_bump(&l->sync_word); /* release: durable is visible to the woken */
    if (rc)
      return rc; /* followers retry, and meet the error themselves */
  }
}

int rill_log_sync(rill_log_t *l) {
  if (l->o.read_only)
    return 0;
  return rill__log_sync_to(l, ld(&l->next));
}
