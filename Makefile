# Set-up and everyday commands. PYTHON is the interpreter of the environment to install into
# (a venv or conda env you activated, or the machine's own Python).
PYTHON ?= python3
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-fast test-slurm slurm-up slurm-down lint train docs help

help:
	@echo "make install   install torch (pinned build), biqa and its dev tools"
	@echo "make test      run the test suite (its Slurm tests skip without a cluster: make slurm-up)"
	@echo "make slurm-up  start a one-node Slurm cluster on this machine (as root; make slurm-down stops it)"
	@echo "make test-slurm  the tests that submit to that cluster"
	@echo "make train     train + test the default model on the embedded synthetic dataset"
	@echo "make lint      ruff"
	@echo "make docs      build the documentation site into site/ (strict: a broken link fails)"

install:
	$(PYTHON) -m pip install $(TORCH_PIN)
	$(PYTHON) -m pip install -e '.[dev]'

# The Slurm tests run after the rest, one at a time: they share the cluster's two CPUs, and one pre-empts.
test:
	$(PYTHON) -m pytest -q -n 2 --dist loadfile -m "not slurm" tests
	$(PYTHON) -m pytest -q -rs -m slurm tests/slurm

test-slurm:
	$(PYTHON) -m pytest -q -rs -m slurm tests/slurm

slurm-up:
	bash scripts/slurm_cluster.sh up

slurm-down:
	bash scripts/slurm_cluster.sh down

test-fast:
	$(PYTHON) -m pytest -q -x -m "not slow and not slurm" tests

lint:
	$(PYTHON) -m ruff check src tests benchmarks

train:
	biqa-train

docs:
	$(PYTHON) -m mkdocs build --strict
