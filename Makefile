# edgefmnist: `make demo` runs the whole pipeline on the real data, `make test` runs the tests.
# Both create .venv first (PyTorch CPU build pinned and installed before the project).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Users elsewhere may want the CPU wheel index: make setup TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
DEMO_DIR ?= runs/demo

.PHONY: setup test test-fast demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(TORCH_INDEX)
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $@

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

demo: setup
	$(BIN)/edgefmnist data
	$(BIN)/edgefmnist train --arch mlp --recipe best --out $(DEMO_DIR)/mlp.pt
	$(BIN)/edgefmnist export $(DEMO_DIR)/mlp.pt --quantize static
	$(BIN)/edgefmnist verify $(DEMO_DIR)/mlp.int8.onnx --checkpoint $(DEMO_DIR)/mlp.pt
	$(BIN)/edgefmnist verify $(DEMO_DIR)/mlp.onnx
	$(BIN)/edgefmnist infer --model $(DEMO_DIR)/mlp.int8.onnx --sample 0:5
	$(BIN)/edgefmnist evaluate $(DEMO_DIR)/mlp.int8.onnx --plot $(DEMO_DIR)/confusion.png

clean:
	rm -rf $(VENV) runs .pytest_cache
