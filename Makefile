# Two entry points (see README):  make demo   and   make test
# Both create the environments they need first. Every pip call uses constraints.txt, which pins torch to
# the 2.13.0 wheel; letting pip choose torch would pull several GB of CUDA packages.

PYTHON    ?= python3
VENV      ?= .venv
MACE_VENV ?= .venv-mace
PIP_FLAGS ?= -q --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test test-main test-mace env env-mace bench clean

env: $(VENV)/.installed
env-mace: $(MACE_VENV)/.installed

# main environment: core library + the offline teachers (CHGNet, SevenNet) + test tools
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -c constraints.txt torch==2.13.0
	$(VENV)/bin/pip install $(PIP_FLAGS) -c constraints.txt -e '.[chgnet,sevenn,workflow,dev]'
	touch $@

# MACE environment: mace-torch pins e3nn==0.4.4, which sevenn (e3nn>=0.5) cannot share
$(MACE_VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(MACE_VENV)
	$(MACE_VENV)/bin/pip install $(PIP_FLAGS) -c constraints.txt torch==2.13.0
	$(MACE_VENV)/bin/pip install $(PIP_FLAGS) -c constraints.txt -e '.[mace,dev]'
	touch $@

demo: env
	$(VENV)/bin/python -m hessdistill.demo --out results/demo

test: test-main test-mace

test-main: env
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

test-mace: env-mace
	$(MACE_VENV)/bin/python -m pytest -q -ra -m mace $(PYTEST_ARGS) tests/test_teacher_mace.py

bench: env
	$(VENV)/bin/python bench/hessian_throughput.py

clean:
	rm -rf $(VENV) $(MACE_VENV) results/demo
