# Two commands a newcomer needs; each sets everything up itself on a fresh machine.
#   make demo   set up .venv, then run the main job on the embedded data (no flags, no network)
#   make test   set up .venv, then lint and run the tests
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test setup clean

setup: $(STAMP)

# torch is pinned to 2.13.0 (a local CPU wheel on our machines; a bare `torch` would pull CUDA).
# torchvision 0.28.0 is torch 2.13.0's partner release; --no-deps keeps pip from replacing torch.
$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps torchvision==0.28.0
	$(PY) -m pip install -q -e ".[dev,vision]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m crisp_sim.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) build *.egg-info
