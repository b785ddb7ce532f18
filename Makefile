# oid-tsd: Open Images Challenge 2019 detection with TSD, one make target per stage.
# Every variable defaults to the bundled mini dataset, so each target runs out of the box.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install
install: $(STAMP) ## create .venv with torch, mmcv (full build with ops), mmdet and the project
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "setuptools>=77,<81" wheel
	$(PY) -m pip install -q torch==2.13.0
	MMCV_WITH_OPS=1 $(PY) -m pip install --no-build-isolation mmcv==2.1.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@
