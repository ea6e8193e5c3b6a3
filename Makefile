# The two commands of the quick start: `make console` and `make test`.
# Each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: console run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

console: $(STAMP)  ## chat with the bot against the embedded local Lark (no credentials)
	$(BIN)/larkbot console

run: $(STAMP)  ## run the daemon against real Lark (needs APP_ID and APP_SECRET)
	$(BIN)/larkbot run

test: $(STAMP)  ## the whole test suite, lint included
	$(BIN)/ruff check larkbot tests bench
	$(BIN)/python -m pytest

bench: $(STAMP)  ## larkbot vs the official SDK's bot pattern on the local Lark
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build dist
