# The two commands of the README: `make up` runs the demo city, `make test` runs every check.
# Both create .venv on first use (Python >= 3.11 as $(PYTHON)); nothing else is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint clean

up: $(STAMP)
	$(BIN)/gridhub up --demo

test: $(STAMP) lint
	@command -v mosquitto_pub >/dev/null && { command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto; } || \
	  { echo "The integration tests run a real Mosquitto: apt-get install mosquitto mosquitto-clients"; exit 1; }
	@command -v chromium >/dev/null || \
	  { echo "The console's browser test drives Debian's Chromium: apt-get install chromium"; exit 1; }
	$(BIN)/pytest --cov=domain --cov=streams.engine --cov=streams.rules --cov-report=term --cov-fail-under=90

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "GridHub needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .gridhub .pytest_cache .mypy_cache .ruff_cache .coverage
