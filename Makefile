# oid-tsd: Open Images Challenge 2019 detection with TSD, one target per stage.
# Every variable defaults to the bundled mini dataset, so each target runs out of the box.
#   make prepare -> make train -> make infer -> make ensemble -> make submission / make evaluate
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

DATA        ?= data/mini
WORK        ?= work
PREPARED    ?= $(WORK)/prepared
PREPARE_OPTS?=
COCO_SPLITS ?=
MODEL       ?= mini_tsd
CONFIG      ?= configs/$(MODEL).py
GPUS        ?= 1
RESUME      ?= 0
CFG_OPTIONS ?=
PARTITION   ?= gpu
CKPT        ?= $(shell cat $(WORK)/models/$(MODEL)/last_checkpoint 2>/dev/null)
SPLIT       ?= validation
IMAGES      ?= $(DATA)/$(SPLIT)
SHARD       ?= 0/1
INFER_OPTS  ?= --keep-variants
RECIPE      ?= configs/ensemble/mini.yaml
RECIPE_NAME := $(basename $(notdir $(RECIPE)))
JOBS        ?= 2
CLASSES     ?= $(DATA)/challenge-2019-classes-description-500.csv
HIERARCHY   ?= $(DATA)/challenge-2019-label500-hierarchy.json
VAL_BOXES   ?= $(DATA)/challenge-2019-validation-detection-bbox.csv
VAL_LABELS  ?= $(DATA)/challenge-2019-validation-detection-human-imagelabels.csv
TEST_IMAGES ?= $(DATA)/sample_submission.csv
SUBMISSION  ?= $(WORK)/submission/$(RECIPE_NAME).csv
PYTEST_ARGS ?=
DEMO_MODELS ?= mini_tsd mini_baseline

TRAIN_DATA  := --prepared-dir $(PREPARED) --img-root $(DATA)
ifeq ($(RESUME),1)
TRAIN_RESUME := --resume
endif
ifneq ($(strip $(CFG_OPTIONS)),)
TRAIN_CFG := --cfg-options $(CFG_OPTIONS)
endif

.PHONY: help install mini prepare train train-slurm infer ensemble submission evaluate demo test bench clean

help: ## list the targets and the variables they read
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "Variables: DATA=$(DATA) WORK=$(WORK) MODEL=$(MODEL) GPUS=$(GPUS) SPLIT=$(SPLIT) SHARD=$(SHARD) RECIPE=$(RECIPE)"

install: $(STAMP) ## create .venv: torch, mmcv (full build with ops), mmdet 3.3, the project
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "setuptools>=77,<81" wheel
	$(PY) -m pip install -q torch==2.13.0
	MMCV_WITH_OPS=1 $(PY) -m pip install --no-build-isolation mmcv==2.1.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

mini: $(STAMP) ## generate the bundled mini dataset into data/mini (deterministic)
	$(PY) -m data_prep.mini --out data/mini

# The mini dataset is generated on first use, with the COCO export its Mask R-CNN config trains on; a real DATA
# folder is used as it is (COCO_SPLITS=validation to export, say, the validation split).
ifeq ($(DATA),data/mini)
DATA_READY := data/mini/sample_submission.csv
COCO_SPLITS := train,validation
data/mini/sample_submission.csv: data_prep/mini.py | $(STAMP)
	$(PY) -m data_prep.mini --out data/mini
endif

prepare: $(STAMP) $(DATA_READY) ## DATA (official CSVs + hierarchy) -> WORK/prepared (Parquet, sampling index, COCO)
	$(PY) -m data_prep --data-dir $(DATA) --out-dir $(PREPARED) $(if $(COCO_SPLITS),--coco-splits $(COCO_SPLITS)) $(PREPARE_OPTS)

train: $(STAMP) ## train MODEL (GPUS=N uses torchrun; RESUME=1; CFG_OPTIONS='k=v ...')
ifeq ($(GPUS),1)
	$(PY) -m pipeline.train $(CONFIG) --work-dir $(WORK)/models/$(MODEL) $(TRAIN_DATA) $(TRAIN_RESUME) $(TRAIN_CFG)
else
	$(VENV)/bin/torchrun --nproc-per-node $(GPUS) -m pipeline.train $(CONFIG) --launcher pytorch \
		--work-dir $(WORK)/models/$(MODEL) $(TRAIN_DATA) $(TRAIN_RESUME) $(TRAIN_CFG)
endif

train-slurm: $(STAMP) ## train MODEL on Slurm (PARTITION, GPUS)
	PYTHON=$(PY) bash tools/slurm_train.sh $(PARTITION) $(MODEL) $(CONFIG) $(WORK)/models/$(MODEL) $(GPUS) $(TRAIN_DATA)

infer: $(STAMP) ## TTA predictions of MODEL (CKPT) on SPLIT, shard SHARD=k/N -> WORK/predictions
	@test -n "$(CKPT)" || { echo "no checkpoint for $(MODEL): run 'make train MODEL=$(MODEL)' or set CKPT=" >&2; exit 1; }
	$(PY) -m pipeline.infer $(CONFIG) $(CKPT) --split $(SPLIT) --images $(IMAGES) --shard $(SHARD) \
		--classes $(PREPARED)/classes.csv --out $(WORK)/predictions/$(MODEL)/$(SPLIT) $(INFER_OPTS)

ensemble: $(STAMP) ## fuse the predictions named by RECIPE on SPLIT -> WORK/ensemble
	$(PY) -m ensemble --recipe $(RECIPE) --split $(SPLIT) --work $(WORK) --jobs $(JOBS)

submission: $(STAMP) ## Kaggle CSV from the RECIPE's test predictions, validated
	$(PY) -m submit --predictions $(WORK)/ensemble/$(RECIPE_NAME)/test/predictions.parquet \
		--images $(TEST_IMAGES) --out $(SUBMISSION)
	$(PY) -m submit.validate $(SUBMISSION) --classes $(CLASSES) --images $(TEST_IMAGES)

evaluate: $(STAMP) ## official Challenge 2019 metric of the RECIPE's validation predictions
	$(PY) -m submit.score --submission $(WORK)/ensemble/$(RECIPE_NAME)/validation/predictions.parquet \
		--boxes $(VAL_BOXES) --labels $(VAL_LABELS) --hierarchy $(HIERARCHY) --classes $(CLASSES) \
		--per-class $(WORK)/eval/$(RECIPE_NAME)/per_class.csv --plot $(WORK)/eval/$(RECIPE_NAME)/per_class.png

demo: $(STAMP) $(DATA_READY) ## the whole pipeline on the mini dataset, ending in one results table
	$(MAKE) --no-print-directory prepare
	for m in $(DEMO_MODELS); do $(MAKE) --no-print-directory train MODEL=$$m || exit 1; done
	for m in $(DEMO_MODELS); do for s in validation test; do \
		$(MAKE) --no-print-directory infer MODEL=$$m SPLIT=$$s || exit 1; done; done
	for s in validation test; do $(MAKE) --no-print-directory ensemble SPLIT=$$s || exit 1; done
	$(MAKE) --no-print-directory submission
	$(MAKE) --no-print-directory evaluate
	$(PY) tools/demo_report.py --data $(DATA) --work $(WORK) --models $(DEMO_MODELS) --recipe $(RECIPE_NAME)

test: $(STAMP) ## the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## the benchmarks (tables; see README)
	$(PY) bench/wbf.py
	$(PY) bench/score.py
	$(PY) bench/tsd_head.py
	$(PY) bench/prepare.py

clean: ## remove generated data and work dirs (not .venv)
	rm -rf $(WORK) data/mini
