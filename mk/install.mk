# make install: the virtual environment. Every version lives in pyproject.toml; torch and mmcv go in first, by the
# requirement strings read from there (mmcv's build imports torch and compiles its ops against it).
PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PINNED       = $(shell $(PYTHON) tools/pinned.py $(1))

install: $(STAMP) ## create .venv: torch, mmcv (full build with ops), mmdet 3.3, the project
$(STAMP): pyproject.toml tools/pinned.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(foreach r,$(call PINNED,--build),"$(r)")
	$(PY) -m pip install -q "$(call PINNED,torch)"
	MMCV_WITH_OPS=1 $(PY) -m pip install --no-build-isolation "$(call PINNED,mmcv)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@
