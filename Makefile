# Two commands do everything on a fresh clone:  `make demo`  and  `make test`.
# A Makefile (not a bare script) because the venv is a real prerequisite with a stamp:
# it is rebuilt only when pyproject.toml changes, so repeated runs start in seconds.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
# The CPU wheel of torch 2.13.0 lies on this machine's disk; pinning it here keeps the install
# to seconds. pyproject.toml asks only for a range, so a GPU user's pip still takes a CUDA build.
TORCH   ?= torch==2.13.0
WORK    := .gdl-work
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/$(WORK)/prefect-home

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	# compat editable mode puts the project root on sys.path. The default (an import hook) loses
	# to Dask workers' own `storage` spill folder, which they put on sys.path first.
	$(BIN)/pip install -q -e ".[test]" --config-settings editable_mode=compat
	touch $@

# This machine sets PYTHONDONTWRITEBYTECODE=1, so Python never wrote the project's compiled
# modules and every `gdl` process compiled them again (≈ 60 ms of its ≈ 0.55 s of imports). pip
# compiles an installed package; this editable install's modules are compiled here, again for
# files that changed (Python reads a cached module only while its source is unchanged).
SOURCES := $(shell find storage gdl_data pipelines flows bench -name '*.py')
$(WORK)/.compiled: $(SOURCES) | $(VENV)/.installed
	mkdir -p $(WORK)
	$(BIN)/python -m compileall -q storage gdl_data pipelines flows bench
	touch $@

# Prefect creates its home folder but not the folders above it.
$(WORK)/prefect-home:
	mkdir -p $@

demo: $(VENV)/.installed $(WORK)/.compiled $(WORK)/prefect-home
	$(BIN)/gdl demo --workdir $(WORK)/demo

test: $(VENV)/.installed $(WORK)/.compiled $(WORK)/prefect-home
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# MosaicML streaming, a peer in bench.loader, lives in a folder of its own (bench/loader_mosaic.py
# says why: its only torchvision here is a CUDA build, and it pins numpy<2.2).
$(WORK)/mosaic-site/.installed: bench/loader_mosaic.py $(VENV)/.bench-installed
	$(BIN)/python -m bench.loader_mosaic
	touch $@

# The peers the benchmarks compare against (LitData, WebDataset, moto, ...): pyproject's bench extra.
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[test,bench]" "$(TORCH)" --config-settings editable_mode=compat
	touch $@

bench: $(VENV)/.bench-installed $(WORK)/.compiled $(WORK)/prefect-home $(WORK)/mosaic-site/.installed
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(WORK)
