# Airlock — build, test, demo, benchmark.
# Quick start on a fresh Debian 12 machine (as root, or with sudo): `make demo`, then `make test`.

SWIFT ?= swift
PREFIX ?= /usr/local
CONFIG ?= release
# systemd: systemd-analyze, systemd-socket-activate, systemd-sysusers and systemd-tmpfiles for the daemon's tests
# (SystemdUnitTests); it need not be running.
# The consumer's Python stack that detonations load with by default (`airlock probe` uses the system's python3 and
# its site-packages) and that the tests make real models with: Debian's packages, CPU-only torch (~200 MB download).
ML_PACKAGES := python3-numpy python3-sklearn python3-joblib python3-pandas python3-dill python3-cloudpickle python3-torch
# What `make build` needs (it checks, `make deps` installs): the C libraries' headers and pkg-config, python3 for the
# harness's bytecode. The rest is for the tests and `make deb` (dpkg-dev: dpkg-shlibdeps; binutils: strip, objcopy;
# man-db: the packaging test's `man -w`; TEST_PYTHON_PACKAGES: what the test generators write models and payloads with).
BUILD_PACKAGES := libseccomp-dev libcap-dev zlib1g-dev liblzma-dev libbz2-dev libzstd-dev liblz4-dev python3 pkg-config
# Tests/Generators and Tests/Fixtures: Debian's onnx 1.12 (ONNX as older exporters wrote it), h5py (legacy Keras HDF5),
# jinja2 (chat templates rendered as the vulnerable loaders did), lz4 and zstandard (packed pickles), cryptography
# (model-signing fixtures).
TEST_PYTHON_PACKAGES := python3-onnx python3-h5py python3-jinja2 python3-lz4 python3-zstandard python3-cryptography
APT_PACKAGES := $(BUILD_PACKAGES) $(TEST_PYTHON_PACKAGES) 7zip python3-jsonschema python3-prometheus-client python3-venv python3-pip python3-setuptools python3-wheel util-linux systemd dpkg-dev binutils man-db $(ML_PACKAGES)
# The system's interpreter: detonations use it unless --python names another.
PYTHON ?= /usr/bin/python3
BENCH_PACKAGES := bubblewrap hyperfine gcc time strace openssl python3-venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all deps build check-build-deps harness lint format test test-venvs test-unit demo bench bench-deps install \
	install-files uninstall deb clean fuzz inventory

all: build

# Installs the system packages Airlock builds against, only when one is missing (idempotent).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get -o Acquire::Retries=5 update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o Acquire::Retries=5 install -y -qq --no-install-recommends $$missing; \
	fi

# Release binaries (airlock, airlockd) in .build/release/. The Swift runtime is linked statically, and airlock is a fully
# static executable (Package.swift): no loader, no relocations, `airlock --version` in ~0.7 ms instead of ~3 ms
# (docs/benchmarks.md, "Start-up budget"); both run on hosts without a Swift toolchain. Also swift-argument-parser's
# generate-manual, which `make install` makes the manual pages with. Installs nothing: a missing build dependency is
# named, with `make deps` to install it.
build: check-build-deps harness
	$(SWIFT) build -c $(CONFIG) --static-swift-stdlib
	$(SWIFT) build -c $(CONFIG) --static-swift-stdlib --product generate-manual

check-build-deps:
	@command -v $(SWIFT) >/dev/null || { echo "make build: no Swift toolchain ($(SWIFT)) on PATH (HACKING.md)" >&2; exit 1; }
	@if command -v dpkg-query >/dev/null; then missing=""; for p in $(BUILD_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then echo "make build: missing build dependencies:$$missing; run \`make deps\` (as root) to install them" >&2; exit 1; fi; \
	else for m in libseccomp libcap zlib; do pkg-config --exists $$m || { \
	  echo "make build: $$m not found by pkg-config; install it (make deps lists the Debian packages)" >&2; exit 1; }; done; fi

# The loader harness's bytecode, compiled once (the sandbox mounts it read-only and never writes bytecode):
# saves compiling it on every detonation. A stale or missing cache only costs that time.
harness:
	$(PYTHON) -m compileall -q --invalidation-mode checked-hash Profiles/harness

# The house style, strict: swift-format (it ships with the toolchain; configuration in .swift-format: 4 spaces, 120
# columns) finds nothing to change, and no Swift file is over 600 lines (Tests/Lint/file-lengths.sh). `make format`
# rewrites the sources in that style.
lint:
	$(SWIFT) format lint --strict --parallel --recursive Package.swift Sources Tests
	bash Tests/Lint/file-lengths.sh

format:
	$(SWIFT) format format --in-place --parallel --recursive Package.swift Sources Tests

# Every test, after the lint. The sandbox tests need root (or unprivileged user namespaces) and fail, never skip,
# without them.
# The release binaries (`make build`) first: PackagingTests installs them, packs them in a .deb and runs them.
test: deps harness lint test-venvs
	@$(MAKE) --no-print-directory build
	$(SWIFT) build
	$(SWIFT) test --disable-xctest

# The consumer environments of the tests that need libraries Debian does not package, from PyPI. Each is made once per
# machine in a cache every clone shares (~/.cache/airlock/venvs, `AIRLOCK_VENV_CACHE`), named by the interpreter and
# the requirements, and `.build-deps/NAME` links to it (Tests/Venvs/venv.sh): a new clone, or a run while PyPI does not
# answer, reuses what the machine already has. `rm -rf ~/.cache/airlock/venvs` makes them again.
VENV := bash Tests/Venvs/venv.sh
# transformers, for the tests of repositories with remote code loaded by the real transformers: over the system's
# site-packages (Debian's torch 1.13) with transformers 4.36, the last line that supports that torch (about 10 MB).
TRANSFORMERS_VENV := .build-deps/transformers
# The current onnx and onnxruntime (about 100 MB with protobuf and numpy 1.26, which stays below 2 for Debian's torch):
# ONNX as today's onnx writes it, and onnxruntime for the ONNX detonation tests.
ONNX_VENV := .build-deps/onnx
# keras 3 (keras 3.3 with jax 0.4.30, numpy below 2 and h5py from PyPI: pip does not see Debian's): keras 3 imports jax
# even with its numpy backend. The Keras detonation tests load `.keras` and `.h5` models with it.
KERAS_VENV := .build-deps/keras
test-venvs:
	@$(VENV) $(ONNX_VENV) $(PYTHON) "import onnx, onnxruntime" "onnx==1.23.2" "onnxruntime==1.32.0" "numpy<2"
	@$(VENV) $(TRANSFORMERS_VENV) $(PYTHON) "import transformers" "transformers==4.36.2"
	@KERAS_BACKEND=numpy $(VENV) $(KERAS_VENV) $(PYTHON) "import keras" \
	  "keras==3.3.3" "jax==0.4.30" "jaxlib==0.4.30" "numpy<2" "ml-dtypes<0.5" packaging

# The tests that need no root, no namespaces and no detonation: the parsers, rules, names, JSON and the trace's types,
# and from AirlockProbeTests the verdict rules on synthetic traces, the policy-against-profile checks and the harness
# contract. A quick loop while editing; `swift test --filter SUITE` runs one suite (HACKING.md).
UNIT_TEST_TARGETS := AirlockSystemTests AirlockJSONTests AirlockNamesTests AirlockTraceTests AirlockFormatsTests AirlockAnalysisTests
UNIT_TEST_SUITES := AirlockProbeTests.VerdictRulesTests AirlockProbeTests.PolicyProfileTests AirlockProbeTests.HarnessContractTests AirlockProbeTests.RuntimeRulesTests AirlockProbeTests.HoneytokenTests
test-unit: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --disable-xctest --skip-build $(foreach t,$(UNIT_TEST_TARGETS) $(UNIT_TEST_SUITES),--filter '^$(t)[./]')

# Regenerates the system-call inventory in docs/profiles.md from Profiles/default.json (SyscallInventoryTests checks it).
inventory: deps
	AIRLOCK_UPDATE_DOCS=1 $(SWIFT) test --disable-xctest --filter SyscallInventoryTests/documentedInventory

# Probes generated sample models (a benign PyTorch state_dict, safetensors weights, a malicious pickle that tries the
# network and a shell) and shows the verdicts with their evidence; then an escape attempt under `airlock exec`.
demo: deps build
	@# Every step is checked: a probe of the three samples must exit 1 (exfil.pkl is malicious), the escape payload
	@# must run to its end (exit 0) with its attempts refused, intake --once must exit 1 (one model rejected). Any
	@# other status fails the demo.
	@set -e; d=$$(mktemp -d); trap 'chmod -R u+w "$$d"; rm -rf "$$d"' EXIT; \
	  A=$(CURDIR)/.build/release/airlock; \
	  $(PYTHON) Tests/Generators/models.py $$d >/dev/null; \
	  echo "== airlock probe: sample models written by Tests/Generators/models.py =="; echo; \
	  s=0; (cd $$d && $$A probe benign.pt model.safetensors exfil.pkl) || s=$$?; \
	  [ $$s -eq 1 ] || { echo "demo: airlock probe exited $$s, expected 1 (exfil.pkl malicious)" >&2; exit 1; }; \
	  echo; echo "== the malicious model's report as JSON, read from standard input (airlock probe --format json - < exfil.pkl) =="; echo; \
	  s=0; $$A probe --format json - < $$d/exfil.pkl > $$d/exfil.json || s=$$?; \
	  [ $$s -eq 1 ] || { echo "demo: airlock probe - exited $$s, expected 1" >&2; exit 1; }; \
	  head -c 900 $$d/exfil.json; echo " …"; \
	  echo; echo "== airlock exec: a Python payload tries to escape (--trace full lists every call) =="; echo; \
	  $$A exec --timeout 20 --ro-bind $(CURDIR)/Tests/Payloads/escape_demo.py:/demo/escape.py -- python3 /demo/escape.py; \
	  echo; echo "== airlock intake: three models dropped in a quarantine root, one pass (docs/intake.md) =="; echo; \
	  mkdir -p $$d/root/incoming; cp $$d/benign.pt $$d/model.safetensors $$d/exfil.pkl $$d/root/incoming/; \
	  s=0; $$A intake --root $$d/root --once 2>/dev/null || s=$$?; \
	  [ $$s -eq 1 ] || { echo "demo: airlock intake --once exited $$s, expected 1 (exfil.pkl rejected)" >&2; exit 1; }; \
	  echo; (cd $$d/root && find approved rejected -type f | sort)
	@echo
	@echo "== what next =="
	@echo "  probe your own model:   .build/release/airlock probe path/to/model.pt   (or a folder; - reads standard input)"
	@echo "  static scan only:       .build/release/airlock scan path/to/model       (no Python, no sandbox)"
	@echo "  run the tests:          make test"
	@echo "  read:                   docs/probe.md (what a probe does), docs/policy.md (verdicts), docs/sandbox.md"
	@echo "  a daemon for services:  docs/daemon.md (airlockd set-up), docs/protocol.md, docs/intake.md"

bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@# picklescan, the baseline of Tests/Bench/scan.sh and probe.sh, in a venv of its own (.build-bench is git-ignored).
	@$(VENV) .build-bench/venv /usr/bin/python3 "import picklescan" picklescan==1.0.5

# Speed targets live here, not in timed tests. Results: docs/benchmarks.md. Exits 1, after every section has run, when
# the start-up budget (Tests/Bench/startup.sh: --version ≤ 1.5 ms, exec -- /bin/true ≤ 1.5× bubblewrap) is missed.
bench: deps build bench-deps
	bash Tests/Bench/run.sh

# libFuzzer + ASan over every parser, FUZZ_SECONDS each; fails when one crashes, hangs or runs out of memory.
# Separate scratch path: the sanitizer flags must not reach the normal build. Details: docs/fuzzing.md.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS ?= pickle zip safetensors numpy gguf onnx json format signature manifest
FUZZ_SWIFTFLAGS := -Xswiftc -DAIRLOCK_LIBFUZZER -Xswiftc -sanitize=fuzzer,address \
	-Xswiftc -enable-experimental-feature -Xswiftc Extern
fuzz: deps
	@mkdir -p .build-fuzz/logs
	@echo "fuzz: building airlock-fuzz with libFuzzer and ASan (log: .build-fuzz/logs/build.log)"
	@$(SWIFT) build -c release --scratch-path .build-fuzz --product airlock-fuzz $(FUZZ_SWIFTFLAGS) \
	  >.build-fuzz/logs/build.log 2>&1 || { grep -v "Cannot export local symbol" .build-fuzz/logs/build.log; exit 1; }
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash Tests/Fuzz/run.sh $(FUZZ_TARGETS)

# Installation (docs/install.md): FHS paths under PREFIX, everything below DESTDIR. Each directory can be overridden
# (BINDIR=…). systemd reads units, sysusers.d and tmpfiles.d entries under /usr/lib and /usr/local/lib; with any other
# PREFIX they are installed under it all the same, and linked by hand (docs/install.md). /etc is written only with PREFIX
# /usr or /usr/local: the intake's policy, when there is none.
override PREFIX := $(patsubst %/,%,$(PREFIX))
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/airlock
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/airlock
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
SYSTEMD_UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
ifeq ($(PREFIX),/usr)
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
else
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
endif
ifneq ($(filter /usr /usr/local,$(PREFIX)),)
SYSCONFDIR ?= /etc
else
SYSCONFDIR ?=
endif
INSTALL_VARS = DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' BINDIR='$(BINDIR)' DATADIR='$(DATADIR)' MANDIR='$(MANDIR)' \
	DOCDIR='$(DOCDIR)' BASHCOMPDIR='$(BASHCOMPDIR)' ZSHCOMPDIR='$(ZSHCOMPDIR)' FISHCOMPDIR='$(FISHCOMPDIR)' \
	SYSTEMD_UNITDIR='$(SYSTEMD_UNITDIR)' SYSUSERSDIR='$(SYSUSERSDIR)' TMPFILESDIR='$(TMPFILESDIR)' \
	SYSCONFDIR='$(SYSCONFDIR)' CONFIG='$(CONFIG)' PYTHON='$(PYTHON)'

# Copies what `make build` made; builds nothing (it stops, naming `make build`, when a binary is missing). Records
# every file in $(DATADIR)/install-manifest for `make uninstall`.
install:
	@$(INSTALL_VARS) bash packaging/install.sh

# The old name of `install` (which built first); kept for scripts.
install-files: install

# Removes exactly what `make install` with the same DESTDIR and PREFIX recorded, and the directories it created.
uninstall:
	@$(INSTALL_VARS) bash packaging/uninstall.sh

# .build-pkg/airlock_VERSION_ARCH.deb and airlock-dbgsym_VERSION_ARCH.deb, from `make install DESTDIR=… PREFIX=/usr`
# of the release build: stripped binaries, debug symbols in the -dbgsym package (docs/install.md).
deb:
	@CONFIG='$(CONFIG)' PYTHON='$(PYTHON)' bash packaging/deb.sh

clean:
	rm -rf .build .build-pkg
