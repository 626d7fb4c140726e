# Everything installs itself: a fresh machine needs only Python 3.11+.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test test-unit chat lint deps clean

run: $(BIN)/.synced  ## the whole system on embedded defaults (sandbox, SQLite, embedded broker)
	$(BIN)/zavhoz up

test: $(BIN)/.synced  ## every test; integration/e2e need PostgreSQL and Redis on localhost
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(BIN)/.synced
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

chat: $(BIN)/.synced  ## talk to the bot of `make run` as user 1001 (ID=... for another; not AS: make predefines it)
	$(BIN)/zavhoz chat --as $(or $(ID),1001)

lint: $(BIN)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

deps: $(BIN)/.synced

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(BIN)/.synced: $(UV) pyproject.toml uv.lock Makefile
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

clean:
	rm -rf $(VENV) $(TOOLS) var
