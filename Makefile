# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install edgenas into it first, pinning the tested CPU build of torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint benchmarks-doc

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,ray]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/edgenas demo

# The LiteRT latency backend's optional extra (~1.2 GB), so its tests run rather than skip.
$(VENV)/.litert: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e ".[litert]"
	touch $@

test: $(VENV)/.installed $(VENV)/.litert
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

# docs/benchmarks.md is assembled from the per-topic pages in docs/bench/ (edit those).
BENCH_PAGES := nb201 mnas_strategies supernet gradient_search latency data threads darts darts_nb201 cifar_search reliability
benchmarks-doc:
	{ head -3 docs/benchmarks.md; for page in $(BENCH_PAGES); do echo; sed 's/^#/##/' docs/bench/$$page.md; done; } > docs/benchmarks.md.new
	mv docs/benchmarks.md.new docs/benchmarks.md
