# The two commands of the README. Each one sets up .venv by itself on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints.txt
# torch goes in first and alone: with it in place, nothing later can pull a CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) $(TORCH)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[all]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/coffea-ad demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

benchmark: $(VENV)/.installed
	$(BIN)/python benchmarks/generate_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
