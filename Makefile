# `make demo` and `make test` each create .venv and install what they need: the test set-up
# includes the optional TRL extra (the integration and parity tests run against it) and the
# bench extra (matplotlib: the demo and the benchmarks plot), and the tensorboard and wandb extras
# (the tracker tests; about 15 s of install each).
# TORCH pins the CPU wheel that lies on the project's machines; elsewhere pass e.g. TORCH=torch.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench-speed clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test,trl,bench,tensorboard,wandb]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dralign demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# the suite without the multi-process, subprocess and end-to-end tests marked slow
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

bench-speed: $(STAMP)
	$(VENV)/bin/dralign bench speed --json outputs/bench-speed.json

clean:
	rm -rf $(VENV) build src/*.egg-info
