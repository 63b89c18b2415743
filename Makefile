# One-command setup, build, tests and demo on a fresh machine. `make test` and `make demo` create
# the virtual environment, install torch and the tools, and build the extension when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1
DEV_DEPS := ninja pybind11 numpy scipy matplotlib tqdm pyyaml pytest expecttest scikit-learn torchdiffeq==0.2.5
# torchode: the benchmark's third column. --no-deps: its torchtyping pin wants typeguard 2.x only.
BENCH_DEPS := torchode==1.0.1 torchtyping==0.1.5 typeguard==2.13.3
export MAX_JOBS ?= 2
# Build machines have no GPU but do compile the CUDA kernels; target Hopper (H200) unless told.
export TORCH_CUDA_ARCH_LIST ?= 9.0

.PHONY: setup build test demo bench clean

$(VENV)/.setup-done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q $(DEV_DEPS)
	$(PY) -m pip install -q --no-deps $(BENCH_DEPS)
	ANODE_SKIP_EXT=1 $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

setup: $(VENV)/.setup-done

# Incremental (ninja tracks headers); a no-op when nothing changed.
build: setup
	$(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m pytest -q tests

demo: build
	$(PY) -m anode_native demo --out demo_out

bench: build
	$(PY) bench/run_all.py

clean:
	rm -rf build anode_native/*.so *.egg-info
