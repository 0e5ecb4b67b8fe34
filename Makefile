# edgefmnist: `make demo` runs the whole pipeline on the real data, `make test` runs the tests.
# Both create .venv first (PyTorch CPU build pinned and installed before the project).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Users elsewhere may want the CPU wheel index: make setup TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
DEMO_DIR ?= runs/demo
MODELS_DIR ?= models
FUZZ_SECONDS ?= 210
# The shipped file names come from the contract module (evaluated only by the targets that use them).
SHIPPED = $(addprefix $(MODELS_DIR)/,$(shell $(BIN)/python -m edgefmnist.contract))

.PHONY: setup lint typecheck train-dry-run test test-fast demo models bench arm64-smoke fuzz serve load-test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(TORCH_INDEX)
	$(BIN)/pip install --quiet -e '.[train,serve,dev]'
	touch $@

# ruff (lint and format) and mypy, configured in pyproject.toml; CI runs both before the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy on the installed layout (export/, runtime/, models/ mapped into edgefmnist.*): scripts/typecheck.py.
typecheck: setup
	$(BIN)/python scripts/typecheck.py

# Every architecture with every recipe, one batch of each phase (seconds each; writes nothing).
train-dry-run: setup
	for arch in mlp cnn; do for recipe in tutorial best photo; do \
		$(BIN)/edgefmnist train --arch $$arch --recipe $$recipe --dry-run || exit 1; done; done

test: setup
	$(BIN)/pytest

# The tests not marked slow, on two worker processes (pytest-xdist).
test-fast: setup
	$(BIN)/pytest -m "not slow" -n 2

demo: setup
	$(BIN)/edgefmnist data --download
	$(BIN)/edgefmnist train --arch mlp --recipe best --out $(DEMO_DIR)/mlp.pt
	$(BIN)/edgefmnist export $(DEMO_DIR)/mlp.pt --quantize static
	$(BIN)/edgefmnist verify $(DEMO_DIR)/mlp.int8.onnx --checkpoint $(DEMO_DIR)/mlp.pt
	$(BIN)/edgefmnist verify $(DEMO_DIR)/mlp.onnx
	$(BIN)/edgefmnist infer --model $(DEMO_DIR)/mlp.int8.onnx --sample 0:5
	$(BIN)/edgefmnist evaluate $(DEMO_DIR)/mlp.int8.onnx --plot $(DEMO_DIR)/confusion.png

# Every file in models/ from scratch on the real data: train -> export + int8 -> validate -> bench -> card.
models: setup
	$(BIN)/edgefmnist data --download
	$(BIN)/edgefmnist train --arch mlp --recipe best --out $(MODELS_DIR)/mlp.pt
	$(BIN)/edgefmnist export $(MODELS_DIR)/mlp.pt --quantize static
	OMP_NUM_THREADS=1 $(BIN)/edgefmnist train --arch cnn --recipe photo --out $(MODELS_DIR)/cnn.pt  # one thread: training is then repeatable (same CPU and library versions)
	$(BIN)/edgefmnist export $(MODELS_DIR)/cnn.pt --quantize static
	$(BIN)/edgefmnist bench $(SHIPPED) $(REFERENCES) --json > $(MODELS_DIR)/bench.json.partial
	mv $(MODELS_DIR)/bench.json.partial $(MODELS_DIR)/bench.json
	$(BIN)/python -m edgefmnist.model_card $(MODELS_DIR) --bench $(MODELS_DIR)/bench.json

# The performance table of docs/performance.md: every shipped model, edgefmnist beside plain onnxruntime and PyTorch,
# the int8 models beside the previous release's files (benchmarks/), and infer's pictures/s.
REFERENCES := $(addprefix --reference benchmarks/,mlp.int8.previous.onnx cnn.int8.previous.onnx)
bench: setup
	$(BIN)/edgefmnist bench --markdown --photos $(REFERENCES)

# The runtime on emulated arm64 (a Pi 4's Cortex-A72): shipped models, same predictions as here.
arm64-smoke: setup
	PYTHON=$(BIN)/python bash scripts/arm64-smoke.sh

# Random and mutated bytes into the image loader, the IDX parser and the model loader,
# FUZZ_SECONDS each (3 x 210 s: over ten minutes); prints how many inputs each target took.
fuzz: setup
	EDGEFMNIST_FUZZ_SECONDS=$(FUZZ_SECONDS) EDGEFMNIST_FUZZ_EXAMPLES=1000 $(BIN)/pytest tests/test_fuzz.py -s -q

# The classification service on the shipped model, on localhost (see docs/service.md).
SERVE_ARGS ?=
serve: setup
	$(BIN)/edgefmnist serve $(SERVE_ARGS)

# The service under wrk (apt-get install wrk): 32 clients for 60 s, against 32 infer process loops, 256 clients.
load-test: setup
	$(BIN)/python scripts/load-test.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
