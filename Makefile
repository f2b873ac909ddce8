# The README's two commands, each setting itself up on a fresh machine:
#   make demo    the main job (a venv in .venv, then scripts/demo.sh)
#   make test    the test suite (a venv in .venv, then pytest without slow and gpu tests)
# Other targets: make help.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
MARKERS ?= not slow and not gpu
PYTEST_ARGS ?=
STAMP := $(VENV)/.flash_vstream_ros.installed
# Inputs of the pip build: a change to any of them reinstalls (Python sources do not need it:
# tests and the demo run from the repository root, whose flash_vstream_ros/ comes first).
PKG_INPUTS := pyproject.toml CMakeLists.txt package.xml cmake/ros_wheels.cmake \
	$(wildcard msg/*.msg srv/*.srv action/*.action launch/*.py config/*.yaml config/*.xml \
	config/*/*.yaml)

# Offline models, loopback-only DDS, steady CPU threads (the caller may override them).
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export OMP_NUM_THREADS ?= 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: help venv install-dev demo test lint colcon-smoke gen default-yaml readme \
	uninstall-check ci clean bench bench-quick

help:
	@echo 'make demo            set up .venv if needed, run the demo (scripts/demo.sh)'
	@echo '                     (the real-parts demo model; MODEL_FAMILY=tiny: the random one)'
	@echo 'make test            set up .venv if needed, run pytest -m "$(MARKERS)"'
	@echo 'make venv            create .venv and pip install .[test] (torch first)'
	@echo 'make install-dev     fast rebuild + reinstall of the package into $$VENV (no deps)'
	@echo 'make lint            ruff check, ruff format --check, mypy, vermin (Python 3.10)'
	@echo 'make colcon-smoke    colcon build of this package in /tmp + import check'
	@echo 'make gen             regenerate config/default.yaml and the README tables'
	@echo 'make uninstall-check pip uninstall leaves only empty folders; reinstall works'
	@echo 'make bench           benchmarks 1-4 here (~11-15 min, 2 cores): bench_out/REPORT.md + PNGs'
	@echo 'make bench-quick     the same, small sizes (a smoke run, about 1 minute)'
	@echo 'make ci              what CI runs (.ci/run)'
	@echo 'make reliability     robustness suite table (RELIABILITY_ARGS=--long: ~10 min)'

$(STAMP): $(PKG_INPUTS)
	scripts/setup_venv.sh $(VENV)
	@touch $@

venv: $(STAMP)

# A quick reinstall into an existing venv that has the build dependencies (the shared one):
# no build isolation, a kept CMake build folder (about 5 s after the first build).
install-dev:
	$(PY) -m pip install -q --no-build-isolation --no-deps \
		--config-settings=build-dir=build/pip-$(notdir $(abspath $(VENV))) .
	@touch $(STAMP)

demo: $(STAMP)
	scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest -m "$(MARKERS)" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/vermin --target=3.10- --violations --no-tips --eval-annotations \
		flash_vstream_ros test scripts launch benchmarks reliability
	$(PY) scripts/check_package_xml.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out bench_out

bench-quick: $(STAMP)
	$(PY) benchmarks/run_all.py --quick --out bench_out/quick

colcon-smoke: $(STAMP)
	scripts/colcon_smoke.sh $(VENV)

gen default-yaml readme: $(STAMP)
	$(PY) scripts/gen_default_yaml.py
	$(PY) scripts/gen_readme_tables.py

uninstall-check: $(STAMP)
	scripts/check_uninstall.sh $(VENV)

ci:
	bash .ci/run

clean:
	rm -rf build install log .pytest_cache .mypy_cache .ruff_cache

# The robustness suite: bad input, load, faults, fast-forward long run; prints one table.
.PHONY: reliability
RELIABILITY_ARGS ?=
reliability: $(STAMP)
	$(PY) -m reliability.run $(RELIABILITY_ARGS)
