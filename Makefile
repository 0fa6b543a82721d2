# The two commands a newcomer runs: `make dev` (the working platform) and `make test`.
SHELL := /bin/bash
# Python 3.12 is what the z2jh 4.4.0 hub image runs; fall back to any python3 >= 3.11.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3))
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dashboard docs-screenshots dev dev-netns dev-down test lint unit integration integration-netns venv platform-up platform-down schema clean images chart-files chart-deps prepare bench

$(STAMP): pyproject.toml requirements/hub-image.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/hub-image.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check hub_config tests scripts benchmarks images/common/datalake_lab
	$(VENV)/bin/ruff format --check hub_config tests scripts benchmarks images/common/datalake_lab
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

integration: $(STAMP)
	$(PY) -m pytest tests/integration -q

# The platform tests inside a network namespace of our own (as root; after `make prepare`: the
# registries are unreachable inside): pods get 10.x IPs, so Services get Endpoints and Dask
# clusters run. See scripts/localplatform/netns.py.
integration-netns: $(STAMP)
	PYTHONPATH=scripts $(PY) -m localplatform.netns -- $(PY) -m pytest tests/integration -q

prepare: $(STAMP)
	PYTHONPATH=scripts $(PY) -m localplatform.prepare

# Unit tests first, on this machine's network (some resolve packages from the registries on a cold
# cache); then the platform's tests inside a network namespace of our own, where pods get private
# addresses, Services get Endpoints and Dask clusters run (scripts/localplatform/netns.py).
test: lint prepare
	$(PY) -m pytest tests/unit -q
	PYTHONPATH=scripts $(PY) -m localplatform.netns -- $(PY) -m pytest tests/integration tests/e2e -q

# Re-take the user guide's screenshots (docs/images/) from the browser tests.
docs-screenshots: prepare
	DATALAKE_DOCS_SCREENSHOTS=1 $(PY) -m pytest tests/e2e -q

schema: $(STAMP)
	$(PY) -m hub_config schema --chart chart/values.schema.json

platform-up: $(STAMP)
	PYTHONPATH=scripts $(PY) -m localplatform up

platform-down: $(STAMP)
	PYTHONPATH=scripts $(PY) -m localplatform down

# Until Ctrl-C or `make dev-down`; records its PID in .platform/pids/dev.pid. With Dask Gateway; as
# root it runs in a network namespace of its own (as dev-netns below), where Dask clusters run;
# otherwise on loopback, saying so.
dev: $(STAMP)
	PYTHONPATH=scripts $(PY) -m localplatform dev --netns auto

# `make dev` inside a network namespace of its own (root; Dask clusters run there): a process left
# outside forwards this machine's 127.0.0.1 ports of the hub, IdP, Rucio and Prometheus into it.
dev-netns: $(STAMP)
	PYTHONPATH=scripts $(PY) -m localplatform.netns --forward $${DATALAKE_DEV_PORT:-8000} -- $(PY) -m localplatform dev

# `localplatform down` first signals a running `make dev` and waits (bounded) until it has exited.
dev-down: platform-down

chart-files: $(STAMP)
	$(PY) scripts/chart_files.py

# The Grafana dashboard the chart ships (chart/files/dashboards/), from scripts/grafana_dashboard.py.
dashboard: $(STAMP)
	$(PY) scripts/grafana_dashboard.py

# The charts pinned by chart/Chart.lock (z2jh; dask-gateway, optional), into chart/charts/ (git-ignored), from their repositories.
HELM ?= helm
chart-deps:
	$(HELM) dependency build chart

# Benchmarks against a plain baseline on the local platform (not part of `make test`); see benchmarks/README.md.
bench: prepare
	$(VENV)/bin/pip install -q -r benchmarks/requirements.txt
	PYTHONPATH=scripts:. $(PY) -m localplatform.netns -- $(PY) -m benchmarks

images:
	$(MAKE) -C images all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
