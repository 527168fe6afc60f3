# ratatosk-twilio: every target installs what it needs into .venv first.
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: help  ## list the targets
help:
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) +## /  make \1\t/'

.PHONY: install  ## create .venv and install the package with its dev tools (and redis-server)
install: $(STAMP) redis-server

# The Redis adapters' tests start Debian's redis-server themselves (adr/0017); as root
# on a machine without it, install it (apt-get update first only if the install fails).
# RUNLEVEL=1 keeps the package from starting its own service on port 6379.
.PHONY: redis-server  ## install redis-server for the tests when it is missing (as root)
redis-server:
	@if command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing redis-server (Debian's package) for the Redis tests"; \
		export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1; \
		apt-get install -y -q redis-server >/dev/null 2>&1 \
			|| { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; } \
			|| echo "could not install redis-server: the Redis tests will fail"; \
	else \
		echo "redis-server is missing: the Redis tests will fail until you install it" \
			"(apt-get install redis-server, or brew install redis)"; \
	fi

.PHONY: test  ## the CI gate: lint, typecheck, layer contracts, then every test
test: lint typecheck imports pytest

.PHONY: lint  ## ruff check and format check (changes nothing)
lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

.PHONY: format  ## fix what ruff can fix
format: $(STAMP)
	$(BIN)/ruff check --fix src tests $(wildcard bench)
	$(BIN)/ruff format src tests $(wildcard bench)

.PHONY: typecheck  ## mypy --strict over the package
typecheck: $(STAMP)
	$(BIN)/mypy --strict src/ratatosk

.PHONY: imports  ## import-linter: the hexagonal layer contracts
imports: $(STAMP)
	$(BIN)/lint-imports

.PHONY: pytest  ## the whole test suite
pytest: $(STAMP) redis-server
	$(BIN)/pytest -q

.PHONY: unit  ## pure tests only
unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

.PHONY: contract  ## the one suite run against FakeTwilio and the HTTP adapter + emulator
contract: $(STAMP)
	$(BIN)/pytest -q tests/contract

.PHONY: integration  ## real servers on loopback
integration: $(STAMP) redis-server
	$(BIN)/pytest -q tests/integration

.PHONY: run  ## the demo: emulator + webhook server on loopback, documented messages end to end
run: $(STAMP)
	$(BIN)/ratatosk demo

.PHONY: emulator  ## a Twilio emulator on 127.0.0.1:4010
emulator: $(STAMP)
	$(BIN)/ratatosk emulator --port 4010

# matplotlib (the chart) and uvloop (the second loop measured) only here, never for make test.
.PHONY: bench  ## benchmarks against what users write instead, with a chart (never part of test)
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench,speed]'
	$(PY) bench/run.py

.PHONY: scale  ## the send queue with real workers: 20,000 sends, one killed (never part of test)
scale: $(STAMP) redis-server
	$(PY) bench/scale.py && $(PY) bench/scale_webhooks.py

.PHONY: soak  ## the long resilience figures (never part of test)
soak: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest -q -m slow -p no:cacheprovider tests

# Each Python the package claims (pyproject's classifiers) gets a venv of its own in
# .venvs/, built from python3.X on PATH or else pyenv's newest 3.X; a missing one is
# skipped with a message. Never part of make test: three installs are slow.
PYTHONS := 3.11 3.12 3.13
PYENV_VERSIONS := $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions

.PHONY: test-pythons  ## mypy, unit, ports and contract tests on each of Python 3.11-3.13 found
test-pythons: redis-server
	@failed=; missing=; tested=; \
	for v in $(PYTHONS); do \
		py=; \
		for cand in $$(command -v python$$v) \
			$$(ls -d $(PYENV_VERSIONS)/$$v.*/bin/python$$v 2>/dev/null | sort -rV); do \
			if "$$cand" -c 'import sys; assert sys.version.startswith("'$$v'.")' 2>/dev/null; \
			then py=$$cand; break; fi; \
		done; \
		if [ -z "$$py" ]; then \
			echo "test-pythons: no python$$v on PATH or in $(PYENV_VERSIONS): skipped"; \
			missing="$$missing $$v"; continue; \
		fi; \
		venv=.venvs/py$$v; tested="$$tested $$v"; \
		echo "test-pythons: Python $$v ($$py) in $$venv"; \
		if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
			"$$py" -m venv $$venv && $$venv/bin/python -m pip install --quiet --upgrade pip \
			&& $$venv/bin/python -m pip install --quiet -e '.[dev]' && touch $$venv/.installed \
			|| { failed="$$failed $$v(install)"; continue; }; \
		fi; \
		$$venv/bin/mypy --strict --python-version $$v --cache-dir $$venv/.mypy_cache src/ratatosk \
			|| failed="$$failed $$v(mypy)"; \
		$$venv/bin/pytest -q -p no:cacheprovider tests/unit tests/ports tests/contract \
			|| failed="$$failed $$v(pytest)"; \
	done; \
	if [ -n "$$missing" ]; then echo "test-pythons: not tested (missing):$$missing"; fi; \
	if [ -z "$$tested" ]; then echo "test-pythons: no Python found: nothing tested"; exit 1; fi; \
	if [ -n "$$failed" ]; then echo "test-pythons: FAILED on:$$failed"; exit 1; fi; \
	echo "test-pythons: passed on$$tested"

.PHONY: clean  ## remove the venv and caches
clean:
	rm -rf $(VENV) .venvs .mypy_cache .pytest_cache .ruff_cache .hypothesis bench/out
