# netplane: two commands on a fresh Debian 12 machine, as root.
#   make demo   bring up a 3-host lab and show it working
#   make test   the whole test suite
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PYTEST_ARGS ?=

.PHONY: install demo demo-down test unit test-unified lint lint-tools bench

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

# the kernel and lab tests in a cgroup v2-only view of this hybrid machine, the long selection
# (`make test` runs the short one): tests/kernel/test_unified_view.py
test-unified: install
	@NETPLANE_UNIFIED_VIEW=full $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/kernel/test_unified_view.py

# vagrant, ruby, shellcheck (apt) and actionlint (venv), only for lint: scripts/lint-tools.sh
lint-tools: install
	@bash scripts/lint-tools.sh

lint: install lint-tools
	@$(VENV)/bin/ruff check netplane orchestrator stats tests bench
	@$(VENV)/bin/mypy netplane orchestrator stats
	@$(VENV)/bin/actionlint .github/workflows/*.yml
	@ruby -c vagrant/Vagrantfile >/dev/null
	@cd vagrant && vagrant validate --ignore-provider >/dev/null
