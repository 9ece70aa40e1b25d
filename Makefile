# Thin wrapper: every target calls the package's own CLI, where the logic lives.
# `make demo` and `make test` install into .venv first when needed.

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
MODEL   ?=

.PHONY: help install demo test wheel-check bench clean manifest pretrain selftrain bench-train gpu-check corpus heldout-tasks valid-tasks
.PHONY: hear hear-validate hear-embed hear-predict hear-table synth-tasks default-model prove-default teacher-ablation teacher-ablation-run teacher-ablation-valid teacher-cache
.PHONY: mobile-pretrain distill mobile-models mobile-model prove-mobile

help:
	@echo "make install   build $(VENV) (pinned by constraints.txt) with the HEAR tools"
	@echo "make demo      install if needed, validate the bundled model, time embeddings"
	@echo "make test      install if needed, run the whole test suite (and wheel-check)"
	@echo "make wheel-check  build the wheel, install it in a fresh venv, run the HEAR tools on it"
	@echo "make bench     embedding speed and memory benchmark (prints figures)"
	@echo "make embed     AUDIO='files, folders or .jsonl' OUT=dir MODEL= DEVICE= GPUS=1 ARGS='--scene': embed your audio (re-run: resumes)"
	@echo "make manifest  AUDIO='dir ...' DATA=corpus.jsonl: scan audio for training"
	@echo "make pretrain  DATA= PRESET=base FRONTEND=mel256 STEPS= BATCH=128 OUT= GPUS=1 (re-run: resumes)"
	@echo "               DATA: a folder of audio, a manifest .jsonl or a folder of .tar shards"
	@echo "make selftrain FROM=<pretrained ckpt> DATA= STEPS= BATCH=128 OUT= GPUS=1"
	@echo "make bench-train  training throughput on this machine (prints figures)"
	@echo "make gpu-check GPU figures in < 10 min: embedding speed, training speed, a short run, two students (\$$OUT or runs/gpu-check)"
	@echo "make mobile-pretrain OBJECTIVE=cbow|skipgram|temporalgap MOBILE_PRESET=mobile-half DATA= OUT="
	@echo "make distill   TEACHER=<ckpt, default bundled> STUDENT=mobile-quarter DATA= OUT=runs/student"
	@echo "make mobile-models CORPUS=../corpus HARDWARE=: retrain the bundled checkpoints/mobile-*.pt (checkpoints/MOBILE.md)"
	@echo "make prove-mobile TASKS=../heldout_tasks: their HEAR rows in runs/proof/"
	@echo "make corpus    CORPUS=../corpus: pretraining corpus from Debian packages (+ packed shards)"
	@echo "make heldout-tasks CORPUS= TASKS=../heldout_tasks: HEAR tasks from held-out sources"
	@echo "make valid-tasks CORPUS= VALID=../valid_tasks: the validation suite (SUITE=valid), for choosing models"
	@echo "make hear      MODEL= TASKS_DIR=tasks SUITE=hear18 SEEDS=3 OPTIONS='{\"layer\": 5}' DEVICE= RUNS=runs/hear"
	@echo "               embed + predict + table (docs/EVALUATE.md); steps: hear-validate hear-embed hear-predict hear-table"
	@echo "make synth-tasks TASKS_DIR=tasks: write the synthetic HEAR suite (SUITE=synthetic)"
	@echo "make default-model CORPUS=../corpus TEACHERS=: retrain the bundled checkpoints/default.pt (checkpoints/README.md)"
	@echo "               TEACHERS=crepe,resemblyzer,vad: with teacher target streams (pip install '.[teachers]')"
	@echo "make teacher-ablation CORPUS= SEEDS=3: mel only, + each teacher, + all (runs/ablation/)"
	@echo "make teacher-ablation-valid VALID=../valid_tasks: each ablation run on the validation suite"
	@echo "make teacher-cache CORPUS=: the teachers' features of \$$(CORPUS)/packed, once; the two above read them"
	@echo "make prove-default TASKS=../heldout_tasks: HEAR table of the bundled model vs random weights vs naive"

install: $(STAMP)

# The HEAR 2021 tools, the dependencies they really use, torchaudio beside a CPU torch and
# the .pth file that makes the tools work in the venv: tools/install_hear_tools.py, the
# recipe that `make wheel-check` uses too.
$(STAMP): setup.cfg setup.py constraints.txt tools/install_hear_tools.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,hear,mobile,teachers]'
	$(PY) tools/install_hear_tools.py
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m encodecmae_hear demo $(if $(MODEL),--model $(MODEL))

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory wheel-check

# The wheel as a user installs it: built from this checkout, installed with the HEAR tools
# into a fresh venv outside it, then the bundled model, hear-validator and heareval's own
# commands run from another folder (tools/wheel_check.py).
wheel-check: $(STAMP)
	$(PY) tools/wheel_check.py

bench: $(STAMP)
	$(PY) bench/embed.py

# --- Training (docs/TRAINING.md). Several nodes: NNODES=2 RDZV=node0:29500 on every node.
AUDIO    ?=
DATA     ?= corpus.jsonl
PRESET   ?= base
FRONTEND ?= mel256
STEPS    ?=
BATCH    ?= 128
GPUS     ?= 1
NNODES   ?= 1
RDZV     ?=
OUT      ?=
FROM     ?= runs/$(PRESET)-$(FRONTEND)/model.pt
ARGS     ?=
ifeq ($(GPUS)$(NNODES),11)
LAUNCH   := $(PY) -m encodecmae_hear
else
LAUNCH   := $(VENV)/bin/torchrun --nnodes=$(NNODES) --nproc_per_node=$(GPUS) \
            $(if $(RDZV),--rdzv_backend=c10d --rdzv_endpoint=$(RDZV),--standalone) -m encodecmae_hear
endif
TRAIN_ARGS = --data $(DATA) --batch-size $(BATCH) $(if $(STEPS),--steps $(STEPS)) --resume $(ARGS)

manifest: $(STAMP)
	$(PY) -m encodecmae_hear manifest $(AUDIO) -o $(DATA)

pretrain: $(STAMP)
	$(LAUNCH) pretrain $(TRAIN_ARGS) --preset $(PRESET) --frontend $(FRONTEND) \
	    --out $(or $(OUT),runs/$(PRESET)-$(FRONTEND))

selftrain: $(STAMP)
	$(LAUNCH) selftrain $(TRAIN_ARGS) --from $(FROM) --out $(or $(OUT),$(dir $(FROM))selftrain)

bench-train: $(STAMP)
	$(PY) bench/train.py

# One prepared script for a short GPU window (docs/TRAINING.md): figures in $OUT or
# runs/gpu-check; the training run uses $(CORPUS)/packed when it is there.
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py $(if $(OUT),--out $(OUT)) $(if $(wildcard $(CORPUS)/packed),--data $(CORPUS)/packed)

# --- Embeddings of your own audio (docs/EMBED.md); GPUS=N runs N processes with torchrun.
.PHONY: embed
embed: $(STAMP)
	$(LAUNCH) embed $(AUDIO) --out $(OUT) $(if $(MODEL),--model $(MODEL)) $(if $(DEVICE),--device $(DEVICE)) $(ARGS)

# --- The mobile line (docs/MOBILE.md): self-supervised pretraining and distillation.
OBJECTIVE     ?= cbow
MOBILE_PRESET ?= mobile-half
STUDENT       ?= mobile-quarter
TEACHER       ?=
mobile-pretrain: $(STAMP)
	$(LAUNCH) pretrain-mobile $(TRAIN_ARGS) --objective $(OBJECTIVE) --preset $(MOBILE_PRESET) \
	    --out $(or $(OUT),runs/$(MOBILE_PRESET)-$(OBJECTIVE))

distill: $(STAMP)
	$(LAUNCH) distill $(TRAIN_ARGS) $(if $(TEACHER),--teacher $(TEACHER)) --preset $(STUDENT) \
	    --out $(or $(OUT),runs/student)

CORPUS  ?= ../corpus
TASKS   ?= ../heldout_tasks
VALID   ?= ../valid_tasks

# The bundled mobile models (checkpoints/MOBILE.md): each objective and the student, in
# runs/mobile/<name>, bundled to checkpoints/mobile-<name>.pt; re-running resumes.
# The objectives: mobile-quarter, batch 16 x 4 s crops of the packed corpus, 50 warmup
# steps. The student: mobile-tiny, batch 64, 100 warmup steps, 800 steps (the recipe of
# make gpu-check's distill_run, which trained the bundled one on a GPU and stopped it at
# step 443; about 3 hours on a 2-core CPU).
MOBILE_MODELS       ?= student cbow skipgram temporalgap
MOBILE_STEPS_student     ?= 800
MOBILE_STEPS_cbow        ?= 300
MOBILE_STEPS_skipgram    ?= 300
MOBILE_STEPS_temporalgap ?= 300
MOBILE_PRESET_student ?= mobile-tiny
MOBILE_BATCH_student  ?= 64
MOBILE_WARMUP_student ?= 100
MOBILE_RECIPE = DATA=$(CORPUS)/packed BATCH=$(or $(MOBILE_BATCH_$(M)),16) STEPS=$(MOBILE_STEPS_$(M)) \
	    OUT=runs/mobile/$(M) ARGS="--workers 1 --warmup-steps $(or $(MOBILE_WARMUP_$(M)),50) \
	    --checkpoint-every 100 --log-every 25 $(SEED_ARGS)"
mobile-models: $(STAMP)
	for m in $(MOBILE_MODELS); do $(MAKE) --no-print-directory mobile-model M=$$m || exit 1; done

mobile-model: $(STAMP)
	$(if $(filter student,$(M)),$(MAKE) distill STUDENT=$(MOBILE_PRESET_student) $(MOBILE_RECIPE),$(MAKE) \
	    mobile-pretrain OBJECTIVE=$(M) MOBILE_PRESET=mobile-quarter $(MOBILE_RECIPE))
	$(PY) -m encodecmae_hear bundle runs/mobile/$(M) -o checkpoints/mobile-$(M).pt --half --hardware "$(HARDWARE)"

# Their HEAR rows beside the bundled default's (make prove-default): runs/proof/.
prove-mobile: $(STAMP)
	$(PY) -m encodecmae_hear synth-tasks --out $(TASKS)
	for m in $(MOBILE_MODELS); do $(MAKE) --no-print-directory hear $(PROOF) \
	    MODULE=encodecmae_hear.mobile_hear MODEL=checkpoints/mobile-$$m.pt LABEL=mobile-$$m || exit 1; done

corpus: $(STAMP)
	$(PY) -m encodecmae_hear corpus --out $(CORPUS) --pack

heldout-tasks: $(STAMP)
	$(PY) -m encodecmae_hear heldout-tasks --corpus $(CORPUS) --out $(TASKS)

# Choose models on these (make hear SUITE=valid TASKS_DIR=$(VALID)); report the proof once.
valid-tasks: $(STAMP)
	$(PY) -m encodecmae_hear valid-tasks --corpus $(CORPUS) --out $(VALID)

# The bundled default (checkpoints/README.md): the recipe it was trained with, then the
# release; re-running resumes the run. It was trained in two stages: 2,400 steps, then
# the same run resumed with STEPS=4400, which restarts the cosine schedule over the
# longer horizon (lr 2.5e-4 at step 2,400). Stage 1 writes model.pt when it finishes,
# so stage 1 is skipped once that file exists. HARDWARE is recorded in the checkpoint.
# TEACHERS=crepe,resemblyzer,vad adds those teachers' k-means streams (pip install
# '.[teachers]'; docs/TRAINING.md, "Teacher targets") in a run folder of its own;
# TEACHER_WEIGHTS=0.5 (one for all, or one per teacher) weights their losses.
comma := ,
TEACHERS        ?=
TEACHER_WEIGHTS ?=
# `make teacher-cache` computes the teachers' features of the corpus once (docs/TRAINING.md,
# "Caching the teacher features"); runs with TEACHERS read them when the cache is there.
# A run resumes as it started: TEACHER_CACHE= resumes one started without the cache.
TEACHER_CACHE   ?= $(CORPUS)/teacher_cache
# All three by default; cached, GE2E and VAD target the file's context rather than the
# crop's, and CACHED_TEACHERS=crepe keeps them on the fly (docs/TRAINING.md, "Which
# teachers to cache", has the costs and how far cached features differ).
CACHED_TEACHERS ?= crepe,resemblyzer,vad
TEACHER_ARGS = $(if $(TEACHERS),--teachers $(TEACHERS) $(if $(TEACHER_WEIGHTS),--teacher-weights $(TEACHER_WEIGHTS)) \
               $(if $(TEACHER_CACHE),$(if $(wildcard $(TEACHER_CACHE)/cache.json),--teacher-cache $(TEACHER_CACHE))))
DEFAULT_RUN ?= runs/default$(if $(TEACHERS),-$(subst $(comma),-,$(TEACHERS)))
DEFAULT_LAYER_REASON = chosen on the held-out tasks themselves (there is no separate validation suite): 5-fold logistic-regression probe of the 4,400-step model on the four k-fold scene tasks, input+concat 80.6, concat 80.4, last 77.8 (%); heareval runs of every variant: README, section 'The bundled default model'
HARDWARE    ?= unknown
# Scene whitening (docs/EVALUATE.md, "Why heareval scores below a probe"): 512 axes of the
# scene embeddings of 2,048 corpus crops of 1 s, chosen on the validation suite; stored in
# the checkpoint, used only with the HEAR option {"whiten_scene": true}.
SCENE_DIMS      ?= 512
SCENE_WHITENING = --scene-dims $(SCENE_DIMS) --scene-crops 2048 --scene-seconds 1
SEED_ARGS ?=
DEFAULT_PRETRAIN = $(MAKE) pretrain DATA=$(CORPUS)/packed PRESET=mini FRONTEND=mel256 BATCH=16 \
	    OUT=$(DEFAULT_RUN) ARGS="--targets mel-kmeans --clusters 512 --lr 5e-4 --warmup-steps 200 \
	    --schedule cosine --workers 1 --checkpoint-every 200 --log-every 25 $(TEACHER_ARGS) $(SEED_ARGS)"
default-model: $(STAMP)
	test -f $(DEFAULT_RUN)/model.pt || $(DEFAULT_PRETRAIN) STEPS=2400
	$(DEFAULT_PRETRAIN) STEPS=4400
	$(PY) -m encodecmae_hear bundle $(DEFAULT_RUN) -o checkpoints/default.pt --half --hardware "$(HARDWARE)" \
	    --hear-layer input+concat --hear-layer-reason "$(DEFAULT_LAYER_REASON)"
	$(PY) -m encodecmae_hear embedding-stats checkpoints/default.pt --data $(CORPUS)/packed $(SCENE_WHITENING)

# The teacher ablation (issue 16): the default recipe's first stage (ABLATION_STEPS) with
# mel-kmeans only, each teacher alone and all three, for training seeds 1..SEEDS; each run
# in runs/ablation/<teachers>-seed<N>, released as the default is (layer input+concat,
# frame statistics) to release.pt there. At 2,400 steps a run should take about 75-95
# minutes on a 2-core Xeon (1.9-2.4 s a step) and 32-42 on a 2-core EPYC (0.8-1.0 s),
# scaled from 1,000-step runs (docs/TRAINING.md, "Each teacher alone, and all three" and
# "Seeds 2 and 3 on a fresh machine").
# `make teacher-ablation-valid` scores every release.pt there on the validation suite
# (runs/ablation-valid/; never the proof suite) and writes its tables: results.md, one
# column per trained model, and by-recipe.md, mean ± std over training seeds per recipe.
ABLATION       ?= mel crepe resemblyzer vad crepe,resemblyzer,vad
ABLATION_STEPS ?= 2400
ABLATION_LAYER_REASON = the bundled default's layer, so that the ablation compares like with like
teacher-ablation: $(STAMP)
	for t in $(ABLATION); do for s in $$(seq 1 $(SEEDS)); do \
	    $(MAKE) teacher-ablation-run DEFAULT_RUN=runs/ablation/$$(echo $$t | tr , -)-seed$$s \
	        STEPS=$(ABLATION_STEPS) SEED_ARGS="--seed $$s" TEACHERS=$$(test $$t = mel || echo $$t) || exit 1; \
	done; done

teacher-cache: $(STAMP)
	$(PY) -m encodecmae_hear cache-teachers --data $(CORPUS)/packed --teachers $(CACHED_TEACHERS) \
	    --out $(TEACHER_CACHE)

teacher-ablation-run: $(STAMP)
	$(DEFAULT_PRETRAIN)
	$(PY) -m encodecmae_hear bundle $(DEFAULT_RUN) -o $(DEFAULT_RUN)/release.pt --half --hardware "$(HARDWARE)" \
	    --hear-layer input+concat --hear-layer-reason "$(ABLATION_LAYER_REASON)"
	$(PY) -m encodecmae_hear embedding-stats $(DEFAULT_RUN)/release.pt --data $(CORPUS)/packed

teacher-ablation-valid: $(STAMP)
	@ls runs/ablation/*/release.pt >/dev/null 2>&1 || { echo "no runs/ablation/*/release.pt: run make teacher-ablation first"; exit 1; }
	for m in runs/ablation/*/release.pt; do \
	    $(MAKE) hear TASKS_DIR=$(VALID) SUITE=valid RUNS=runs/ablation-valid SEEDS=3 GRID_POINTS=1 \
	        MODEL=$$m LABEL=$$(basename $$(dirname $$m)) || exit 1; \
	done
	$(PY) -m encodecmae_hear hear-table --runs runs/ablation-valid --suite valid --by-training-seed --stem by-recipe

# The bundled model, the same architecture with random weights and hearbaseline.naive on
# the held-out tasks plus the synthetic suite; table and plot in runs/proof/.
PROOF = TASKS_DIR=$(TASKS) SUITE=proof RUNS=runs/proof SEEDS=3 GRID_POINTS=1
prove-default: $(STAMP)
	$(PY) -m encodecmae_hear synth-tasks --out $(TASKS)
	$(PY) -m encodecmae_hear init --preset mini --frontend mel256 -o runs/random-mini.pt
	$(PY) -m encodecmae_hear embedding-stats runs/random-mini.pt --data $(CORPUS)/packed
	$(MAKE) hear $(PROOF) MODEL=checkpoints/default.pt LABEL=default
	$(MAKE) hear $(PROOF) MODEL=runs/random-mini.pt LABEL=random-mini OPTIONS='{"layer": "input+concat"}'
	$(MAKE) hear $(PROOF) MODULE=encodecmae_hear.evaluate.naive_baseline LABEL=naive

# --- HEAR evaluation (docs/EVALUATE.md). Re-running resumes; FORCE=1 redoes finished steps.
TASKS_DIR   ?= tasks
SUITE       ?= hear18
SEEDS       ?= 3
OPTIONS     ?= {}
DEVICE      ?=
RUNS        ?= runs/hear
LABEL       ?=
GRID_POINTS ?=
FORCE       ?=
MODULE      ?=
HEAR_ARGS = --tasks-dir $(TASKS_DIR) --suite $(SUITE) --runs $(RUNS) --options '$(OPTIONS)' \
            $(if $(MODEL),--model $(MODEL)) $(if $(LABEL),--label $(LABEL)) $(if $(MODULE),--module $(MODULE)) \
            $(if $(DEVICE),--device $(DEVICE)) $(if $(FORCE),--force)
PREDICT_ARGS = --seeds $(SEEDS) $(if $(GRID_POINTS),--grid-points $(GRID_POINTS))

hear-validate: $(STAMP)
	$(PY) -m encodecmae_hear hear-validate $(if $(MODEL),--model $(MODEL)) $(if $(MODULE),--module $(MODULE)) $(if $(DEVICE),--device $(DEVICE))

hear-embed: $(STAMP)
	$(PY) -m encodecmae_hear hear-embed $(HEAR_ARGS)

hear-predict: $(STAMP)
	$(PY) -m encodecmae_hear hear-predict $(HEAR_ARGS) $(PREDICT_ARGS)

hear-table: $(STAMP)
	$(PY) -m encodecmae_hear hear-table --runs $(RUNS) --suite $(SUITE)

hear: hear-validate
	$(PY) -m encodecmae_hear hear $(HEAR_ARGS) $(PREDICT_ARGS)

synth-tasks: $(STAMP)
	$(PY) -m encodecmae_hear synth-tasks --out $(TASKS_DIR)

clean:
	rm -rf $(VENV) build *.egg-info
