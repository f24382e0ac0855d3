# The commands of the README: `make demo`, `make ui` and `make test`.
# Both install what they need into .venv on first use (python3 >= 3.11 and make are all they need).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo ui screenshot chromium services lint types unit bench bench-triggers bench-emulator clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "python3 >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The Spot training view's browser test needs Debian's chromium and its driver: installed here
# when missing (root and apt-get); otherwise that test is skipped and says why.
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing chromium and chromium-driver (apt-get) for the browser test..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null) \
	  || echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "chromium is missing (installing it needs root and apt-get): the browser test will be skipped"; fi

# The CeleryExecutor deployment cell needs Debian's redis-server (the Celery broker) and postgresql
# (the metadata DB): installed here when missing (root and apt-get); otherwise that cell is
# skipped and says why. The cell starts its own servers on free ports, as an unprivileged user.
services:
	@if command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing redis-server and postgresql (apt-get) for the CeleryExecutor cell..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    redis-server postgresql >/dev/null) \
	  || echo "redis-server or postgresql could not be installed: the CeleryExecutor cell will be skipped"; \
	else echo "redis-server or postgresql is missing (installing them needs root and apt-get): the CeleryExecutor cell will be skipped"; fi

unit: $(STAMP) chromium services
	$(BIN)/pytest

test: lint types unit

demo: $(STAMP)
	$(BIN)/python -m airflow_spot_provider.demo

# Airflow (api-server, scheduler, triggerer, dag-processor) with the embedded backend and the
# example DAGs, on the home of `make demo`; prints the Spot training view's URL. SPOT_UI_PORT=8080.
ui: $(STAMP)
	$(BIN)/python -m airflow_spot_provider.standalone

# The README's screenshot, taken by the browser test from a real run.
screenshot: $(STAMP) chromium
	mkdir -p docs
	SPOT_UI_SCREENSHOT=docs/spot-training-view.png $(BIN)/pytest tests/ui -n 0 -q

# Both benchmarks (about 45 min on 2 cores): triggers side by side (README "Measured"), then the backend.
bench: bench-triggers bench-emulator

# N = 100, 300, 1000 triggers of each kind, median of 3 runs; BENCH_ARGS="--n 100 --runs 1" for a quick one.
bench-triggers: $(STAMP)
	$(BIN)/python benchmarks/bench_triggers.py $(BENCH_ARGS)

bench-emulator: $(STAMP)
	$(BIN)/python benchmarks/bench_emulator.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
