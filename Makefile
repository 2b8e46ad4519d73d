# Two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= data
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export DAGSTER_HOME := $(abspath $(WORKDIR))/dagster
export MEDTRINITY_WORKDIR := $(abspath $(WORKDIR))
export MEDTRINITY_SOURCES ?= $(abspath examples/sources.yaml)
export MEDTRINITY_LANDING ?= $(abspath $(WORKDIR))/landing

.PHONY: venv demo test lint chromium postgres ui ui-check bench-normalize bench-rois bench-retrieval bench-generate bench-sensor bench-plan bench-faithfulness bench-experts clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(FIND_LINKS) torch==2.13.0
	$(PY) -m pip install -q $(FIND_LINKS) -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medtrinity run --workdir $(WORKDIR) --sources examples/sources.yaml

test: $(STAMP) lint chromium postgres
	$(PY) -m pytest -q

# ruff (style, imports, bugbear) and import-linter (medtrinity_core never imports Dagster; its layers;
# no import cycles): configured in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The review page's test opens it in headless Chromium, installed from Debian packages when missing.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }; }

# The Postgres instance's tests start a PostgreSQL server of their own (initdb as an unprivileged user),
# from the Debian packages, installed when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql; }; }

ui: $(STAMP)
	$(VENV)/bin/medtrinity init --workdir $(WORKDIR)
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# Opens the asset graph, one source's partitions and a ROI preview in headless Chromium (materializing that
# source first if the work folder has none of it); screenshots and page DOMs go to $(WORKDIR)/ui-check.
UI_SOURCE ?= drive
ui-check: $(STAMP) chromium
	$(PY) tools/ui_check.py --workdir $(WORKDIR) --sources $(MEDTRINITY_SOURCES) --source $(UI_SOURCE) --out $(WORKDIR)/ui-check

clean:
	rm -rf $(WORKDIR)

bench-normalize: $(STAMP)
	$(PY) bench/bench_normalize.py

bench-rois: $(STAMP)
	$(PY) bench/bench_rois.py

bench-retrieval: $(STAMP)
	$(PY) bench/bench_retrieval.py

bench-generate: $(STAMP)
	$(PY) bench/bench_generate.py

bench-sensor: $(STAMP)
	$(PY) bench/bench_sensor.py

bench-plan: $(STAMP)
	$(PY) bench/bench_plan.py

bench-faithfulness: $(STAMP)
	$(PY) bench/bench_faithfulness.py

bench-experts: $(STAMP)
	$(PY) bench/bench_experts.py
