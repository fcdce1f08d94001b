# The two commands of the README: `make demo` (install + default experiment) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Where no GPU is present, torch's CPU build goes in first: a bare `torch` requirement would pull a
# multi-GB CUDA build. Override for another build, e.g. make install TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url <your CPU wheel index>".
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
EXTRAS ?= dev,zoo,baselines,sweep,lexicons

.PHONY: install demo test test-fast test-slurm clean-cache

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" 2>/dev/null; then \
		$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(PIP_TORCH_ARGS); fi
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	# Snorkel's label model, an aggregator baseline (aggregator=snorkel): without its deps, which pin
	# tensorboard and nothing its LabelModel imports
	$(PY) -m pip install --quiet --no-deps snorkel==0.10.0 munkres==3.0.0
	touch $@

demo: install
	$(VENV)/bin/w2s

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not integration and not slurm"

# Real jobs on a throwaway one-node SLURM cluster (needs root; installs slurm-wlm and munge when
# missing). The cluster is stopped whatever the tests do; its logs stay in /tmp/w2s-slurm.
test-slurm: install
	@env=$$(tests/slurm/start_cluster.sh) || { tests/slurm/stop_cluster.sh; exit 1; }; eval "$$env"; \
	rc=0; $(VENV)/bin/pytest -q -m slurm tests/test_slurm.py || rc=$$?; \
	tests/slurm/stop_cluster.sh; exit $$rc

clean-cache:
	rm -rf runs/.cache
