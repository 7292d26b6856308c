/*
 * The futex calls the bus and the log sleep and wake with (process-private:
 * the words live in one process's memory), and the shared ones ipc uses for
 * words in MAP_SHARED memory, which other processes wait on too (the
 * private flag would key the wait on this process's address space, and a
 * wake from another process would never find it).
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* op is FUTEX_WAIT_PRIVATE or FUTEX_WAIT: the two waits differ in nothing
 * else, nor do the two bumps. */
static void futex_wait(uint32_t *addr, int op, uint32_t val, uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  syscall(SYS_futex, addr, op, val, &ts, NULL, 0);
}

static void futex_bump(uint32_t *addr, int op) {
  /* Release: pairs with the sleeper's acquire load of the word. */
  __atomic_fetch_add(addr, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, addr, op, INT_MAX, NULL, NULL, 0);
}

void rill__futex_wait(uint32_t *addr, uint32_t val, uint64_t ns) {
  futex_wait(addr, FUTEX_WAIT_PRIVATE, val, ns);
}

void rill__futex_bump(uint32_t *addr) { futex_bump(addr, FUTEX_WAKE_PRIVATE); }

void rill__futex_wait_shared(uint32_t *addr, uint32_t val, uint64_t ns) {
  futex_wait(addr, FUTEX_WAIT, val, ns);
}

void rill__futex_bump_shared(uint32_t *addr) { futex_bump(addr, FUTEX_WAKE); }
