# A thin front for CMake. The two commands in README work on a fresh
# Debian 12 machine as root: `make run` and `make test`.
MAKEFLAGS  += --no-print-directory
BUILD      ?= build
JOBS       ?= $(shell nproc)
CMAKE_GEN   = cmake -S . -G "Unix Makefiles"
PREFIX     ?= /usr/local

.PHONY: all deps build test run bench asan tsan fuzz fuzz-smoke install abi-build abi-dump abi-check coverage format clean

all: build

deps:
	@bash scripts/deps.sh

# Configured every time (a fraction of a second): a build first made by
# `make run`, without the test and bench packages, finds them once
# `make test` has installed them.
build: deps
	@$(CMAKE_GEN) -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The redis-server that `rill bench log` compares with (scripts/redis.sh):
# started here so the smoke test measures it rather than noting it absent.
test: build
	@bash scripts/redis.sh $(BUILD)/redis
	@cd $(BUILD) && ctest --output-on-failure -j 1

# The main job: the rill server on 127.0.0.1:7450, topics in ./rill-data.
# Only what it needs is installed and built (the rill command), and
# quietly: the build's output is shown only when it fails. Ctrl-C stops
# the server cleanly (clients are told, logs flushed).
run:
	@bash scripts/deps.sh lib
	@mkdir -p $(BUILD)
	@{ $(CMAKE_GEN) -B $(BUILD) -DCMAKE_BUILD_TYPE=Release && cmake --build $(BUILD) -j $(JOBS) --target rill; } \
	  >$(BUILD)/run-build.log 2>&1 || { cat $(BUILD)/run-build.log; exit 1; }
	@$(BUILD)/rill serve

bench: build
	@bash scripts/redis.sh $(BUILD)/redis
	@$(BUILD)/rill bench all

# Every suite with --json into $(BUILD)/bench-json/ (a suite's notes beside
# it in <suite>.log), then scripts/bench_report.py: charts of rill against
# each peer in docs/bench/, and the report section of docs/BENCHMARKS.md.
# BENCH_ARGS goes to every suite (--quick for a trial; do not commit those).
.PHONY: bench-report
bench-report: build
	@bash scripts/redis.sh $(BUILD)/redis
	@rm -rf $(BUILD)/bench-json && mkdir -p $(BUILD)/bench-json
	@for s in $$($(BUILD)/rill bench list | cut -d' ' -f1); do \
	  echo "bench-report: rill bench $$s"; \
	  $(BUILD)/rill bench $$s --json $(BENCH_ARGS) >$(BUILD)/bench-json/$$s.json \
	    2>$(BUILD)/bench-json/$$s.log || { cat $(BUILD)/bench-json/$$s.log; exit 1; }; \
	done
	@/usr/bin/python3 scripts/bench_report.py --out docs/bench --embed docs/BENCHMARKS.md \
	  $(BUILD)/bench-json

# The net suite's ZeroMQ and Redis rows against the peers' own tools run
# beside them (bench/tools/zmq_thr, redis-benchmark): fails when
# they disagree by more than this machine's noise (scripts/peer_check.sh).
.PHONY: peer-check
peer-check: build
	@bash scripts/redis.sh $(BUILD)/redis
	@bash scripts/peer_check.sh $(BUILD)

asan: deps
	@$(CMAKE_GEN) -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRILL_SANITIZE=address,undefined -DRILL_BENCH=OFF >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j 1

tsan: deps
	@$(CMAKE_GEN) -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRILL_SANITIZE=thread -DRILL_BENCH=OFF >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	@cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --output-on-failure -j 1

fuzz: deps
	@CC=clang $(CMAKE_GEN) -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRILL_FUZZ=ON -DRILL_TESTS=OFF -DRILL_BENCH=OFF -DRILL_SANITIZE=address,undefined >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

# Every fuzz target for FUZZ_SECONDS over its seeds (fuzz/corpus/<name>/) and
# dictionary (fuzz/<first word of name>.dict), where they exist, and over what
# it finds; a crash fails and leaves the input in build-fuzz/.
FUZZ_SECONDS ?= 20
fuzz-smoke: fuzz
	@for f in build-fuzz/fuzz_*; do \
	  [ -x "$$f" ] || continue; n=$${f#build-fuzz/fuzz_}; \
	  mkdir -p build-fuzz/found/$$n; seeds=; [ -d fuzz/corpus/$$n ] && seeds=fuzz/corpus/$$n; \
	  dict=; [ -f fuzz/$${n%%_*}.dict ] && dict=-dict=fuzz/$${n%%_*}.dict; \
	  if $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 $$dict -artifact_prefix=build-fuzz/ \
	      build-fuzz/found/$$n $$seeds >build-fuzz/$$n.log 2>&1; then \
	    echo "fuzz: $$n clean for $(FUZZ_SECONDS) s ($$(grep -o 'stat::number_of_executed_units: [0-9]*' build-fuzz/$$n.log | grep -o '[0-9]*$$' || echo '?') runs)"; \
	  else tail -40 build-fuzz/$$n.log; echo "fuzz: $$n FAILED"; exit 1; fi; \
	done

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

# librill.so's ABI against abi/librill.abi, the last release's (abidiff,
# from abigail-tools). The types come from DWARF, so this builds the shared
# library alone with -g, source paths made relative so that the dump is the
# same from any checkout. Additions pass; a changed or removed function,
# variable or public type fails. A release, or a change that means to
# break the ABI (with RILL_VERSION_MAJOR raised), rewrites the dump with
# `make abi-dump` and commits it.
ABI_LIB = build-abi/librill.so
ABI_DROP = --drop-private-types
build-abi/Makefile: CMakeLists.txt
	@$(CMAKE_GEN) -B build-abi -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRILL_TESTS=OFF -DRILL_BENCH=OFF \
	  -DCMAKE_C_FLAGS="-ffile-prefix-map=$(CURDIR)/=" >/dev/null

abi-build: deps build-abi/Makefile
	@cmake --build build-abi -j $(JOBS) --target rill_shared >/dev/null

abi-dump: abi-build
	@abidw --headers-dir include/rill $(ABI_DROP) --no-show-locs --no-corpus-path --out-file abi/librill.abi $(ABI_LIB)
	@echo "abi: abi/librill.abi rewritten from $(ABI_LIB)"

abi-check: abi-build
	@if abidiff --no-added-syms --headers-dir2 include/rill $(ABI_DROP) abi/librill.abi $(ABI_LIB) >build-abi/abidiff.txt 2>&1; then \
	  echo "abi: librill.so keeps the ABI of abi/librill.abi"; \
	else cat build-abi/abidiff.txt; echo "abi: librill.so breaks abi/librill.abi (make abi-dump if meant, see README)"; exit 1; fi

# Line and branch coverage of the library and the command by the tests
# (gcc --coverage, gcovr): HTML in build-cov/coverage/index.html.
# COV_TESTS, a ctest regex, narrows the run: make coverage COV_TESTS='^(core|mem)'.
COV_TESTS ?= .
coverage: deps
	@$(CMAKE_GEN) -B build-cov -DCMAKE_BUILD_TYPE=Debug -DRILL_COVERAGE=ON -DRILL_BENCH=OFF >/dev/null
	@cmake --build build-cov -j $(JOBS)
	@find build-cov -name '*.gcda' -delete
	@cd build-cov && ctest -j 1 -R '$(COV_TESTS)' || echo "coverage: some tests failed; the report covers what ran"
	@mkdir -p build-cov/coverage
	@gcovr -r . --object-directory build-cov --filter src/ --filter include/ --filter tools/ \
	  --html-details build-cov/coverage/index.html --print-summary -j $(JOBS)
	@echo "coverage: build-cov/coverage/index.html"

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	@rm -rf build build-asan build-tsan build-fuzz build-abi build-cov
