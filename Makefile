# The README's two commands, `make demo` and `make test`, are all the set-up a fresh machine needs:
# each creates .venv and installs edgebnn into it when pyproject.toml is newer than the last install.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgebnn-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint sshd clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The main job on the embedded default data set (digits); later issues grow it into the whole flow.
demo: $(STAMP)
	$(BIN)/edgebnn --version
	$(BIN)/edgebnn data digits --input-size 32

# The SSH tests start a real OpenSSH server on 127.0.0.1; install Debian's when it is missing.
sshd:
	@if [ ! -x /usr/sbin/sshd ] && ! command -v sshd >/dev/null 2>&1; then \
	  echo "installing Debian's openssh-server for the SSH tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssh-server >/dev/null; \
	fi

test: $(STAMP) sshd lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check edgebnn tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
