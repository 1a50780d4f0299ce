# SPDX-License-Identifier: MIT
# make | make test | make SAN=1 test | make demo | make V=1 | make WERROR=0 | make format
ifeq ($(origin CC),default)
CC := gcc
endif
CLANG   ?= clang
BPFTOOL ?= bpftool
PKGS    := liburing openssl
V       ?= 0
SAN     ?= 0
WERROR  ?= 1

# make builds build/ktlsgw (the contract); objects live per flavour so that
# SAN=1 never mixes instrumented and plain objects.
OUT  := build/$(if $(filter 1,$(SAN)),san,default)
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

ifeq ($(V),1)
Q   :=
msg :=
else
Q   := @
msg  = @printf '  %-8s %s\n' '$(1)' '$(2)';
endif

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wundef -Wvla -Wpointer-arith \
	-Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
WARN += $(if $(filter 1,$(WERROR)),-Werror)

# bpf/*.bpf.c present: the loader needs libbpf (before CPPFLAGS/LDLIBS are expanded)
ifneq ($(wildcard bpf/*.bpf.c),)
PKGS    += libbpf
endif

CPPFLAGS := -D_GNU_SOURCE -Iinclude -I$(OUT) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS   := -std=gnu11 -g -O2 $(WARN) -MMD -MP
LDFLAGS  :=
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -luring -lssl -lcrypto)
ifeq ($(SAN),1)
CFLAGS   += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=address,undefined
endif

# clang's host include dirs, so -target bpf finds asm/types.h (libbpf-bootstrap trick)
CLANG_BPF_SYS_INCLUDES = $(shell $(CLANG) -v -E - </dev/null 2>&1 \
	| sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }')
BPF_CFLAGS = -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Wextra -Werror \
	-Iinclude -I$(OUT) $(CLANG_BPF_SYS_INCLUDES) -MMD -MP

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
SKELS     := $(BPF_SRCS:bpf/%.bpf.c=$(OUT)/%.skel.h)
SRCS      := $(filter-out src/main.c,$(wildcard src/*.c))
OBJS      := $(SRCS:src/%.c=$(OUT)/src/%.o)
TEST_SRCS := $(wildcard tests/*.c)
TEST_OBJS := $(TEST_SRCS:tests/%.c=$(OUT)/tests/%.o)
BIN       := $(OUT)/ktlsgw
TESTBIN   := $(OUT)/run-tests

.PHONY: all test unit-test integration-test demo deps clean format check-format vmtest bench
all: build/ktlsgw build/ktlsgw-bench build/ktlsgw-bench-backend build/ktlsgw-bench-sslfloor

# The contract path: build/ktlsgw is the plain build.
build/ktlsgw: $(BIN)
	$(Q)$(if $(filter 1,$(SAN)),true,ln -sf default/ktlsgw build/ktlsgw)

# Benchmark tools (src/bench/, not part of the gateway): the mTLS load generator and its
# backend; OpenSSL and pthreads only. The load generator uses the gateway's allocator too
# (ALLOC_LIBS below): glibc's malloc was 7 % of its CPU in new TLS 1.2 handshakes (perf), and
# its CPU sets the pace where a proxy is faster than it (README, Performance).
BENCH_LIBS := $(shell pkg-config --libs openssl 2>/dev/null || echo -lssl -lcrypto) -pthread
$(OUT)/ktlsgw-bench: $(OUT)/src/bench/bench.o $(OUT)/src/bench/ec_legacy.o $(OUT)/src/bench/util.o \
		     $(OUT)/src/chain_digest.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(BENCH_LIBS) $(ALLOC_LIBS) -o $@
$(OUT)/ktlsgw-bench-backend: $(OUT)/src/bench/backend.o $(OUT)/src/bench/util.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(BENCH_LIBS) -o $@
# what OpenSSL alone keeps per idle server connection (the floor under the idle RSS figures)
$(OUT)/ktlsgw-bench-sslfloor: $(OUT)/src/bench/sslfloor.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(BENCH_LIBS) -o $@
build/ktlsgw-bench build/ktlsgw-bench-backend build/ktlsgw-bench-sslfloor: build/%: $(OUT)/%
	$(Q)$(if $(filter 1,$(SAN)),true,ln -sf default/$* $@)
$(OUT)/src/bench/%.o: src/bench/%.c | $(OUT)/src/bench
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -pthread -c $< -o $@

$(OUT)/bpf/%.bpf.o: bpf/%.bpf.c | $(OUT)/bpf $(OUT)/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# Kernel types for CO-RE reads (bpf/gw_sockmap.bpf.c reads tcp_sock), from the build
# machine's BTF; relocated at load time to the running kernel's layout.
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
$(OUT)/vmlinux.h: | $(OUT)
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp && mv $@.tmp $@

$(OUT)/%.skel.h: $(OUT)/bpf/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@.tmp && mv $@.tmp $@

# Skeletons must exist before the first compile; -MMD tracks real deps after that.
$(OUT)/src/%.o: src/%.c | $(SKELS) $(OUT)/src
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(OUT)/tests/%.o: tests/%.c | $(SKELS) $(OUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -c $< -o $@

# Test registry: every "void test_xxx(void)" in tests/test_*.c (kernel test_progs style).
$(OUT)/tests.h: $(wildcard tests/test_*.c) | $(OUT)
	$(call msg,GEN,$@)
	$(Q)sed -n -E 's/^void (test_[a-z0-9_]+)\(void\).*/TEST(\1)/p' $^ | LC_ALL=C sort > $@
$(TEST_OBJS): $(OUT)/tests.h

# The gateway's allocator: jemalloc (Debian's libjemalloc-dev). OpenSSL 3 allocates and frees a
# few thousand blocks per handshake: glibc's malloc was 13 % of a new mTLS handshake's
# instructions, jemalloc takes 6.6 % off the total (callgrind, 300 handshakes), with 1 MiB
# downloads as fast as glibc's (tcmalloc, tried first, cut them by a third: its realloc and
# copies). Not under SAN=1 (ASan brings its own); without the library, glibc's (-V says).
ALLOC_LIBS := $(if $(filter 1,$(SAN)),,$(shell pkg-config --libs jemalloc 2>/dev/null))

$(BIN): $(OUT)/src/main.o $(OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) $(ALLOC_LIBS) -o $@

$(TESTBIN): $(TEST_OBJS) $(OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Unit tests (C runner) then integration tests (real nginx as the oracle, real
# sockets on loopback). Both print "N passed, N failed"; the last line sums them.
test: deps $(TESTBIN) $(BIN) build/ktlsgw $(OUT)/ktlsgw-bench $(OUT)/ktlsgw-bench-backend
	$(Q)scripts/gen-test-certs.sh $(OUT)/certs
	$(Q)scripts/run-tests.sh $(OUT)

unit-test: $(TESTBIN)
	$(Q)scripts/gen-test-certs.sh $(OUT)/certs
	$(Q)GW_CERTS=$(OUT)/certs $(TESTBIN) $(T)

integration-test: $(BIN) $(OUT)/ktlsgw-bench $(OUT)/ktlsgw-bench-backend
	$(Q)scripts/gen-test-certs.sh $(OUT)/certs
	$(Q)GW_BIN=$(BIN) GW_CERTS=$(OUT)/certs python3 tests/integration/run.py $(T)

demo: deps build/ktlsgw
	$(Q)scripts/demo.sh $(OUT)

deps:
	$(Q)scripts/install-deps.sh --if-missing

# Side-by-side benchmark against nginx and HAProxy (scripts/bench.sh: builds, installs what
# is missing, about 8 minutes); make bench BENCH_ARGS="--rounds 5 --duration 10".
bench:
	$(Q)scripts/bench.sh $(BENCH_ARGS)

# Kernel TLS suite (tests/vm/suite.sh: tests/vm/run.py, then the tier K and gateway tests of
# tests/integration) inside a TCG VM on Debian 12's 6.1 kernel, which has tls.ko
# (scripts/vmtest.sh; first run downloads the kernel package into build/vm/). Part of make test.
# make vmtest [T=substring] [VMTEST_TIMEOUT=secs]; the last line is "N passed, N failed, N skipped".
vmtest: deps $(BIN) build/ktlsgw
	$(Q)mkdir -p build/vm
	$(Q)[ build/vm/ktls-openssl -nt tests/vm/ktls_openssl.c ] || { \
		printf '  %-8s %s\n' CC build/vm/ktls-openssl; \
		$(CC) -std=gnu11 -g -O2 $(WARN) -D_GNU_SOURCE tests/vm/ktls_openssl.c \
			-o build/vm/ktls-openssl -lssl -lcrypto; }
	$(Q)[ build/vm/sockmap-ktls -nt tests/vm/sockmap_ktls.c ] || { \
		printf '  %-8s %s\n' CC build/vm/sockmap-ktls; \
		$(CC) -std=gnu11 -g -O2 $(WARN) -D_GNU_SOURCE tests/vm/sockmap_ktls.c \
			-o build/vm/sockmap-ktls; }
	$(Q)scripts/gen-test-certs.sh $(OUT)/certs
	$(Q)scripts/vmtest.sh --quiet --timeout $(or $(VMTEST_TIMEOUT),1800) -e GW_BIN=$(BIN) \
		-e GW_CERTS=$(OUT)/certs -e VMTEST_KTLS_OPENSSL=build/vm/ktls-openssl \
		-- sh tests/vm/suite.sh $(T)

$(OUT) $(OUT)/bpf $(OUT)/src $(OUT)/src/bench $(OUT)/tests:
	$(Q)mkdir -p $@

FMT_FILES := $(wildcard src/*.[ch] src/bench/*.c include/gw/*.h bpf/*.[ch] tests/*.[ch])
format:
	$(Q)clang-format -i $(FMT_FILES)
check-format:
	$(Q)clang-format --dry-run --Werror $(FMT_FILES)
clean:
	$(Q)rm -rf build

-include $(wildcard $(OUT)/*/*.d $(OUT)/src/bench/*.d)
.DELETE_ON_ERROR:
.SECONDARY:
