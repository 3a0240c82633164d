# SPDX-License-Identifier: MIT
# Makefile - the two commands of the quick start, plus the CI extras.
#   make run        build, then run peerdistd in the foreground on .run/ in this checkout
#   make test       build, then run the whole test suite
#   make test-asan  the suite again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-tsan  the suite again under ThreadSanitizer (tests/tsan.supp: third-party code only)
#   make test-kill  kill -9 during publish, AddData and flush, KILL_CYCLES times (the suite: 30)
#   make reliability  the long tests (kill -9 loop, hostile clients, full disk, fuzzing) and
#                   docs/RELIABILITY.md from their output
#   make fuzz       the libFuzzer harnesses (fuzz/) for FUZZ_SECONDS in all, built in FUZZ_BUILD
#   make format     clang-format (.clang-format) over every C file of ours
#   make deb        the Debian packages (packaging/debian/) into build/deb/, checked by lintian
#   make bench      every benchmark, then bench/results/REPORT.md with PNG plots (bench/report.py);
#                   BENCH_QUICK=1 for smaller sizes and 1-2 repetitions, BENCH_ONLY=name,... for some
# Each target installs missing Debian packages first (needs root and apt).

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
# die_after_fork=0: test_publish's child of a threaded fork starts an instance as another uid
# (TSan would refuse the child's threads; test_lib_handles' fork test is skipped instead).
TSAN_RUN_OPTIONS ?= halt_on_error=1 second_deadlock_stack=1 die_after_fork=0 \
                suppressions=$(CURDIR)/tests/tsan.supp
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
RUN_DIR    := $(CURDIR)/.run
FUZZ_SECONDS ?= 60
KILL_CYCLES ?= 500

DEBS := cmake make gcc pkg-config libevent-dev libsqlite3-dev sqlite3 libprotobuf-c-dev \
        protobuf-c-compiler check libsubunit-dev libssl-dev libinih-dev libxml2-dev python3 \
        python3-cryptography pandoc iproute2 openssl
# What `make bench` needs besides DEBS: the plots and the redis baseline of rpc_bench.
BENCH_DEBS := gnuplot-nox redis-tools redis-server
BENCH_QUICK ?=
BENCH_ONLY ?=
# What `make deb` needs besides DEBS.
DEB_TOOLS := debhelper devscripts dpkg-dev lintian fakeroot
DEB_SRC   := $(BUILD)/deb-src
DEB_OUT   := $(BUILD)/deb

.PHONY: all deps configure build run test test-asan test-tsan test-kill reliability fuzz format \
        install deb bench clean

all: build

# Installs whichever of the named Debian packages are missing.
define install_missing
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call install_missing,$(DEBS))

configure: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: configure
	cmake --build $(BUILD) -j$(JOBS)

run: build
	@mkdir -p $(RUN_DIR)/state
	@echo "peerdistd: socket $(RUN_DIR)/peerdistd.sock, database $(RUN_DIR)/cache.db"
	@echo "talk to it from another terminal:"
	@echo "  PEERDIST_SOCKET=$(RUN_DIR)/peerdistd.sock $(CURDIR)/$(BUILD)/client/peerdistctl status"
	@echo "stop it with Ctrl-C."
	exec $(BUILD)/daemon/peerdistd --socket $(RUN_DIR)/peerdistd.sock --db $(RUN_DIR)/cache.db \
	    --state-dir $(RUN_DIR)/state

test: build
	cd $(BUILD) && ctest --output-on-failure

test-asan: deps
	@test -f $(ASAN_BUILD)/CMakeCache.txt || cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPEERDIST_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure

test-tsan: deps
	@test -f $(TSAN_BUILD)/CMakeCache.txt || cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPEERDIST_TSAN=ON
	cmake --build $(TSAN_BUILD) -j$(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" ctest --output-on-failure

# The long run of tests/test_killloop.c; PEERDIST_KILL_SEED=N repeats its random choices
# (not its timing).
test-kill: build
	PEERDIST_KILL_CYCLES=$(KILL_CYCLES) $(BUILD)/tests/test_killloop

reliability: build
	$(call install_missing,clang libclang-rt-14-dev)
	sh tests/reliability-report.sh $(BUILD)

fuzz: deps
	$(call install_missing,clang libclang-rt-14-dev)
	FUZZ_BUILD=$(FUZZ_BUILD) JOBS=$(JOBS) sh fuzz/run.sh $(FUZZ_SECONDS)

format:
	$(call install_missing,clang-format)
	git ls-files '*.[ch]' | grep -v '^tests/vectors/' | xargs clang-format -i

install: build
	cmake --install $(BUILD)

# A copy of the tree (the files git knows, or everything but build directories outside git)
# with packaging/debian as debian/, built by dpkg-buildpackage without running the suite
# (nocheck: `make test` runs it). The packages land in $(DEB_OUT); lintian must find no error.
deb:
	$(call install_missing,$(DEBS) $(DEB_TOOLS))
	rm -rf $(DEB_SRC) $(DEB_OUT)
	mkdir -p $(DEB_SRC)/peerdist $(DEB_OUT)
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z -c -o --exclude-standard | xargs -0 cp -a --parents -t $(DEB_SRC)/peerdist; \
	else \
	    tar -cf - --exclude='./build*' --exclude=./.run . | tar -xf - -C $(DEB_SRC)/peerdist; \
	fi
	rm -rf $(DEB_SRC)/peerdist/debian
	cp -a packaging/debian $(DEB_SRC)/peerdist/debian
	cd $(DEB_SRC)/peerdist && DEB_BUILD_OPTIONS="nocheck parallel=$(JOBS) $(DEB_BUILD_OPTIONS)" \
	    dpkg-buildpackage -us -uc -b
	mv $(DEB_SRC)/*.deb $(DEB_SRC)/*.buildinfo $(DEB_SRC)/*.changes $(DEB_OUT)/
	lintian --fail-on error --info $(DEB_OUT)/*.changes
	@ls -1 $(DEB_OUT)/*.deb

# Benchmarks that need root (namespaces, other uids) run only as root. Results (logs, .dat,
# PNGs, REPORT.md) go to bench/results/, which git ignores but for its README.md.
bench: build
	$(call install_missing,$(BENCH_DEBS))
	BENCH_QUICK=$(BENCH_QUICK) BENCH_ONLY=$(BENCH_ONLY) python3 bench/report.py --build $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(RUN_DIR)
