# Two entry points (see README):  make demo   and   make test
# Both create the environments they need first. Every pip call uses constraints.txt, which pins torch to
# the 2.13.0 wheel; letting pip choose torch would pull several GB of CUDA packages.

PYTHON    ?= python3
VENV      ?= .venv
MACE_VENV ?= .venv-mace
PIP_FLAGS ?= -q --disable-pip-version-check
PYTEST_ARGS ?=
# SLURM=1: bring up a single-node Slurm (Debian slurm-wlm + munge, root only) so tests/test_slurm.py runs the
# workflow through the Slurm profile; without it that test is skipped.
SLURM ?= 0

.PHONY: demo hessian-demo test lint test-main test-mace env env-mace bench gpu-check clean slurm-up slurm-down

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

# the main job: the workflow on the embedded default (config.yaml), all cores, into results/
demo: env
	$(VENV)/bin/snakemake -c all --show-failed-logs
	@echo "tables and figures: results/report/summary.md"

# the Hessian engine alone: CHGNet full Hessians of 12 structures, checked (about 20 s)
hessian-demo: env
	$(VENV)/bin/python -m hessdistill.jobs.demo --out results/demo

test: lint test-main test-mace

# ruff (settings in pyproject.toml): lint and formatting of the whole tree; `ruff check --fix` and `ruff format`
# repair most of what it reports (.pre-commit-config.yaml runs the same before each commit)
lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-main: env
	@if [ "$(SLURM)" = "1" ]; then bash .ci/slurm-up.sh; fi
	$(VENV)/bin/python -m pytest -q -ra --durations=30 $(PYTEST_ARGS)

test-mace: env-mace
	$(MACE_VENV)/bin/python -m pytest -q -ra -m mace $(PYTEST_ARGS) tests/test_teacher_mace.py tests/test_student_mace.py

bench: env
	$(VENV)/bin/python bench/hessian_throughput.py

# the GPU paths, PASS/FAIL per step (labels, PaiNN and GemNet-dT Hessian training, resume on the GPU and of a GPU
# checkpoint on the CPU, forces GPU vs CPU, deterministic mode, speed, the student compiled for the GPU and batched MD on it, the ci-tiny workflow with use_gpu: true);
# needs a CUDA build of torch in $(VENV) (see README, "GPUs")
gpu-check: env
	$(VENV)/bin/python bench/gpu_check.py $(GPU_CHECK_ARGS)

slurm-up:
	bash .ci/slurm-up.sh

slurm-down:
	bash .ci/slurm-up.sh --down

clean:
	rm -rf $(VENV) $(MACE_VENV) results/demo
