# oid-tsd: Open Images Challenge 2019 detection with TSD, one target per stage.
#   make prepare DATA=DIR -> make train -> make infer -> make ensemble -> make submission / make evaluate
# DATA is named once, at `make prepare`: each dataset gets its own work folder WORK (work/<name of DATA>), prepare
# records the raw paths in WORK/prepared/sources.mk and marks WORK as the current one (work/CURRENT), and every
# later target reads both. A variable given on the command line always wins. Without any, the bundled mini dataset.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

WORK_ROOT   ?= work
ifneq ($(origin DATA),undefined)
WORK        ?= $(WORK_ROOT)/$(notdir $(patsubst %/,%,$(DATA)))
endif
WORK        ?= $(or $(shell cat $(WORK_ROOT)/CURRENT 2>/dev/null),$(WORK_ROOT)/mini)
PREPARED    ?= $(WORK)/prepared
-include $(PREPARED)/sources.mk
DATA        ?= data/mini
IMAGES_ROOT ?= $(DATA)
VAL_BOXES   ?= $(DATA)/challenge-2019-validation-detection-bbox.csv
VAL_LABELS  ?= $(DATA)/challenge-2019-validation-detection-human-imagelabels.csv
SAMPLE_SUBMISSION ?= $(DATA)/sample_submission.csv
CLASSES     ?= $(PREPARED)/classes.csv
HIERARCHY   ?= $(PREPARED)/hierarchy.json
REMEMBER    ?= 1
PREPARE_OPTS?=
COCO_SPLITS ?=

CONFIGS     ?= configs
MODEL       ?= mini_tsd
CONFIG      ?= $(CONFIGS)/$(MODEL).py
EXPERT      ?=
ADAPT_CLASSES ?= 0
# An expert (EXPERT=NAME) trains on the prepared class group WORK/prepared/experts/NAME, with its own class count,
# into WORK/models/MODEL-NAME, and predicts that group's MIDs.
ifneq ($(EXPERT),)
TRAIN_PREPARED := $(PREPARED)/experts/$(EXPERT)
RUN_NAME    := $(MODEL)-$(EXPERT)
ADAPT_CLASSES := 1
else
TRAIN_PREPARED := $(PREPARED)
RUN_NAME    := $(MODEL)
endif
MODEL_DIR   ?= $(WORK)/models/$(RUN_NAME)
GPUS        ?= 1
RESUME      ?= 0
CFG_OPTIONS ?=
PARTITION   ?= gpu
CKPT        ?= $(shell cat $(MODEL_DIR)/last_checkpoint 2>/dev/null)
SPLIT       ?= validation
IMAGES      ?= $(IMAGES_ROOT)/$(SPLIT)
PREDICTIONS ?= $(WORK)/predictions/$(RUN_NAME)/$(SPLIT)
SHARD       ?= 0/1
SHARDS      ?= 8
INFER_OPTS  ?= --keep-variants
ifeq ($(DATA),data/mini)
RECIPE      ?= configs/ensemble/mini.yaml
else
RECIPE      ?= configs/ensemble/challenge.yaml
endif
RECIPE_NAME := $(basename $(notdir $(RECIPE)))
JOBS        ?= 2
SUBMISSION  ?= $(WORK)/submission/$(RECIPE_NAME).csv
EVAL_DIR    ?= $(WORK)/eval/$(RECIPE_NAME)
PYTEST_ARGS ?=
DEMO_WORK   ?= $(WORK_ROOT)/demo
DEMO_MODELS ?= mini_tsd mini_baseline

TRAIN_DATA  := --prepared-dir $(TRAIN_PREPARED) --img-root $(IMAGES_ROOT) $(if $(filter 1,$(ADAPT_CLASSES)),--adapt-classes)
INFER_ARGS   = --split $(SPLIT) --images $(IMAGES) --classes $(TRAIN_PREPARED)/classes.csv $(INFER_OPTS)
ifeq ($(RESUME),1)
TRAIN_RESUME := --resume
endif
ifneq ($(strip $(CFG_OPTIONS)),)
TRAIN_CFG := --cfg-options $(CFG_OPTIONS)
endif

.PHONY: help install mini prepare train train-slurm infer infer-slurm ensemble submission evaluate demo test bench clean

help: ## list the targets, what each reads and writes, and the current dataset
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "Current dataset: DATA=$(DATA) WORK=$(WORK) (PREPARED=$(PREPARED))"
	@echo "Defaults: MODEL=$(MODEL) SPLIT=$(SPLIT) GPUS=$(GPUS) SHARD=$(SHARD) RECIPE=$(RECIPE)"

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

prepare: $(STAMP) $(DATA_READY) ## reads DATA (CSVs, hierarchy) -> writes WORK/prepared (Parquet, sources.mk)
	$(PY) -m data_prep --data-dir $(DATA) --out-dir $(PREPARED) $(if $(COCO_SPLITS),--coco-splits $(COCO_SPLITS)) \
		$(PREPARE_OPTS)
ifeq ($(REMEMBER),1)
	mkdir -p $(WORK_ROOT) && echo "$(WORK)" > $(WORK_ROOT)/CURRENT
endif

train: $(STAMP) ## reads WORK/prepared + images -> writes WORK/models/MODEL (GPUS=N torchrun; RESUME=1; EXPERT=NAME)
ifeq ($(GPUS),1)
	$(PY) -m pipeline.train $(CONFIG) --work-dir $(MODEL_DIR) $(TRAIN_DATA) $(TRAIN_RESUME) $(TRAIN_CFG)
else
	$(VENV)/bin/torchrun --nproc-per-node $(GPUS) -m pipeline.train $(CONFIG) --launcher pytorch \
		--work-dir $(MODEL_DIR) $(TRAIN_DATA) $(TRAIN_RESUME) $(TRAIN_CFG)
endif

train-slurm: $(STAMP) ## as train, on Slurm (srun, PARTITION, GPUS)
	PYTHON=$(PY) bash tools/slurm_train.sh $(PARTITION) $(MODEL) $(CONFIG) $(MODEL_DIR) $(GPUS) $(TRAIN_DATA) \
		$(TRAIN_RESUME) $(TRAIN_CFG)

infer: $(STAMP) ## reads WORK/models/MODEL + SPLIT images -> writes WORK/predictions/MODEL/SPLIT (SHARD=k/N; EXPERT=NAME)
	@test -n "$(CKPT)" || { echo "error: no checkpoint in $(MODEL_DIR): run 'make train MODEL=$(MODEL)' or set CKPT=" >&2; exit 2; }
	$(PY) -m pipeline.infer $(CONFIG) $(CKPT) --shard $(SHARD) --out $(PREDICTIONS) $(INFER_ARGS)

infer-slurm: $(STAMP) ## as infer, as a Slurm array of SHARDS jobs (PARTITION); waits, checks the shard set
	@test -n "$(CKPT)" || { echo "error: no checkpoint in $(MODEL_DIR): run 'make train MODEL=$(MODEL)' or set CKPT=" >&2; exit 2; }
	PYTHON=$(PY) bash tools/slurm_infer.sh $(PARTITION) $(SHARDS) $(PREDICTIONS) $(CONFIG) $(CKPT) $(INFER_ARGS)

ensemble: $(STAMP) ## reads WORK/predictions named by RECIPE on SPLIT -> writes WORK/ensemble/RECIPE/SPLIT
	$(PY) -m ensemble --recipe $(RECIPE) --split $(SPLIT) --work $(WORK) --prepared $(PREPARED) --jobs $(JOBS)

submission: $(STAMP) ## reads WORK/ensemble/RECIPE/test -> writes WORK/submission/RECIPE.csv, validated
	$(PY) -m submit --predictions $(WORK)/ensemble/$(RECIPE_NAME)/test/predictions.parquet \
		--images $(SAMPLE_SUBMISSION) --out $(SUBMISSION)
	$(PY) -m submit.validate $(SUBMISSION) --classes $(CLASSES) --images $(SAMPLE_SUBMISSION)

evaluate: $(STAMP) ## reads WORK/ensemble/RECIPE/validation + validation CSVs -> mAP, WORK/eval/RECIPE
	$(PY) -m submit.score --submission $(WORK)/ensemble/$(RECIPE_NAME)/validation/predictions.parquet \
		--boxes $(VAL_BOXES) --labels $(VAL_LABELS) --hierarchy $(HIERARCHY) --classes $(CLASSES) \
		--per-class $(EVAL_DIR)/per_class.csv --plot $(EVAL_DIR)/per_class.png

# The demo runs in its own work folder (DEMO_WORK) and leaves work/CURRENT alone.
DEMO_MAKE = $(MAKE) --no-print-directory DATA=data/mini WORK=$(DEMO_WORK) REMEMBER=0
demo: $(STAMP) ## the whole pipeline on the mini dataset in DEMO_WORK, ending in one results table
	$(DEMO_MAKE) prepare
	for m in $(DEMO_MODELS); do $(DEMO_MAKE) train MODEL=$$m || exit 1; done
	for m in $(DEMO_MODELS); do for s in validation test; do \
		$(DEMO_MAKE) infer MODEL=$$m SPLIT=$$s || exit 1; done; done
	for s in validation test; do $(DEMO_MAKE) ensemble SPLIT=$$s || exit 1; done
	$(DEMO_MAKE) submission
	$(DEMO_MAKE) evaluate
	$(PY) tools/demo_report.py --work $(DEMO_WORK) --models $(DEMO_MODELS) --recipe mini

test: $(STAMP) ## the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## the benchmarks (tables; see README)
	$(PY) bench/wbf.py
	$(PY) bench/score.py
	$(PY) bench/tsd_head.py
	$(PY) bench/prepare.py

clean: ## remove generated data and work folders (not .venv)
	rm -rf $(WORK_ROOT) data/mini
