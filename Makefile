# netplane: two commands on a fresh Debian 12 machine, as root.
#   make demo   bring up a 3-host lab and show it working
#   make test   the whole test suite
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PYTEST_ARGS ?=

.PHONY: install demo demo-down test unit lint bench

install:
	@bash scripts/install.sh

demo: install
	@bash scripts/demo.sh

demo-down:
	@$(VENV)/bin/netplane lab down --name demo

test: install
	@bash scripts/test.sh $(PYTEST_ARGS)

unit: install
	@$(VENV)/bin/python -m pytest -q tests/unit

lint: install
	@$(VENV)/bin/ruff check netplane orchestrator stats tests bench
	@$(VENV)/bin/mypy netplane orchestrator stats
