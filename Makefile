# The two commands a newcomer needs; each sets everything up itself on a fresh machine.
#   make demo   set up .venv from the lock file, then run the main job on the embedded data
#   make test   set up .venv from the lock file, then lint and run the tests
# More: make demo-check (the demo prints the committed table, digit for digit), make docs,
# make docs-serve, make results (regenerate every published table and figure), make
# results-quick (the fast part), make lock (re-resolve requirements.lock).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo demo-check test docs docs-serve results results-quick lock clean

setup: $(STAMP)

# Every dependency at the exact version and hash of requirements.lock (torch 2.13.0, the CPU
# wheel; a bare `pip install torch` would pull CUDA builds), then this package without deps.
$(STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m crisp_sim.demo

# The demo from scratch, its table compared with the published one (CI runs this).
demo-check: $(STAMP)
	rm -rf runs/demo-check
	TQDM_DISABLE=1 $(PY) -m crisp_sim.demo --out runs/demo-check --check docs/results/demo.md

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n auto

# The site: mkdocs with the Material theme; API and CLI pages are generated at build time.
docs: $(STAMP)
	@$(PY) -c "import mkdocs, material, mkdocstrings, mkdocs_gen_files" 2>/dev/null || \
	  { echo "error: the docs need the 'docs' extra: pip install -e '.[docs]' (make setup installs it)" >&2; exit 2; }
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	@$(PY) -c "import mkdocs, material, mkdocstrings, mkdocs_gen_files" 2>/dev/null || \
	  { echo "error: the docs need the 'docs' extra: pip install -e '.[docs]' (make setup installs it)" >&2; exit 2; }
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs serve

# Regenerate the published results under docs/results/ (each file names its command, commit,
# date, machine and wall time). results-quick: the simulator's tables, minutes on 2 cores;
# results: everything, peers and accuracy runs included (docs/reference/results-provenance
# lists the times; Fashion-MNIST needs Debian's dataset-fashion-mnist package).
results-quick: $(STAMP)
	$(PY) benchmarks/sparse_gains.py --publish
	$(PY) benchmarks/mapping_gains.py --publish
	$(PY) benchmarks/sim_speed.py --publish
	$(PY) benchmarks/paper_figures.py --publish
	$(PY) benchmarks/fuzz.py --publish

results: results-quick
	TQDM_DISABLE=1 $(PY) -m crisp_sim.demo --out runs/demo-publish --publish
	$(PY) benchmarks/scalesim_crosscheck.py --publish
	$(PY) benchmarks/scalesim_crosscheck.py --full --arrays 128x128 --dataflows ws --publish
	$(PY) benchmarks/zigzag_crosscheck.py --publish
	$(PY) benchmarks/sweep_speed.py --workers 1,2 --mappings best,scalesim --publish
	$(PY) benchmarks/accuracy_density.py --epochs 3 --publish
	$(PY) benchmarks/recovery.py --publish
	$(PY) benchmarks/iso_accuracy.py --setting cpu --threads 2 --publish
	$(PY) benchmarks/iso_accuracy.py --setting cpu --threads 2 --no-distill --no-recalibrate --publish
	$(PY) benchmarks/iso_accuracy.py --setting fashion --threads 2 --publish
	$(PY) benchmarks/iso_accuracy.py --setting fashion --threads 2 --no-distill --no-recalibrate \
	  --publish
	$(PY) benchmarks/prune_round_time.py --model resnet18_cifar --data glyph100-hard \
	  --classes 10 --n-per-class 256 --device cpu --workers 0 --publish

# Re-resolve every dependency (pins in constraints.txt) into requirements.lock, with hashes.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --find-links /opt/wheels \
	  -c constraints.txt --custom-compile-command "make lock" -q -o requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info site
