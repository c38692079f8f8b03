# Two commands (see README):
#   make repro   install everything into .venv (first time: ~15 min, mmcv compiles) and
#                run `dvc repro` on the default smoke profile
#   make test    install if needed, then run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install install-check repro test test-all bench real-subset
install:
	VENV=$(VENV) bash scripts/install.sh

# the cold path, proven: temporary venv + wheel cache, no pip cache; builds mmcv (docs/install.md)
install-check:
	bash scripts/install.sh --no-cache

repro: install
	$(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m ""

# every step time and ratio in one run (docs/performance.md): ~40 min on 2 CPU cores, every row
# also compiled (edge by edge) and timed side by side with an eager copy
bench: install
	$(BIN)/python benchmarks/bench_search_step.py --compile --write
	$(BIN)/python benchmarks/bench_second_order.py --write
	$(BIN)/python benchmarks/bench_paper_profiles.py
	$(BIN)/python benchmarks/bench_listing.py

# the NAS-reproduction protocol on real images (docs/results.md): every method x 3 independent
# searches, each retrained once; needs the subset in data/cifar10-subset (docs/data.md)
REAL_SUBSET_RUNS ?= [direct_bnas,random,darts,darts_2nd,pcdarts,cpnas,dcpnas]
real-subset: install
	HARNESS_THREADS=2 $(BIN)/dvc exp run -S profile=real-subset -S 'seeds=[0,1,2]' \
	    -S 'search_runs=$(REAL_SUBSET_RUNS)' -S 'backbones=[dcpnas]' \
	    -S 'reference_backbones=[bireal_resnet18,reactnet_a]' \
	    -S 'deploy_backbones=[dcpnas,bireal_resnet18,reactnet_a]'
	$(BIN)/harness --profile real-subset report --runs runs/real-subset --out results/real-subset
