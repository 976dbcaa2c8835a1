# Everything a fresh machine needs: `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Real Node client libraries the tests send events with, from the npm registry.
JS       := tests/js
JS_STAMP := $(JS)/node_modules/.installed
# The browser analytics.js runs in for its test: Debian's Chromium; promtool, which checks
# /metrics; and PostgreSQL, whose server the outbox tests start in a temporary folder
# (tests/support/postgres.py): all from Debian's packages, with apt, as root or through sudo.
CHROMIUM := /usr/bin/chromium
PROMTOOL := /usr/bin/promtool
INITDB   := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
SYSTEM   := $(VENV)/.system-packages
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-other-pythons fuzz validate bench map-sample clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The HTTP shim on http://127.0.0.1:8080 in dry-run mode (README, "Quick start").
run: $(STAMP)
	$(PY) -m engine validate mappings
	$(PY) -m engine serve --config docs/dev-config.yaml $(if $(PORT),--port $(PORT))

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js and npm (see README)"; exit 1; }
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

# One apt run for all; RUNLEVEL=1 keeps the packages from starting their servers (the
# tests start a PostgreSQL server of their own, on a free port).
$(SYSTEM): Makefile | $(STAMP)
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(PROMTOOL) ] || [ -z "$(INITDB)" ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq \
			--no-install-recommends chromium prometheus postgresql >/dev/null; \
	fi
	touch $(SYSTEM)

# Types first (mypy --strict on engine/, see pyproject.toml), then every test, on every
# core (most tests wait on servers and processes; `-n 0` runs them in one process); then
# the tests again under each other supported Python this machine has.
test: $(STAMP) $(JS_STAMP) $(SYSTEM)
	$(PY) -m mypy
	$(PY) -m pytest -n auto --dist worksteal
	$(MAKE) --no-print-directory test-other-pythons

# Python 3.12 and 3.13, where this machine has them (on PATH, or installed by pyenv), each
# in a venv of its own (.venv-3.12, .venv-3.13): the mapping language and the engine's
# plain-Python parts (tests/mapping, tests/test_*.py: normalization, intake, configuration,
# serialization), where a language change would show. Delivery, HTTP and the tests that
# start processes, a browser or Node (which wait on servers and timers: most of the suite's
# time) run once, above, so that the whole stays well under ten minutes.
OTHER_PYTHONS = $(shell for v in 3.12 3.13; do \
	for p in $$(command -v python$$v) $$HOME/.pyenv/versions/$$v.*/bin/python$$v; do \
	[ -x "$$p" ] && "$$p" -c "" 2>/dev/null && echo "$$v:$$p" && break; done; done)

test-other-pythons: $(JS_STAMP) $(SYSTEM)
	@for entry in $(OTHER_PYTHONS); do \
		v=$${entry%%:*}; python=$${entry#*:}; venv=.venv-$$v; \
		if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
			$$python -m venv $$venv && $$venv/bin/python -m pip install --quiet --upgrade pip && \
			$$venv/bin/python -m pip install --quiet -e '.[test]' && touch $$venv/.installed || exit 1; \
		fi; \
		echo "== the tests under Python $$v"; \
		$$venv/bin/python -m pytest -q -n auto --dist worksteal tests/mapping tests/test_*.py \
			-m "not processes" || exit 1; \
	done

# The fuzz suites at length: 5,000 cases a test instead of the 60 `make test` runs (the
# ones that load mapping or configuration files, a share of those): the shim's endpoints
# (tests/http/test_fuzz.py), events through every shipped mapping and mapping files through
# check and validate (tests/mapping/test_fuzz_mapping.py), `engine map` (tests/cli/), and
# configuration files (tests/test_fuzz_config.py).
FUZZ_TESTS := tests/http/test_fuzz.py tests/mapping/test_fuzz_mapping.py tests/cli/test_fuzz_cli.py \
	tests/test_fuzz_config.py
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -n auto --dist worksteal $(FUZZ_TESTS)

map-sample: $(STAMP)
	$(PY) -m engine map --destination calixa --setting api_key=demo-key \
		--setting endpoint=https://calixa.example/segment docs/sample-events.ndjson

validate: $(STAMP)
	$(PY) -m engine validate mappings

bench: $(STAMP)
	$(PY) benchmarks/bench_mapping.py
	$(PY) benchmarks/bench_trees.py
	$(PY) benchmarks/bench_matching.py
	$(PY) benchmarks/bench_shim.py
	$(PY) benchmarks/bench_delivery.py
	$(PY) benchmarks/bench_delivery.py --scale
	$(PY) benchmarks/bench_http_clients.py
	$(PY) benchmarks/bench_hostile.py context
	$(PY) benchmarks/bench_hostile.py casing
	$(PY) benchmarks/bench_hostile.py webhook

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache var $(JS)/node_modules
