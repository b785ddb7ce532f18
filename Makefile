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
# FROM=NAME starts training from the last checkpoint of WORK/models/NAME (FROM_CKPT=FILE: from that file) with the
# class layers re-initialised (pipeline/init_from.py), e.g. an expert fine-tuned from a global model
FROM        ?=
FROM_CKPT   ?= $(if $(FROM),$(shell cat $(WORK)/models/$(FROM)/last_checkpoint 2>/dev/null))
LAST        ?=
GPUS        ?= 1
RESUME      ?= 0
CFG_OPTIONS ?=
PARTITION   ?= gpu
CKPT        ?= $(shell cat $(MODEL_DIR)/last_checkpoint 2>/dev/null)
# infer builds the model from the config the run was trained with (mmengine writes it into the model folder, with
# the class count of an expert or of ADAPT_CLASSES), else from CONFIG
TRAINED_CONFIG := $(MODEL_DIR)/$(notdir $(CONFIG))
INFER_CONFIG ?= $(if $(wildcard $(TRAINED_CONFIG)),$(TRAINED_CONFIG),$(CONFIG))
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
SEARCH_INPUTS     ?= $(wildcard $(WORK)/predictions/*/validation/merged)
SEARCH_CANDIDATES ?=
SEARCH_OUT        ?= $(WORK)/recipes/search.yaml
SEARCH_OPTS       ?=
PYTEST_ARGS ?=
DEMO_WORK   ?= $(WORK_ROOT)/demo
DEMO_MODELS ?= mini_tsd mini_baseline

TRAIN_DATA  := --prepared-dir $(TRAIN_PREPARED) --img-root $(IMAGES_ROOT) $(if $(filter 1,$(ADAPT_CLASSES)),--adapt-classes)
INFER_ARGS   = --split $(SPLIT) --images $(IMAGES) --classes $(TRAIN_PREPARED)/classes.csv $(INFER_OPTS)
TRAIN_INIT   = $(if $(FROM_CKPT),--init-from $(FROM_CKPT))
ifeq ($(RESUME),1)
TRAIN_RESUME := --resume
endif
ifneq ($(strip $(CFG_OPTIONS)),)
TRAIN_CFG := --cfg-options $(CFG_OPTIONS)
endif

.PHONY: help install mini prepare train train-slurm convert average infer infer-slurm ensemble search submission evaluate show \
	demo test bench clean

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

train: $(STAMP) ## reads WORK/prepared + images -> writes WORK/models/MODEL (GPUS=N torchrun; RESUME=1; EXPERT=NAME; FROM=MODEL)
	@test -z "$(FROM)" -o -n "$(FROM_CKPT)" || { echo "error: no checkpoint in $(WORK)/models/$(FROM): run 'make train MODEL=$(FROM)' or set FROM_CKPT=" >&2; exit 2; }
ifeq ($(GPUS),1)
	$(PY) -m pipeline.train $(CONFIG) --work-dir $(MODEL_DIR) $(TRAIN_DATA) $(TRAIN_INIT) $(TRAIN_RESUME) $(TRAIN_CFG)
else
	$(VENV)/bin/torchrun --nproc-per-node $(GPUS) -m pipeline.train $(CONFIG) --launcher pytorch \
		--work-dir $(MODEL_DIR) $(TRAIN_DATA) $(TRAIN_INIT) $(TRAIN_RESUME) $(TRAIN_CFG)
endif

train-slurm: $(STAMP) ## as train, on Slurm (srun, PARTITION, GPUS)
	@test -z "$(FROM)" -o -n "$(FROM_CKPT)" || { echo "error: no checkpoint in $(WORK)/models/$(FROM): run 'make train MODEL=$(FROM)' or set FROM_CKPT=" >&2; exit 2; }
	PYTHON=$(PY) bash tools/slurm_train.sh $(PARTITION) $(MODEL) $(CONFIG) $(MODEL_DIR) $(GPUS) $(TRAIN_DATA) \
		$(TRAIN_INIT) $(TRAIN_RESUME) $(TRAIN_CFG)

convert: $(STAMP) ## reads an original TSD release RELEASE=FILE.pth -> writes WORK/released/MODEL.pth (LABELS=CSV)
	@test -n "$(RELEASE)" || { echo "error: set RELEASE=FILE.pth, the original checkpoint to convert" >&2; exit 2; }
	$(PY) -m pipeline.convert_tsd $(RELEASE) --config configs/released/$(MODEL).py --out $(WORK)/released/$(MODEL).pth \
		$(if $(LABELS),--label-file $(LABELS))

average: $(STAMP) ## reads the last LAST=K checkpoints of WORK/models/MODEL -> writes its average_lastK.pth
	@test -n "$(LAST)" || { echo "error: set LAST=K, how many of the latest checkpoints of $(MODEL_DIR) to average" >&2; exit 2; }
	$(PY) -m pipeline.average --work-dir $(MODEL_DIR) --last $(LAST) --out $(MODEL_DIR)/average_last$(LAST).pth

infer: $(STAMP) ## reads WORK/models/MODEL + SPLIT images -> writes WORK/predictions/MODEL/SPLIT (SHARD=k/N; EXPERT=NAME)
	@test -n "$(CKPT)" || { echo "error: no checkpoint in $(MODEL_DIR): run 'make train MODEL=$(MODEL)' or set CKPT=" >&2; exit 2; }
	$(PY) -m pipeline.infer $(INFER_CONFIG) $(CKPT) --shard $(SHARD) --out $(PREDICTIONS) $(INFER_ARGS)

infer-slurm: $(STAMP) ## as infer, as a Slurm array of SHARDS jobs (PARTITION); waits, checks the shard set
	@test -n "$(CKPT)" || { echo "error: no checkpoint in $(MODEL_DIR): run 'make train MODEL=$(MODEL)' or set CKPT=" >&2; exit 2; }
	PYTHON=$(PY) bash tools/slurm_infer.sh $(PARTITION) $(SHARDS) $(PREDICTIONS) $(INFER_CONFIG) $(CKPT) $(INFER_ARGS)

ensemble: $(STAMP) ## reads WORK/predictions named by RECIPE on SPLIT -> writes WORK/ensemble/RECIPE/SPLIT
	$(PY) -m ensemble --recipe $(RECIPE) --split $(SPLIT) --work $(WORK) --prepared $(PREPARED) --jobs $(JOBS)

search: $(STAMP) ## reads validation predictions (SEARCH_INPUTS or SEARCH_CANDIDATES) + CSVs -> recipe SEARCH_OUT
	$(PY) -m ensemble.search $(if $(SEARCH_CANDIDATES),--candidates $(SEARCH_CANDIDATES),--inputs $(SEARCH_INPUTS)) \
		--boxes $(VAL_BOXES) --labels $(VAL_LABELS) --hierarchy $(HIERARCHY) --classes $(CLASSES) \
		--work $(WORK) --prepared $(PREPARED) --out $(SEARCH_OUT) --jobs $(JOBS) $(SEARCH_OPTS)

submission: $(STAMP) ## reads WORK/ensemble/RECIPE/test -> writes WORK/submission/RECIPE.csv, validated
	$(PY) -m submit --predictions $(WORK)/ensemble/$(RECIPE_NAME)/test/predictions.parquet \
		--images $(SAMPLE_SUBMISSION) --out $(SUBMISSION)
	$(PY) -m submit.validate $(SUBMISSION) --classes $(CLASSES) --images $(SAMPLE_SUBMISSION)

evaluate: $(STAMP) ## reads WORK/ensemble/RECIPE/validation + validation CSVs -> mAP, WORK/eval/RECIPE (report)
	$(PY) -m submit.score --submission $(WORK)/ensemble/$(RECIPE_NAME)/validation/predictions.parquet \
		--boxes $(VAL_BOXES) --labels $(VAL_LABELS) --hierarchy $(HIERARCHY) --classes $(CLASSES) \
		--per-class $(EVAL_DIR)/per_class.csv --plot $(EVAL_DIR)/per_class.png \
		--report $(EVAL_DIR)/report --images $(IMAGES_ROOT)/validation

show: $(STAMP) ## reads WORK/ensemble/RECIPE/validation + images, CSVs -> EVAL_DIR/show (worst images first)
	$(PY) -m submit.show --predictions $(WORK)/ensemble/$(RECIPE_NAME)/validation/predictions.parquet \
		--images $(IMAGES_ROOT)/validation --out $(EVAL_DIR)/show \
		--boxes $(VAL_BOXES) --labels $(VAL_LABELS) --classes $(CLASSES) --hierarchy $(HIERARCHY)

# The demo runs in its own work folder (DEMO_WORK) and leaves work/CURRENT alone. After the two global models it
# fine-tunes mini_tsd on the 3 classes it is weakest at on validation (expert worst3, which
# configs/ensemble/mini_expert.yaml and configs/ensemble/search/mini_candidates.yaml name), averages mini_tsd's last
# DEMO_AVERAGE checkpoints, fuses (mini, mini_expert) and searches a recipe on validation (mini_search); the
# submission is the mini recipe's.
DEMO_MAKE = $(MAKE) --no-print-directory DATA=data/mini WORK=$(DEMO_WORK) REMEMBER=0
DEMO_WORST  := 3
DEMO_EXPERT := worst$(DEMO_WORST)
DEMO_EXPERT_OPTIONS ?= train_cfg.max_iters=60 param_scheduler.0.end=20
DEMO_AVERAGE ?= 3
# OpenMP threads that sleep instead of spinning while they wait: on a shared CPU, spinning made training 6x slower.
demo: export OMP_WAIT_POLICY ?= PASSIVE
demo: $(STAMP) ## the whole pipeline on the mini dataset in DEMO_WORK, ending in one results table
	$(DEMO_MAKE) prepare
	for m in $(DEMO_MODELS); do $(DEMO_MAKE) train MODEL=$$m || exit 1; done
	for m in $(DEMO_MODELS); do for s in validation test; do \
		$(DEMO_MAKE) infer MODEL=$$m SPLIT=$$s || exit 1; done; done
	$(PY) tools/demo_report.py per-class --work $(DEMO_WORK) --model mini_tsd --out $(DEMO_WORK)/eval/mini_tsd/per_class.csv
	$(PY) -m data_prep.experts --prepared $(DEMO_WORK)/prepared --per-class $(DEMO_WORK)/eval/mini_tsd/per_class.csv \
		--worst $(DEMO_WORST) --out $(DEMO_WORK)/expert_groups.csv
	$(DEMO_MAKE) prepare PREPARE_OPTS=--expert-groups=$(DEMO_WORK)/expert_groups.csv
	$(DEMO_MAKE) train MODEL=mini_tsd EXPERT=$(DEMO_EXPERT) FROM=mini_tsd CFG_OPTIONS="$(DEMO_EXPERT_OPTIONS)"
	$(DEMO_MAKE) infer MODEL=mini_tsd EXPERT=$(DEMO_EXPERT) SPLIT=validation
	$(DEMO_MAKE) average MODEL=mini_tsd LAST=$(DEMO_AVERAGE)
	$(DEMO_MAKE) infer MODEL=mini_tsd SPLIT=validation CKPT=$(DEMO_WORK)/models/mini_tsd/average_last$(DEMO_AVERAGE).pth \
		PREDICTIONS=$(DEMO_WORK)/predictions/mini_tsd-average/validation
	for r in mini mini_expert; do $(DEMO_MAKE) ensemble RECIPE=configs/ensemble/$$r.yaml SPLIT=validation || exit 1; done
	$(DEMO_MAKE) search SEARCH_CANDIDATES=configs/ensemble/search/mini_candidates.yaml \
		SEARCH_OUT=$(DEMO_WORK)/recipes/mini_search.yaml SEARCH_OPTS=--quiet
	$(DEMO_MAKE) ensemble RECIPE=$(DEMO_WORK)/recipes/mini_search.yaml SPLIT=validation
	$(DEMO_MAKE) ensemble SPLIT=test
	$(DEMO_MAKE) submission
	$(DEMO_MAKE) evaluate
	$(PY) tools/demo_report.py table --work $(DEMO_WORK) --models $(DEMO_MODELS) --averaged mini_tsd-average:mini_tsd \
		--expert mini_tsd-$(DEMO_EXPERT):$(DEMO_EXPERT) --recipes mini mini_expert mini_search

test: $(STAMP) ## the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## the benchmarks (tables; see README)
	$(PY) bench/wbf.py
	$(PY) bench/score.py
	$(PY) bench/tsd_head.py
	$(PY) bench/prepare.py

clean: ## remove generated data and work folders (not .venv)
	rm -rf $(WORK_ROOT) data/mini
