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

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch first, pinned, so that no resolver pulls another, multi-GB torch (override: make demo TORCH=torch;
	@# PyTorch's CPU-only wheels: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu)
	$(PIP) install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
	$(PIP) install -q -e ".[test]"
	@touch $@

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

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
