# The two commands of the README: `make up` runs the platform, `make test` sets up and passes the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test lint unit bench clean stack-test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "medtune needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# torch first, with plain pip: it is taken from local disk where the machine has it.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	sh scripts/install-system.sh runtime
	$(BIN)/medtune up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	sh scripts/install-system.sh
	@sh scripts/install-browser.sh || echo "browser tests will skip: no Chromium could be installed"
	$(BIN)/pytest -p no:cacheprovider --durations=25

# The deployed mode end to end (tests/stack): needs a running Docker engine and debootstrap. The local
# base image and the wheelhouse are made once; later runs reuse them and Docker's layer cache.
stack-test: install
	sh scripts/local-base.sh
	PYTHON=$(BIN)/python sh scripts/wheelhouse.sh
	MEDTUNE_STACK=1 $(BIN)/pytest -p no:cacheprovider tests/stack -x -v --durations=0 --timeout=3600

unit: install
	$(BIN)/pytest tests/unit

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .medtune .pytest_cache .mypy_cache .ruff_cache
