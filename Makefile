# The two commands of the README:
#   make run    set up a virtual environment and the dataset, then run the seed experiment
#   make test   set up everything the tests need, then run the fast tier and the end-to-end tier
# and `make bench` prints measured speed figures as JSON (benchmarks/bench.py).
# The CPU build of torch is installed before the project so that pip never pulls a CUDA build.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Optional: an index to take torch from (e.g. PyTorch's CPU-only wheel index); empty = pip's default.
TORCH_INDEX ?=
FASHION_DIR ?= /usr/share/datasets/fashion-mnist
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup data browser run test test-fast test-e2e lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST from Debian when we can install packages; otherwise `vae-anomaly run` downloads it.
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST: $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "could not install dataset-fashion-mnist; vae-anomaly will download Fashion-MNIST"; \
	else \
		echo "Fashion-MNIST not in $(FASHION_DIR); vae-anomaly will download it to ~/.cache/vae-anomaly"; \
	fi

# Headless Chromium for the report's browser test (skipped with a reason where it cannot be installed).
browser:
	@if command -v chromium >/dev/null; then echo "chromium: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium; the browser test will be skipped"; \
	else echo "chromium not installed; the browser test will be skipped"; fi

run: setup data
	$(BIN)/vae-anomaly run

test-fast: setup
	$(BIN)/python -m pytest -q

test-e2e: setup data browser
	$(BIN)/python -m pytest -q -m "e2e or browser"

test: test-fast test-e2e

# Speed against this machine's own GEMM throughput, and a whole default run's wall time and peak RSS.
bench: setup data
	$(BIN)/python benchmarks/bench.py

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
