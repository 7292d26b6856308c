/*
 * What the log's files share besides the on-disk format (log/format.h).
 */
#ifndef RILL_LOG_INTERNAL_H
#define RILL_LOG_INTERNAL_H

#include "rill/log.h"

/* Counts n damaged records passed over by a reader of l (the stats'
 * skipped): a subscriber that steps past one says so there. */
void rill__log_count_skipped(rill_log_t *l, uint64_t n);

#endif
