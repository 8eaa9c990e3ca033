# `make run` opens the console on the bundled sample model and data, `make test` runs the whole suite,
# `make test-fast` the quick tier (lint, then unit/ui/faults without ml/slow). All bootstrap .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test test-fast reliability lint bench sample clean-venv

venv: $(STAMP)

# The CPU build of torch goes in first when no torch is installed: a plain `torch`
# requirement would otherwise pull a multi-GB CUDA build. On a GPU box, install
# your CUDA torch into .venv first and this step leaves it alone.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Bytecode for the console's own modules: an editable install has none, and with
# PYTHONDONTWRITEBYTECODE set Python would recompile them at every start (30–80 ms).
# Incremental: only changed files are compiled again.
run: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 dpo_tui >/dev/null
	$(BIN)/dpo-tui

# Test workers: 2 by default (the CI box has 2 cores); `make test PYTEST_WORKERS=auto` uses every core.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

# Everything (ml, slow and e2e included), with the 25 slowest tests listed at the end.
test: $(STAMP)
	$(PYTEST) --durations=25

# The quick tier: no model is loaded and nothing trains; a test slower than 3 s fails (tests/conftest.py).
test-fast: $(STAMP)
	$(MAKE) lint
	$(PYTEST) --fast-tier -m "not ml and not slow" --durations=10 tests/unit tests/ui tests/faults

# Regenerate docs/reliability.md: the fault, bad-input, security and load suites record their outcomes
# (only when asked for, see tests/support/reliability.py), then the report script writes the document.
RELIABILITY_RESULTS := build/reliability-results.jsonl
reliability: $(STAMP)
	@mkdir -p build && rm -f $(RELIABILITY_RESULTS)
	$(PYTEST) --reliability-report=$(RELIABILITY_RESULTS) tests/faults tests/worker
	$(BIN)/python scripts/reliability_report.py $(RELIABILITY_RESULTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python scripts/gen_config_docs.py --check

bench: $(STAMP)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/data_lint.py
	$(BIN)/python bench/trainer_overhead.py
	$(BIN)/python bench/key_latency.py --rounds 1
	$(BIN)/python bench/eval_throughput.py
	$(BIN)/python bench/pairs_throughput.py

# Rebuild sample_data/ from scratch (seeded; a few minutes on 2 CPU cores).
sample: $(STAMP)
	$(BIN)/python scripts/build_sample_prefs.py
	$(BIN)/python scripts/build_sample_model.py
	$(BIN)/python scripts/build_sample_eval.py

clean-venv:
	rm -rf $(VENV)
