# The README's two commands, `make demo` and `make test`, are all the set-up a fresh machine needs:
# each creates .venv and installs edgebnn into it when pyproject.toml is newer than the last install.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgebnn-installed
PYTEST_ARGS ?=
# The suite runs on two worker processes, a test file each at a time (pytest-xdist): on 2 cores 17 min 39 s for 844 (d0610f7); 15 min 27 s for 703
# tests against 28 min 12 s for 681 in one process (README, Tests); each file's module fixtures are built once.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: install demo test lint sshd chromium arm64-tools torch-reference fashion-mnist clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The main job on the embedded default data set (digits): train a small variant of each family and its
# real-valued twin, convert each for arm64 with proof, profile the flatbuffers on this host, estimate them for
# ARM boards under QEMU when an aarch64 runner is at hand, write the report. `make demo DATASET=fashion-mnist`
# runs the same flow on Fashion-MNIST with the recipes' [fashion-mnist] tables (Debian's dataset-fashion-mnist,
# installed when missing; about 1.5 hours on 2 cores, bench/accuracy.py's runs).
DATASET     ?= digits
DEMO_DIR    ?= demo
DEMO_MODELS ?= bireal-18 reactnet-18 xnorpp-18-case4 sdbnn-resnet20
EDGEBNN     := $(BIN)/edgebnn

demo: $(STAMP) $(if $(filter fashion-mnist,$(DATASET)),fashion-mnist)
	@echo "== edgebnn demo: $(DEMO_MODELS) and their real-valued twins on $(DATASET), into $(DEMO_DIR)/"
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)/runs
	$(EDGEBNN) data $(DATASET)
	@set -e; for m in $(DEMO_MODELS); do \
	  echo "== $$m: train the binary model and its real-valued twin, convert both for arm64"; \
	  $(EDGEBNN) train $$m --dataset $(DATASET) --out $(DEMO_DIR)/runs/$$m; \
	  $(EDGEBNN) train $$m --dataset $(DATASET) --twin --out $(DEMO_DIR)/runs/$$m-real; \
	  $(EDGEBNN) convert $(DEMO_DIR)/runs/$$m --target arm64; \
	  $(EDGEBNN) convert $(DEMO_DIR)/runs/$$m-real --target arm64; \
	done
	@echo "== profile every flatbuffer on this host (LCE reference kernels: a functional check, not ARM64 latency)"
	$(EDGEBNN) profile $(DEMO_DIR)/runs/*/model-arm64.tflite --device local --threads 1,2 --db $(DEMO_DIR)/results.db
	@runner="$${LCE_RUNNER_AARCH64:-}"; \
	if [ -z "$$runner" ] && [ -f ../shared/lce/lce_benchmark_model_aarch64 ]; then runner=../shared/lce/lce_benchmark_model_aarch64; fi; \
	if [ -n "$$runner" ]; then \
	  echo "== estimate every flatbuffer for ARM boards: LCE's aarch64 kernels run under QEMU, instructions counted, calibrated on published figures (ESTIMATES, not measurements)"; \
	  $(EDGEBNN) profile $(DEMO_DIR)/runs/*/model-arm64.tflite --device qemu:aarch64 --runner "$$runner" --db $(DEMO_DIR)/results.db; \
	else \
	  echo "== no aarch64 runner: set LCE_RUNNER_AARCH64 to LCE's release asset lce_benchmark_model_aarch64 (github.com/larq/compute-engine/releases) for estimated Raspberry Pi 4B latency"; \
	fi
	$(EDGEBNN) report --db $(DEMO_DIR)/results.db --runs-dir $(DEMO_DIR)/runs --out $(DEMO_DIR)/report
	@echo "== done: open $(DEMO_DIR)/report/index.html"

# The SSH tests start a real OpenSSH server on 127.0.0.1; install Debian's when it is missing.
sshd:
	@if [ ! -x /usr/sbin/sshd ] && ! command -v sshd >/dev/null 2>&1; then \
	  echo "installing Debian's openssh-server for the SSH tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssh-server >/dev/null; \
	fi

# The aarch64 tests: Debian's qemu-user (dynamic qemu-aarch64, the emulated device and its instruction-counting
# plugins), qemu-user-static + binfmt-support (aarch64 programs run as if native, also inside a chroot) and
# debootstrap (the aarch64 Debian userland the SSH tests use as a board, built once into ~/.cache/edgebnn), gcc
# (compiles the instruction-counting plugin on first use).
ARM64_TOOLS := qemu-user qemu-user-static binfmt-support debootstrap gcc

arm64-tools:
	@missing=""; for p in $(ARM64_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing for the aarch64 tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The report's test renders index.html in a real browser (headless Chromium) and keeps the screenshot.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian's chromium for the report's screenshot test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# The import tests write checkpoints in the papers' layouts and compute reference outputs with real PyTorch:
# Debian's python3-torch, for the system Python only (edgebnn itself never imports torch).
torch-reference:
	@if ! /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then \
	  echo "installing Debian's python3-torch for the checkpoint import tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-torch >/dev/null; \
	fi

# Fashion-MNIST as four gzipped IDX files under /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist,
# about 30 MB): `make demo DATASET=fashion-mnist`, bench/accuracy.py and the test that reads the installed set.
fashion-mnist:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "installing Debian's dataset-fashion-mnist for the Fashion-MNIST demo, bench and test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	fi

test: $(STAMP) sshd arm64-tools chromium torch-reference fashion-mnist lint
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check edgebnn tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache $(DEMO_DIR)
