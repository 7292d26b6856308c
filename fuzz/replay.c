/*
 * A main for a fuzz target outside libFuzzer: every file named on the
 * command line, or found directly inside a directory named there, goes
 * once through LLVMFuzzerTestOneInput, and so does the empty input. This
 * is how ctest replays fuzz/corpus/ in every build (gcc too, under ASan in
 * `make asan`), so a seed or a kept crasher that stops passing fails a
 * test rather than waiting for the next fuzzing run.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 MiB: libFuzzer's default -max_len is far below; a larger seed is a
 * mistake in the corpus, not an input to run. */
#define REPLAY_MAX (1u << 20)

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  uint8_t *buf = malloc(REPLAY_MAX);
  if (!buf) {
    fclose(f);
    return -1;
  }
  size_t n = fread(buf, 1, REPLAY_MAX, f);
  int bad = ferror(f) || !feof(f);
  fclose(f);
  if (bad) {
    fprintf(stderr, "%s: unreadable or over %u bytes\n", path, REPLAY_MAX);
    free(buf);
    return -1;
  }
  /* An exact-size copy, so ASan sees a read past the input's end. */
  uint8_t *in = malloc(n ? n : 1);
  if (!in) {
    free(buf);
    return -1;
  }
  memcpy(in, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(in, n);
  free(in);
  return 0;
}

int main(int argc, char **argv) {
  unsigned runs = 0;
  int rc = 0;
  LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
  runs++;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      rc |= replay_file(argv[i]);
      runs++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d) {
      perror(argv[i]);
      return 1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.')
        continue;
      char path[4096];
      if (snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name) >= (int)sizeof path) {
        fprintf(stderr, "%s/%s: path too long\n", argv[i], e->d_name);
        rc = -1;
        continue;
      }
      rc |= replay_file(path);
      runs++;
    }
    closedir(d);
  }
  printf("replay: %u inputs\n", runs);
  return rc ? 1 : 0;
}
