# One command for the demo search, one for the tests. Both create .venv and install
# everything they need, so they work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SLURM_STATE ?= /tmp/spline-nas-slurm

.PHONY: install demo test test-fast slurm-up slurm-down chromium bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# These two releases lie on this machine's disk; other versions download gigabytes.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[demo,test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/spline-nas run examples/digits.yaml --site local --dir experiments/digits-demo-$$(date +%Y%m%d-%H%M%S)

slurm-up:
	bash tests/slurm/start_cluster.sh $(SLURM_STATE)

slurm-down:
	bash tests/slurm/stop_cluster.sh $(SLURM_STATE)

# Headless Chromium renders the HTML report in the report tests.
chromium:
	bash tests/support/install_chromium.sh

test: install chromium slurm-up
	SPLINE_NAS_REQUIRE_SLURM=1 SPLINE_NAS_REQUIRE_CHROMIUM=1 $(PY) -m pytest -q; status=$$?; \
	bash tests/slurm/stop_cluster.sh $(SLURM_STATE); exit $$status

test-fast: install
	$(PY) -m pytest -q -m "not slow and not slurm"

bench: install
	$(PY) benchmarks/proposal_time.py
