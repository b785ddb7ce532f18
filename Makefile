# oid-tsd: Open Images Challenge 2019 detection with TSD, one target per stage.
#   make prepare DATA=DIR -> make train -> make infer -> make ensemble -> make submission / make evaluate
# DATA is named once, at `make prepare`: each dataset gets its own work folder WORK (work/<name of DATA>), prepare
# records the raw paths in WORK/prepared/sources.mk and marks WORK as the current one (work/CURRENT), and every
# later target reads both. A variable given on the command line always wins. Without any, the bundled mini dataset.
# What a dataset needs beyond its files (its ensemble recipe, a COCO export) comes from the dataset itself
# (DATA/dataset.json, recorded in sources.mk), never from how its path is spelled.
SHELL := /bin/bash
.DEFAULT_GOAL := help
include mk/install.mk

# ---------------------------------------------------------------- the dataset and its work folder
WORK_ROOT   ?= work
MINI_DATA   := data/mini
ifneq ($(origin DATA),undefined)
WORK        ?= $(WORK_ROOT)/$(notdir $(patsubst %/,%,$(DATA)))
endif
WORK        ?= $(or $(shell cat $(WORK_ROOT)/CURRENT 2>/dev/null),$(WORK_ROOT)/mini)
PREPARED    ?= $(WORK)/prepared
-include $(PREPARED)/sources.mk
DATA        ?= $(MINI_DATA)
IMAGES_ROOT ?= $(DATA)
VAL_BOXES   ?= $(DATA)/challenge-2019-validation-detection-bbox.csv
VAL_LABELS  ?= $(DATA)/challenge-2019-validation-detection-human-imagelabels.csv
SAMPLE_SUBMISSION ?= $(DATA)/sample_submission.csv
DATASET_RECIPE ?= challenge
CLASSES     ?= $(PREPARED)/classes.csv
HIERARCHY   ?= $(PREPARED)/hierarchy.json
REMEMBER    ?= 1
PREPARE_OPTS?=

# ---------------------------------------------------------------- models, predictions, recipes
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
GPUS_PER_NODE ?=
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
RECIPE      ?= configs/ensemble/$(DATASET_RECIPE).yaml
RECIPE_NAME := $(basename $(notdir $(RECIPE)))
JOBS        ?= 2
SUBMISSION  ?= $(WORK)/submission/$(RECIPE_NAME).csv
EVAL_DIR    ?= $(WORK)/eval/$(RECIPE_NAME)
SEARCH_INPUTS     ?= $(wildcard $(WORK)/predictions/*/validation/merged)
SEARCH_CANDIDATES ?=
SEARCH_OUT        ?= $(WORK)/recipes/search.yaml
SEARCH_OPTS       ?=
PYTEST_ARGS ?=
# pytest-xdist workers, each at cores / workers torch threads; more than two gain little: the learning test alone
# takes ~2 minutes
TEST_WORKERS ?= 2

TRAIN_DATA  := --prepared-dir $(TRAIN_PREPARED) --img-root $(IMAGES_ROOT) $(if $(filter 1,$(ADAPT_CLASSES)),--adapt-classes)
INFER_ARGS   = --split $(SPLIT) --images $(IMAGES) --classes $(TRAIN_PREPARED)/classes.csv $(INFER_OPTS)
TRAIN_INIT   = $(if $(FROM_CKPT),--init-from $(FROM_CKPT))
ifeq ($(RESUME),1)
TRAIN_RESUME := --resume
endif
ifneq ($(strip $(CFG_OPTIONS)),)
TRAIN_CFG := --cfg-options $(CFG_OPTIONS)
endif
# guards: stop with one line (exit 2) before anything runs
NEED_FROM = @test -z "$(FROM)" -o -n "$(FROM_CKPT)" || { echo "error: no checkpoint in $(WORK)/models/$(FROM): run 'make train MODEL=$(FROM)' or set FROM_CKPT=" >&2; exit 2; }
NEED_CKPT = @test -n "$(CKPT)" || { echo "error: no checkpoint in $(MODEL_DIR): run 'make train MODEL=$(MODEL)' or set CKPT=" >&2; exit 2; }

.PHONY: help install mini download prepare train train-slurm convert average infer infer-slurm ensemble search submission evaluate show \
	demo test bench clean clean-work FORCE

help: ## list the targets, what each reads and writes, and the current dataset
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "Current dataset: DATA=$(DATA) WORK=$(WORK) (PREPARED=$(PREPARED))"
	@echo "Defaults: MODEL=$(MODEL) SPLIT=$(SPLIT) GPUS=$(GPUS) SHARD=$(SHARD) RECIPE=$(RECIPE)"

# ---------------------------------------------------------------- prepare
# The bundled mini dataset is generated on first use (wherever DATA spells its path); a real DATA folder is used as
# it is.
ifeq ($(abspath $(DATA)),$(abspath $(MINI_DATA)))
DATA_READY := $(MINI_DATA)/dataset.json
endif
mini: $(MINI_DATA)/dataset.json ## generate the bundled mini dataset into data/mini (deterministic)
$(MINI_DATA)/dataset.json: data_prep/mini.py | $(STAMP)
	$(PY) -m data_prep.mini --out $(MINI_DATA)

# prepare is a file target: it reruns when a raw annotation file, a file PREPARE_OPTS names, the code or the command
# itself changed since the last run (kept in WORK/prepared/prepare-command.txt), and otherwise does nothing.
PREPARE_CMD  = $(strip $(PY) -m data_prep --data-dir $(abspath $(DATA)) --out-dir $(PREPARED) $(PREPARE_OPTS))
PREPARE_DEPS = $(filter-out %/download-manifest.csv,$(wildcard $(DATA)/*.csv $(DATA)/*.csv.gz $(DATA)/*.json $(filter-out -%,$(subst =, ,$(PREPARE_OPTS))) \
	data_prep/*.py contracts/*.py)) $(DATA_READY)
ifneq "$(file <$(PREPARED)/prepare-command.txt)" "$(PREPARE_CMD)"
PREPARE_DEPS += FORCE
endif
quote = '$(subst ','\'',$(1))'

prepare: $(PREPARED)/summary.json ## reads DATA (CSVs, hierarchy) -> writes WORK/prepared (Parquet, sources.mk)
ifeq ($(REMEMBER),1)
	@mkdir -p $(WORK_ROOT) && echo "$(WORK)" > $(WORK_ROOT)/CURRENT
endif
$(PREPARED)/summary.json: $(PREPARE_DEPS) | $(STAMP)
	$(PREPARE_CMD)
	@printf '%s\n' $(call quote,$(PREPARE_CMD)) > $(PREPARED)/prepare-command.txt

# download writes the layout prepare reads (python -m data_prep.download); a rerun fetches only what is missing.
# Subsets: DOWNLOAD_CLASSES='Dog "Human face"' (names or MIDs, with descendants), MAX_PER_CLASS, MAX_IMAGES (per
# split, DOWNLOAD_SEED), IMAGE_LIST (split/ImageID lines). A mirror or local S3: S3_ENDPOINT, BUCKET, ANNOTATIONS_URL.
# TARBALLS=1 takes whole train/validation splits from the bucket's tarballs.
DOWNLOAD_SPLITS ?= train validation test
DOWNLOAD_JOBS   ?= 32
DOWNLOAD_CMD = $(strip $(PY) -m data_prep.download --out $(DATA) --splits $(DOWNLOAD_SPLITS) --jobs $(DOWNLOAD_JOBS) \
	$(if $(DOWNLOAD_CLASSES),--classes $(DOWNLOAD_CLASSES)) $(if $(MAX_PER_CLASS),--max-per-class $(MAX_PER_CLASS)) \
	$(if $(MAX_IMAGES),--max-images $(MAX_IMAGES)) $(if $(DOWNLOAD_SEED),--seed $(DOWNLOAD_SEED)) \
	$(if $(IMAGE_LIST),--image-list $(IMAGE_LIST)) $(if $(S3_ENDPOINT),--s3-endpoint $(S3_ENDPOINT)) \
	$(if $(BUCKET),--bucket $(BUCKET)) $(if $(ANNOTATIONS_URL),--annotations-url $(ANNOTATIONS_URL)) \
	$(if $(filter 1,$(TARBALLS)),--tarballs))
download: $(STAMP) ## reads the public Open Images files (S3, HTTP) -> writes DATA (CSVs, {train,validation,test}/*.jpg)
	@test "$(abspath $(DATA))" != "$(abspath $(MINI_DATA))" || { echo "error: name the folder to write: make download DATA=DIR" >&2; exit 2; }
	$(DOWNLOAD_CMD)

# ---------------------------------------------------------------- train, infer
# GPUS=N trains in N processes, one device each (CPU processes without CUDA): one process runs directly, more under
# torchrun on this machine (with CUDA, checked against the visible devices first) or, for train-slurm, under srun
# (GPUS_PER_NODE per node, default min(GPUS, 8); more GPUS span several nodes). RESUME=1 continues from the last
# complete checkpoint (docs/distributed.md).
NEED_GPUS = @[[ "$(GPUS)" =~ ^[0-9]+$$ ]] && (( 10\#$(GPUS) > 0 )) || { echo "error: GPUS=$(GPUS): the number of training processes must be a positive integer (1, 2, 8, ...)" >&2; exit 2; }
train: $(STAMP) ## reads WORK/prepared + images -> writes WORK/models/MODEL (GPUS=N torchrun; RESUME=1; EXPERT=NAME; FROM=MODEL)
	$(NEED_FROM)
	$(NEED_GPUS)
ifeq ($(GPUS),1)
	$(PY) -m pipeline.train $(CONFIG) --work-dir $(MODEL_DIR) $(TRAIN_DATA) $(TRAIN_INIT) $(TRAIN_RESUME) $(TRAIN_CFG)
else
	@! command -v nvidia-smi >/dev/null || $(PY) -m pipeline.distributed $(GPUS)
	$(VENV)/bin/torchrun --standalone --nproc-per-node $(GPUS) -m pipeline.train $(CONFIG) --launcher pytorch \
		--work-dir $(MODEL_DIR) $(TRAIN_DATA) $(TRAIN_INIT) $(TRAIN_RESUME) $(TRAIN_CFG)
endif

train-slurm: $(STAMP) ## as train, as a requeueable Slurm job (PARTITION, GPUS, GPUS_PER_NODE); waits for it
	$(NEED_FROM)
	$(NEED_GPUS)
	PYTHON=$(PY) $(if $(GPUS_PER_NODE),GPUS_PER_NODE=$(GPUS_PER_NODE)) bash tools/slurm_train.sh $(PARTITION) \
		$(RUN_NAME) $(CONFIG) $(MODEL_DIR) $(GPUS) $(TRAIN_DATA) $(TRAIN_INIT) $(TRAIN_RESUME) $(TRAIN_CFG)

convert: $(STAMP) ## reads an original TSD release RELEASE=FILE.pth -> writes WORK/released/MODEL.pth (LABELS=CSV)
	@test -n "$(RELEASE)" || { echo "error: set RELEASE=FILE.pth, the original checkpoint to convert" >&2; exit 2; }
	$(PY) -m pipeline.convert_tsd $(RELEASE) --config configs/released/$(MODEL).py --out $(WORK)/released/$(MODEL).pth \
		$(if $(LABELS),--label-file $(LABELS))

average: $(STAMP) ## reads the last LAST=K checkpoints of WORK/models/MODEL -> writes its average_lastK.pth
	@test -n "$(LAST)" || { echo "error: set LAST=K, how many of the latest checkpoints of $(MODEL_DIR) to average" >&2; exit 2; }
	$(PY) -m pipeline.average --work-dir $(MODEL_DIR) --last $(LAST) --out $(MODEL_DIR)/average_last$(LAST).pth

# GPUS=N predicts all N shards at once, one process per device (N CPU processes without CUDA), the same shard set as
# infer-slurm SHARDS=N; SHARD=k/N predicts one shard. infer-slurm reads CPUS_PER_TASK, GRES (gpu), MEM, TIME,
# SBATCH_ARGS and SRUN_ARGS (tools/slurm_infer.sh). Both rerun only the shards not finished.
INFER_SHARDS = $(if $(filter-out 1,$(GPUS)),--gpus $(GPUS)) --shard $(SHARD)
infer: $(STAMP) ## reads WORK/models/MODEL + SPLIT images -> writes WORK/predictions/MODEL/SPLIT (GPUS=N; SHARD=k/N; EXPERT=NAME)
	$(NEED_CKPT)
	$(PY) -m pipeline.infer $(INFER_CONFIG) $(CKPT) $(INFER_SHARDS) --out $(PREDICTIONS) $(INFER_ARGS)

infer-slurm: $(STAMP) ## as infer, as a Slurm array of SHARDS jobs (PARTITION); progress, waits, checks the shard set
	$(NEED_CKPT)
	PYTHON=$(PY) bash tools/slurm_infer.sh $(PARTITION) $(SHARDS) $(PREDICTIONS) $(INFER_CONFIG) $(CKPT) $(INFER_ARGS)

# ---------------------------------------------------------------- ensemble, submission, evaluation
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

# ---------------------------------------------------------------- the demo, tests, benchmarks, cleaning
include mk/demo.mk

test: $(STAMP) ## the test suite
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP) ## the benchmarks (tables; see docs/benchmarks.md)
	$(PY) bench/wbf.py
	$(PY) bench/suppression.py
	$(PY) bench/score.py
	$(PY) bench/tsd_head.py
	$(PY) bench/prepare.py
	$(PY) bench/ensemble.py
	$(PY) bench/search.py
	$(PY) bench/train_scaling.py
	$(PY) bench/download.py

# work/CURRENT is dropped when the folder it names is gone
FORGET_GONE_WORK = @if [ -f $(WORK_ROOT)/CURRENT ] && [ ! -d "$$(cat $(WORK_ROOT)/CURRENT)" ]; then rm -f $(WORK_ROOT)/CURRENT; fi
clean: ## remove what the project generates by itself: the demo's work folder, the mini dataset and its work folder
	rm -rf $(DEMO_WORK) $(MINI_DATA) $(WORK_ROOT)/mini
	$(FORGET_GONE_WORK)

clean-work: ## delete one dataset's work folder (models, predictions): make clean-work WORK=work/NAME, named explicitly
	@test "$(origin WORK)" = "command line" || { echo "error: name the work folder to delete: make clean-work WORK=work/NAME" >&2; exit 2; }
	@test -d "$(WORK)" || { echo "error: $(WORK) is not a folder" >&2; exit 2; }
	rm -rf -- "$(WORK)"
	$(FORGET_GONE_WORK)

FORCE:
