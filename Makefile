# Airlock — build, test, demo, benchmark.
# Quick start on a fresh Debian 12 machine (as root, or with sudo): `make demo`, then `make test`.

SWIFT ?= swift
PREFIX ?= /usr/local
CONFIG ?= release
APT_PACKAGES := libseccomp-dev libcap-dev zlib1g-dev python3 python3-jsonschema pkg-config
BENCH_PACKAGES := bubblewrap hyperfine gcc time python3-venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all deps build harness test demo bench bench-deps install clean fuzz

all: build

# Installs the system packages Airlock builds against, only when one is missing (idempotent).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Release binaries in .build/release/. The Swift runtime is linked statically: the binary starts in ~1.5 ms
# instead of ~4 ms (no dozen shared libraries to load), and runs on hosts without a Swift toolchain.
build: deps harness
	$(SWIFT) build -c $(CONFIG) --static-swift-stdlib

# The loader harness's bytecode, compiled once (the sandbox mounts it read-only and never writes bytecode):
# saves compiling it on every detonation. A stale or missing cache only costs that time.
harness:
	python3 -m compileall -q Profiles/harness

# Every test. The sandbox tests need root (or unprivileged user namespaces) and fail, never skip, without them.
test: deps harness
	$(SWIFT) build
	$(SWIFT) test --disable-xctest

# Probes generated sample models (a benign PyTorch state_dict, safetensors weights, a malicious pickle that tries the
# network and a shell) and shows the verdicts with their evidence; then an escape attempt under `airlock exec`.
demo: build
	@echo "== airlock probe: sample models written by Tests/Generators/models.py =="
	@echo
	-@d=$$(mktemp -d) && python3 Tests/Generators/models.py $$d >/dev/null && cd $$d && \
	  $(CURDIR)/.build/release/airlock probe benign.pt model.safetensors exfil.pkl; \
	  echo; echo "== the malicious model's report as JSON (airlock probe --format json exfil.pkl | head -c 900) =="; echo; \
	  $(CURDIR)/.build/release/airlock probe --format json exfil.pkl | head -c 900; echo " …"; \
	  rm -rf $$d
	@echo
	@echo "== airlock exec: a Python payload tries to escape =="
	@echo
	-.build/release/airlock exec --timeout 20 --ro-bind Tests/Payloads/escape_demo.py:/demo/escape.py -- python3 /demo/escape.py

bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@# picklescan, the baseline of Tests/Bench/scan.sh and probe.sh, in a venv of its own (.build-bench is git-ignored).
	@[ -x .build-bench/venv/bin/picklescan ] || { /usr/bin/python3 -m venv .build-bench/venv && \
	  .build-bench/venv/bin/pip install -q --disable-pip-version-check picklescan==1.0.5; }

# Speed targets live here, not in timed tests. Results: docs/benchmarks.md.
bench: build bench-deps
	bash Tests/Bench/run.sh

# libFuzzer + ASan over every parser, FUZZ_SECONDS each; fails when one crashes, hangs or runs out of memory.
# Separate scratch path: the sanitizer flags must not reach the normal build. Details: docs/fuzzing.md.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS ?= pickle zip safetensors numpy gguf onnx json format
FUZZ_SWIFTFLAGS := -Xswiftc -DAIRLOCK_LIBFUZZER -Xswiftc -sanitize=fuzzer,address \
	-Xswiftc -enable-experimental-feature -Xswiftc Extern
fuzz: deps
	@mkdir -p .build-fuzz/logs
	@echo "fuzz: building airlock-fuzz with libFuzzer and ASan (log: .build-fuzz/logs/build.log)"
	@$(SWIFT) build -c release --scratch-path .build-fuzz --product airlock-fuzz $(FUZZ_SWIFTFLAGS) \
	  >.build-fuzz/logs/build.log 2>&1 || { grep -v "Cannot export local symbol" .build-fuzz/logs/build.log; exit 1; }
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash Tests/Fuzz/run.sh $(FUZZ_TARGETS)

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/airlock/profiles
	install -m 0755 .build/release/airlock $(DESTDIR)$(PREFIX)/bin/airlock
	install -m 0644 Profiles/*.json $(DESTDIR)$(PREFIX)/share/airlock/profiles/
	install -d $(DESTDIR)$(PREFIX)/share/airlock/profiles/harness
	install -m 0644 Profiles/harness/load.py Profiles/harness/airlock_harness.py $(DESTDIR)$(PREFIX)/share/airlock/profiles/harness/
	python3 -m compileall -q $(DESTDIR)$(PREFIX)/share/airlock/profiles/harness

clean:
	rm -rf .build
