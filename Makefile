# Set-up and everyday commands. PYTHON is the interpreter of the environment to install into
# (a venv or conda env you activated, or the machine's own Python).
PYTHON ?= python3
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-fast lint train docs help

help:
	@echo "make install   install torch (pinned build), biqa and its dev tools"
	@echo "make test      run the test suite"
	@echo "make train     train + test the default model on the embedded synthetic dataset"
	@echo "make lint      ruff"
	@echo "make docs      build the documentation site into site/ (strict: a broken link fails)"

install:
	$(PYTHON) -m pip install $(TORCH_PIN)
	$(PYTHON) -m pip install -e '.[dev,offline-backbones]'

test:
	$(PYTHON) -m pytest -q -n 2 --dist loadfile tests

test-fast:
	$(PYTHON) -m pytest -q -x -m "not slow" tests

lint:
	$(PYTHON) -m ruff check src tests benchmarks

train:
	biqa-train

docs:
	$(PYTHON) -m mkdocs build --strict
