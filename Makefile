# Verbs of the project. `make book` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= cpu
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
# the book executes the chapters in _toc.yml; nbval tests every notebook (a chapter whose results are not yet
# committed is tested on the smoke profile before it joins the book)
# (its root page, the outcomes, last: it reads every chapter's result files, as the comparison does)
CHAPTERS := $(shell sed -n 's|^ *- file: book/||p' _toc.yml)
ROOT := $(shell sed -n 's|^root: book/||p' _toc.yml)
BOOK_NOTEBOOKS := $(foreach f,$(CHAPTERS) $(ROOT),$(wildcard notebooks/$(f).ipynb))
# nbval runs the book's chapters in the book's order (the comparison reads the chapters' result files), then the rest
NBVAL_NOTEBOOKS := $(BOOK_NOTEBOOKS) $(filter-out $(BOOK_NOTEBOOKS),$(NOTEBOOKS))
MATHJAX_VERSION := 3.2.2
MATHJAX := book/_static/mathjax/tex-chtml.js
SMOKE_DIR := .cache/nbval
# two cores: one thread each for faiss/OpenMP and torch
export OMP_NUM_THREADS ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: book test lint unit nbval browser notebooks data mathjax venv bench clean distclean

# the stamp names the checkout the environment was made for: a copied checkout (cp -r) rebuilds its own, since
# the copy's editable install would import the original's code
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(CURDIR))
.PHONY: $(STAMP)
endif
venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	@if [ -d $(VENV) ] && [ "$$(cat $@ 2>/dev/null)" != "$(CURDIR)" ]; then echo "$(VENV) was made for another checkout: rebuilding it here"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	echo "$(CURDIR)" > $@

## data: verify the Tiny-ImageNet source (local mirror or download) and build the cache once
data: $(STAMP)
	$(BIN)/python -m compat data prepare

## mathjax: a local copy of MathJax for offline math in the book (npm registry, integrity-checked by npm)
mathjax: $(MATHJAX)
$(MATHJAX):
	rm -rf .cache/npm book/_static/mathjax && mkdir -p .cache/npm book/_static
	cd .cache/npm && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null
	tar -xzf .cache/npm/mathjax-$(MATHJAX_VERSION).tgz -C .cache/npm
	cp -r .cache/npm/package/es5 book/_static/mathjax.tmp && mv book/_static/mathjax.tmp book/_static/mathjax

## notebooks: execute the book's source notebooks with papermill into book/ (PROFILE=cpu by default)
notebooks: $(STAMP) data
	for nb in $(BOOK_NOTEBOOKS); do $(BIN)/python -m compat book execute $$nb --profile $(PROFILE); done

## book: the HTML book from the committed results (warnings are errors)
book: notebooks mathjax
	$(BIN)/jupyter-book build . --warningiserror --keep-going --quiet
	@echo "Book built: open file://$(CURDIR)/_build/html/index.html"

## test: lint, unit tests, every notebook under nbval with the smoke profile, the book build, and the built pages in a browser
test: lint unit nbval book browser

## lint: ruff's rules and its formatter over the package, the tests and the data scripts (both in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check src tests data_scripts
	$(BIN)/ruff format --check src tests data_scripts

# pytest exits 5 when it collects nothing: say so plainly instead of a bare failure
unit: $(STAMP)
	$(BIN)/python -m pytest tests -q --color=no -p no:cacheprovider --ignore=tests/browser || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no unit tests: tests/ is empty or broken"; exit $$rc; }

## browser: every page of the built book in headless Chromium (Debian's chromium); screenshots in _build/screenshots
browser: $(STAMP)
	@[ -x /usr/bin/chromium ] || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python -m pytest tests/browser -q --color=no -p no:cacheprovider

nbval: $(STAMP)
	rm -rf $(SMOKE_DIR) && mkdir -p $(SMOKE_DIR)
	@[ -n "$(NOTEBOOKS)" ] || { echo "no notebooks in notebooks/: nothing for nbval"; exit 0; }
	for nb in $(NBVAL_NOTEBOOKS); do $(BIN)/python -m compat book execute $$nb --profile smoke --prepare-only --output $(SMOKE_DIR)/$$(basename $$nb); done
	COMPAT_TRAIN=allow COMPAT_CACHE=$(CURDIR)/$(SMOKE_DIR)/cache COMPAT_RESULTS=$(CURDIR)/$(SMOKE_DIR)/results \
	  $(BIN)/python -m pytest --nbval-lax --nbval-current-env --color=no -q -p no:cacheprovider $(addprefix $(SMOKE_DIR)/,$(notdir $(NBVAL_NOTEBOOKS)))

## bench: benchmark commands that print figures
bench: $(STAMP) data
	$(BIN)/python -m compat bench evaluate --out results/bench/evaluate.json
	$(BIN)/python -m compat bench gallery --out results/bench/gallery.json
	$(BIN)/python -m compat bench train --out results/bench/train.json
	$(BIN)/python -m compat bench profile --out results/bench/profile.json
	$(BIN)/python -m compat bench levers --out results/bench/levers.json
	$(BIN)/python -m compat bench upgrade fct --profile $(PROFILE)
	$(BIN)/python -m compat bench upgrade bict --profile $(PROFILE)
	$(BIN)/python -m compat bench backfill --profile $(PROFILE)

clean:
	rm -rf _build $(SMOKE_DIR) book/*.ipynb

distclean: clean
	rm -rf $(VENV) .cache book/_static/mathjax
