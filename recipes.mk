# The recipes that rebuild our own models and the task folders that judge them, included by
# the Makefile (its variables, LAUNCH and the HEAR targets are used here). Every recipe
# resumes when re-run. What each run gave: docs/RESULTS.md.

.PHONY: corpus heldout-tasks valid-tasks default-model prove-default teacher-cache
.PHONY: teacher-ablation teacher-ablation-run teacher-ablation-valid mobile-models mobile-model prove-mobile
.PHONY: valid-mobile valid-input-block

comma := ,
HARDWARE  ?= unknown
SEED_ARGS ?=

# --- The bundled default (checkpoints/README.md), trained in two stages: 2,400 steps, then
# the same run resumed with STEPS=4400, which restarts the cosine schedule over the longer
# horizon. Stage 1 writes model.pt when it finishes, so it is skipped once that file
# exists. HARDWARE is recorded in the checkpoint. TEACHERS=crepe,resemblyzer,vad adds those
# teachers' k-means streams (pip install '.[teachers]'; docs/TRAINING.md, "Teacher targets")
# in a run folder of its own; TEACHER_WEIGHTS=0.5 (one for all, or one per teacher) weights
# their losses.
TEACHERS        ?=
TEACHER_WEIGHTS ?=
# `make teacher-cache` writes the teachers' features of the corpus once (docs/TRAINING.md,
# "Caching the teacher features"); runs with TEACHERS read them when the cache is there.
# A run resumes as it started: TEACHER_CACHE= resumes one started without the cache.
TEACHER_CACHE   ?= $(CORPUS)/teacher_cache
# Cached, GE2E and VAD target the file's context rather than the crop's;
# CACHED_TEACHERS=crepe keeps them on the fly (docs/TRAINING.md, "Which teachers to cache").
CACHED_TEACHERS ?= crepe,resemblyzer,vad
TEACHER_ARGS = $(if $(TEACHERS),--teachers $(TEACHERS) $(if $(TEACHER_WEIGHTS),--teacher-weights $(TEACHER_WEIGHTS)) \
               $(if $(TEACHER_CACHE),$(if $(wildcard $(TEACHER_CACHE)/cache.json),--teacher-cache $(TEACHER_CACHE))))
DEFAULT_RUN ?= runs/default$(if $(TEACHERS),-$(subst $(comma),-,$(TEACHERS)))
DEFAULT_LAYER_REASON = chosen on the held-out tasks themselves (there is no separate validation suite): 5-fold logistic-regression probe of the 4,400-step model on the four k-fold scene tasks, input+concat 80.6, concat 80.4, last 77.8 (%); heareval runs of every variant: docs/RESULTS.md, 'The bundled default'
# Scene whitening (docs/EVALUATE.md, "Why heareval scores below a probe"): 512 axes of the
# scene embeddings of 2,048 corpus crops of 1 s, chosen on the validation suite; stored in
# the checkpoint, used only with the HEAR option {"whiten_scene": true}.
SCENE_DIMS      ?= 512
SCENE_WHITENING = --scene-dims $(SCENE_DIMS) --scene-crops 2048 --scene-seconds 1
# gpu_check/runs.py RECIPE is this recipe (tests/test_gpu_check.py keeps the two equal).
DEFAULT_PRETRAIN = $(MAKE) pretrain DATA=$(CORPUS)/packed PRESET=mini FRONTEND=mel256 BATCH=16 \
	    OUT=$(DEFAULT_RUN) ARGS="--targets mel-kmeans --clusters 512 --lr 5e-4 --warmup-steps 200 \
	    --schedule cosine --workers 1 --checkpoint-every 200 --log-every 25 $(TEACHER_ARGS) $(SEED_ARGS)"

# The teacher ablation: the default recipe's first stage (ABLATION_STEPS) with mel-kmeans
# only, each teacher alone and all three, for training seeds 1..SEEDS; each run in
# runs/ablation/<teachers>-seed<N>, released as the default is to release.pt there.
# teacher-ablation-valid scores every release.pt on the validation suite (never the proof
# suite) into runs/ablation-valid/: results.md, one column per model, and by-recipe.md,
# mean ± std over training seeds per recipe. Run times: docs/RESULTS.md.
ABLATION       ?= mel crepe resemblyzer vad crepe,resemblyzer,vad
ABLATION_STEPS ?= 2400
ABLATION_LAYER_REASON = the bundled default's layer, so that the ablation compares like with like

# The bundled mobile models (checkpoints/MOBILE.md): each objective (mobile-quarter, batch
# 16 x 4 s crops of the packed corpus, 50 warmup steps) and the student (mobile-tiny, batch
# 64, 100 warmup steps, the recipe of gpu-check's distill_run), in runs/mobile/<name>,
# bundled to checkpoints/mobile-<name>.pt.
MOBILE_MODELS            ?= student cbow skipgram temporalgap
MOBILE_STEPS_student     ?= 800
MOBILE_STEPS_cbow        ?= 300
MOBILE_STEPS_skipgram    ?= 300
MOBILE_STEPS_temporalgap ?= 300
MOBILE_PRESET_student    ?= mobile-tiny
MOBILE_BATCH_student     ?= 64
MOBILE_WARMUP_student    ?= 100
# The student's HEAR embedding carries its own log-mel and pitch in front of what it
# learnt (`input-block`, docs/MOBILE.md section 6), each channel standardised on the
# corpus and multiplied by this weight, chosen on the validation suite (valid-input-block;
# docs/RESULTS.md, "The block's weight"): of the weights that keep every task at 90 % of
# the teacher and pitch at 85 % of the whitened teacher, the best mean of ratios.
MOBILE_INPUT_BLOCK ?= 3
# The block's pitch part is the pitch-class salience in place of the chroma, and the scene
# embedding carries every channel's std over time after the mean (docs/RESULTS.md, "The
# student's input block: pitch salience and the scene's spread"), chosen on the validation suite.
MOBILE_INPUT_BLOCK_ARGS ?= --pitch salience --scene-std frames
INPUT_BLOCK_WEIGHTS ?= 1 2 2.5 3
MOBILE_RECIPE = DATA=$(CORPUS)/packed BATCH=$(or $(MOBILE_BATCH_$(M)),16) STEPS=$(MOBILE_STEPS_$(M)) \
	    OUT=runs/mobile/$(M) ARGS="--workers 1 --warmup-steps $(or $(MOBILE_WARMUP_$(M)),50) \
	    --checkpoint-every 100 --log-every 25 $(SEED_ARGS)"

# The bundled model, the same architecture with random weights and hearbaseline.naive on
# the held-out tasks plus the synthetic suite; table and plot in runs/proof/.
PROOF = TASKS_DIR=$(TASKS) SUITE=proof RUNS=runs/proof SEEDS=3 GRID_POINTS=1

##@ Reproduce our models
corpus: $(STAMP) ## CORPUS=../corpus: pretraining corpus from Debian packages (+ packed shards)
	$(PY) -m encodecmae_hear corpus --out $(CORPUS) --pack

heldout-tasks: $(STAMP) ## CORPUS= TASKS=../heldout_tasks: HEAR tasks from held-out sources
	$(PY) -m encodecmae_hear heldout-tasks --corpus $(CORPUS) --out $(TASKS)

# Choose models on these (make hear SUITE=valid TASKS_DIR=$(VALID)); report the proof once.
valid-tasks: $(STAMP) ## CORPUS= VALID=../valid_tasks: the validation suite, for choosing models
	$(PY) -m encodecmae_hear valid-tasks --corpus $(CORPUS) --out $(VALID)

default-model: $(STAMP) ## CORPUS= [TEACHERS= HARDWARE=]: retrain checkpoints/default.pt
	test -f $(DEFAULT_RUN)/model.pt || $(DEFAULT_PRETRAIN) STEPS=2400
	$(DEFAULT_PRETRAIN) STEPS=4400
	$(PY) -m encodecmae_hear bundle $(DEFAULT_RUN) -o checkpoints/default.pt --half --hardware "$(HARDWARE)" \
	    --hear-layer input+concat --hear-layer-reason "$(DEFAULT_LAYER_REASON)"
	$(PY) -m encodecmae_hear embedding-stats checkpoints/default.pt --data $(CORPUS)/packed $(SCENE_WHITENING)

prove-default: $(STAMP) ## TASKS=: HEAR table of the default vs random weights vs naive (runs/proof)
	$(PY) -m encodecmae_hear synth-tasks --out $(TASKS)
	$(PY) -m encodecmae_hear init --preset mini --frontend mel256 -o runs/random-mini.pt
	$(PY) -m encodecmae_hear embedding-stats runs/random-mini.pt --data $(CORPUS)/packed
	$(MAKE) hear $(PROOF) MODEL=checkpoints/default.pt LABEL=default
	$(MAKE) hear $(PROOF) MODEL=runs/random-mini.pt LABEL=random-mini OPTIONS='{"layer": "input+concat"}'
	$(MAKE) hear $(PROOF) MODULE=encodecmae_hear.evaluate.naive_baseline LABEL=naive

teacher-cache: $(STAMP) ## CORPUS=: the teachers' features of CORPUS/packed, computed once
	$(PY) -m encodecmae_hear cache-teachers --data $(CORPUS)/packed --teachers $(CACHED_TEACHERS) \
	    --out $(TEACHER_CACHE)

teacher-ablation: $(STAMP) ## CORPUS= SEEDS=3: mel only, + each teacher, + all (runs/ablation/)
	for t in $(ABLATION); do for s in $$(seq 1 $(SEEDS)); do \
	    $(MAKE) teacher-ablation-run DEFAULT_RUN=runs/ablation/$$(echo $$t | tr , -)-seed$$s \
	        STEPS=$(ABLATION_STEPS) SEED_ARGS="--seed $$s" TEACHERS=$$(test $$t = mel || echo $$t) || exit 1; \
	done; done

# Internal: one run of teacher-ablation, trained and released to $(DEFAULT_RUN)/release.pt.
teacher-ablation-run: $(STAMP)
	$(DEFAULT_PRETRAIN)
	$(PY) -m encodecmae_hear bundle $(DEFAULT_RUN) -o $(DEFAULT_RUN)/release.pt --half --hardware "$(HARDWARE)" \
	    --hear-layer input+concat --hear-layer-reason "$(ABLATION_LAYER_REASON)"
	$(PY) -m encodecmae_hear embedding-stats $(DEFAULT_RUN)/release.pt --data $(CORPUS)/packed

teacher-ablation-valid: $(STAMP) ## VALID=: each ablation run on the validation suite
	@ls runs/ablation/*/release.pt >/dev/null 2>&1 || { echo "no runs/ablation/*/release.pt: run make teacher-ablation first"; exit 1; }
	for m in runs/ablation/*/release.pt; do \
	    $(MAKE) hear TASKS_DIR=$(VALID) SUITE=valid RUNS=runs/ablation-valid SEEDS=3 GRID_POINTS=1 \
	        MODEL=$$m LABEL=$$(basename $$(dirname $$m)) || exit 1; \
	done
	$(PY) -m encodecmae_hear hear-table --runs runs/ablation-valid --suite valid --by-training-seed --stem by-recipe

mobile-models: $(STAMP) ## CORPUS= [HARDWARE=]: retrain checkpoints/mobile-*.pt
	for m in $(MOBILE_MODELS); do $(MAKE) --no-print-directory mobile-model M=$$m || exit 1; done

# Internal: one model of mobile-models (M=student|cbow|skipgram|temporalgap).
mobile-model: $(STAMP)
	$(if $(filter student,$(M)),$(MAKE) distill STUDENT=$(MOBILE_PRESET_student) $(MOBILE_RECIPE),$(MAKE) \
	    mobile-pretrain OBJECTIVE=$(M) MOBILE_PRESET=mobile-quarter $(MOBILE_RECIPE))
	$(PY) -m encodecmae_hear bundle runs/mobile/$(M) -o checkpoints/mobile-$(M).pt --half --hardware "$(HARDWARE)"
	$(if $(filter student,$(M)),$(PY) -m encodecmae_hear input-block checkpoints/mobile-student.pt \
	    --data $(CORPUS)/pretrain.jsonl --weight $(MOBILE_INPUT_BLOCK) $(MOBILE_INPUT_BLOCK_ARGS))

prove-mobile: $(STAMP) ## TASKS=: the mobile models' HEAR rows beside the default's (runs/proof)
	$(PY) -m encodecmae_hear synth-tasks --out $(TASKS)
	for m in $(MOBILE_MODELS); do $(MAKE) --no-print-directory hear $(PROOF) \
	    MODULE=encodecmae_hear.mobile_hear MODEL=checkpoints/mobile-$$m.pt LABEL=mobile-$$m || exit 1; done
	$(PY) -m encodecmae_hear hear-table --runs runs/proof --suite proof --against default --stem mobile --no-plot
	@test ! -f runs/mobile-valid/mobile.ratios.md || { echo "validation suite (make valid-mobile):"; \
	    cat runs/mobile-valid/mobile.ratios.md; }

# The student is chosen here, never on the proof suite: the default (plain, and with the
# scene whitening it holds) and the mobile models on the validation suite; per task, each
# model's score over the default's and the worst task in runs/mobile-valid/mobile.ratios.md.
VALID_MOBILE = TASKS_DIR=$(VALID) SUITE=valid RUNS=runs/mobile-valid SEEDS=3 GRID_POINTS=1
valid-mobile: $(STAMP) ## VALID=: the mobile models against the default on the validation suite
	$(MAKE) --no-print-directory hear $(VALID_MOBILE) MODEL=checkpoints/default.pt LABEL=default
	$(MAKE) --no-print-directory hear $(VALID_MOBILE) MODEL=checkpoints/default.pt LABEL=default-whitened \
	    OPTIONS='{"whiten_scene": true}'
	for m in $(MOBILE_MODELS); do $(MAKE) --no-print-directory hear $(VALID_MOBILE) \
	    MODULE=encodecmae_hear.mobile_hear MODEL=checkpoints/mobile-$$m.pt LABEL=mobile-$$m || exit 1; done
	$(PY) -m encodecmae_hear hear-table --runs runs/mobile-valid --suite valid --against default --stem mobile --no-plot

# The input block's weight: the bundled student's learnt weights with the block at each of
# INPUT_BLOCK_WEIGHTS (0: none), on the validation suite beside valid-mobile's rows.
valid-input-block: $(STAMP) ## VALID= CORPUS=: the student's input block at each weight, validation suite
	mkdir -p runs/input-block
	for w in $(INPUT_BLOCK_WEIGHTS); do \
	    $(PY) -m encodecmae_hear input-block checkpoints/mobile-student.pt --data $(CORPUS)/pretrain.jsonl \
	        --weight $$w $(MOBILE_INPUT_BLOCK_ARGS) -o runs/input-block/student-w$$w.pt || exit 1; \
	    $(MAKE) --no-print-directory hear $(VALID_MOBILE) MODULE=encodecmae_hear.mobile_hear \
	        MODEL=runs/input-block/student-w$$w.pt LABEL=student-block-w$$w || exit 1; done
	$(PY) -m encodecmae_hear hear-table --runs runs/mobile-valid --suite valid --against default --stem mobile --no-plot
