# make demo: the whole pipeline on the mini dataset, in its own work folder, ending in one results table.
DEMO_WORK   ?= $(WORK_ROOT)/demo
DEMO_MODELS ?= mini_tsd mini_baseline
# It runs in its own work folder (DEMO_WORK) and leaves work/CURRENT alone. After the two global models it
# fine-tunes mini_tsd on the 3 classes it is weakest at on validation (expert worst3, which
# configs/ensemble/mini_expert.yaml and configs/ensemble/search/mini_candidates.yaml name), averages mini_tsd's last
# DEMO_AVERAGE checkpoints, fuses (mini, mini_expert) and searches a recipe on validation (mini_search); the
# submission is the mini recipe's.
DEMO_MAKE = $(MAKE) --no-print-directory DATA=$(MINI_DATA) WORK=$(DEMO_WORK) REMEMBER=0
DEMO_WORST  := 3
DEMO_EXPERT := worst$(DEMO_WORST)
DEMO_EXPERT_OPTIONS ?= train_cfg.max_iters=60 param_scheduler.0.end=20
DEMO_AVERAGE ?= 3
# every demo run is appended here; docs/demo.md's table is computed from it
DEMO_RUNS   ?= docs/demo_runs.csv
# OpenMP threads that sleep instead of spinning while they wait: on a shared CPU, spinning made training 6x slower.
demo: export OMP_WAIT_POLICY ?= PASSIVE
demo: $(STAMP) ## the whole pipeline on the mini dataset in DEMO_WORK, ending in one results table
	@mkdir -p $(DEMO_WORK) && date +%s > $(DEMO_WORK)/started
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
		--expert mini_tsd-$(DEMO_EXPERT):$(DEMO_EXPERT) --recipes mini mini_expert mini_search \
		--record $(DEMO_RUNS) --wall-s $$(( $$(date +%s) - $$(cat $(DEMO_WORK)/started) ))
	$(PY) tools/demo_report.py docs --runs $(DEMO_RUNS)
