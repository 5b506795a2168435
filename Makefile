# The test command: a fresh clone needs only Python 3.11+ and a package index.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCK := requirements/dev.lock
TOOLS_VENV ?= .venv-tools
UPGRADE_DIR ?= var/upgrade-check

.PHONY: test lock-check lint types unit venv demo bench clean infra-lint lock upgrade-check console-js system-packages

test: lock-check $(STAMP) lint types infra-lint unit

# A lock that was not remade after pyproject.toml or requirements/*.in changed fails here.
lock-check:
	$(PYTHON) requirements/lock.py check

# Exactly the locked bytes, then the project itself without touching the index; the venv is made
# anew so nothing from an older lock lingers, and checked against the lock afterwards.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) requirements/lock.py check
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --no-index -e .
	$(BIN)/python requirements/lock.py installed $(LOCK)
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# What the console's browser tests run in Node (axe-core, oidc-provider), installed exactly as
# tests/console/js/package-lock.json pins them, integrity hashes checked, no install scripts run.
CONSOLE_JS := tests/console/js
CONSOLE_JS_STAMP := $(CONSOLE_JS)/node_modules/.installed

# Debian's chromium, fonts and Node for those tests (requirements/system.sh; installs only what is
# missing, with apt-get as root or through sudo).
system-packages:
	bash requirements/system.sh

$(CONSOLE_JS_STAMP): $(CONSOLE_JS)/package-lock.json | system-packages
	npm ci --prefix $(CONSOLE_JS) --ignore-scripts --no-audit --no-fund
	touch $@

console-js: $(CONSOLE_JS_STAMP)

# pytest exits 5 when it collected nothing; that is a failure here, as any non-zero code is.
unit: $(STAMP) $(CONSOLE_JS_STAMP) system-packages
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/coexarchive demo --keep

bench: $(STAMP)
	$(BIN)/python bench/seal_verify.py

# Remake requirements/*.lock after changing pyproject.toml or requirements/*.in (existing pins are
# kept wherever the new inputs allow). uv itself comes from requirements/tools.lock.
lock: $(TOOLS_VENV)/.installed
	PATH="$(abspath $(TOOLS_VENV))/bin:$$PATH" $(TOOLS_VENV)/bin/python requirements/lock.py compile

$(TOOLS_VENV)/.installed: requirements/tools.lock
	$(PYTHON) -m venv --clear $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/tools.lock
	touch $@

# Try the newest releases the inputs allow, on purpose: resolve them into $(UPGRADE_DIR), install
# them in a scratch venv there and run lint, types and the suite. The committed locks are untouched;
# if it passes, `make lock` with the upgraded files copied over is the deliberate upgrade.
upgrade-check: $(TOOLS_VENV)/.installed
	rm -rf $(UPGRADE_DIR)
	PATH="$(abspath $(TOOLS_VENV))/bin:$$PATH" $(TOOLS_VENV)/bin/python requirements/lock.py \
		compile --upgrade --out $(UPGRADE_DIR)
	-diff <(grep -E '^[a-z0-9].*==' $(LOCK)) <(grep -E '^[a-z0-9].*==' $(UPGRADE_DIR)/dev.lock)
	$(MAKE) test VENV=$(UPGRADE_DIR)/venv LOCK=$(UPGRADE_DIR)/dev.lock

clean:
	rm -rf $(VENV) .venv-infra $(TOOLS_VENV) var build *.egg-info src/*.egg-info

# Static checks of infra/ (cfn-lint, checkov); included last so `make` alone still means `make test`.
include infra/infra.mk
