# The test command: a fresh clone needs only Python 3.11+ and a package index.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint types unit venv demo bench clean infra-lint

test: $(STAMP) lint types infra-lint unit

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected nothing; that is a failure here, as any non-zero code is.
unit: $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/coexarchive demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/seal_verify.py

clean:
	rm -rf $(VENV) .venv-infra var build *.egg-info src/*.egg-info

# Static checks of infra/ (cfn-lint, checkov); included last so `make` alone still means `make test`.
include infra/infra.mk
