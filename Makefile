# The two commands of the README: `make demo` and `make test`.  Everything else is their set-up.
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_OUT ?= runs/demo
DEMO_EPOCHS ?= 12

.PHONY: demo test install clean bench

# What .venv/.installed records: the torch asked for.  Another (make demo TORCH=...), or a .venv that lost its
# Python, torch or charlm, installs again.
WANTED := $(strip $(TORCH) $(TORCH_INDEX))
ifneq ($(strip $(shell cat $(VENV)/.installed 2>/dev/null)),$(WANTED))
.PHONY: $(VENV)/.installed
else ifneq ($(shell $(PY) -c "import importlib.util as u; print(all(u.find_spec(m) for m in ('torch', 'charlm')))" 2>/dev/null),True)
.PHONY: $(VENV)/.installed
endif

$(VENV)/.installed: pyproject.toml
	@rm -f $@  # (an install that fails half-way leaves no record of the torch asked for: the next make installs again)
	@# a .venv whose python runs is kept, whichever Python made it; one whose python does not (gone) is made anew
	@if ! $(PY) -c "" 2>/dev/null; then \
	  $(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 10))" 2>/dev/null || { echo "make: charlm needs Python 3.10 or later, and PYTHON=$(PYTHON) is $$($(PYTHON) --version 2>&1 | head -n 1); give another: make demo PYTHON=python3.12" >&2; exit 1; }; \
	  echo "$(PYTHON) -m venv --clear $(VENV)"; $(PYTHON) -m venv --clear $(VENV) || exit 1; \
	fi
	@$(PY) -c "import sys; sys.exit(sys.version_info < (3, 10))" || { echo "make: $(VENV) holds Python $$($(PY) -c 'import platform; print(platform.python_version())'), and charlm needs 3.10 or later: make clean, then make demo PYTHON=python3.12" >&2; exit 1; }
	$(PIP) install -q --upgrade pip
	@# torch first, pinned, so that no resolver pulls another, multi-GB torch (override: make demo TORCH=torch;
	@# PyTorch's CPU-only wheels: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu)
	$(PIP) install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
	$(PIP) install -q -e ".[test]"
	@echo "$(WANTED)" > $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/charlm train --preset jaychou --epochs $(DEMO_EPOCHS) --out $(DEMO_OUT) --overwrite
	@echo
	@echo "== 分开 =="
	$(VENV)/bin/charlm generate $(DEMO_OUT) --prefix 分开 --lines 4 --temperature 0.8 --seed 1
	@echo "== 不分开 =="
	$(VENV)/bin/charlm generate $(DEMO_OUT) --prefix 不分开 --lines 4 --temperature 0.8 --seed 2

test: install
	$(PY) -m pytest

bench: install
	$(PY) bench/seed_speed.py

clean:  # the venv, the demo's run and build files; other runs under runs/ are kept
	rm -rf $(VENV) $(DEMO_OUT) build dist *.egg-info src/*.egg-info
