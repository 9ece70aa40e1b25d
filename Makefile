# Thin wrapper: every target calls the package's own CLI, where the logic lives.
# `make demo` and `make test` install into .venv first when needed.
# `make help` prints the targets by group from their own comments: a line `##@ Group`
# opens a group, `target: ... ## text` describes a target. Targets without `## ` are
# internal steps of another target. The recipes that rebuild our own models: recipes.mk.

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

# --- Variables (each target's help line names the ones it reads)
MODEL    ?=
AUDIO    ?=
OUT      ?=
DEVICE   ?=
ARGS     ?=
DATA     ?= corpus.jsonl
PRESET   ?= base
FRONTEND ?= mel256
STEPS    ?=
BATCH    ?= 128
GPUS     ?= 1
NNODES   ?= 1
RDZV     ?=
FROM     ?= runs/$(PRESET)-$(FRONTEND)/model.pt
OBJECTIVE     ?= cbow
MOBILE_PRESET ?= mobile-half
STUDENT       ?= mobile-quarter
TEACHER       ?=
# HEAR evaluation (docs/EVALUATE.md). Re-running resumes; FORCE=1 redoes finished steps.
TASKS_DIR   ?= tasks
SUITE       ?= hear18
SEEDS       ?= 3
OPTIONS     ?= {}
RUNS        ?= runs/hear
LABEL       ?=
GRID_POINTS ?=
FORCE       ?=
MODULE      ?=
# Where the recipes of recipes.mk keep their corpus and task folders (gpu-check reads
# $(CORPUS)/packed when it is there).
CORPUS  ?= ../corpus
TASKS   ?= ../heldout_tasks
VALID   ?= ../valid_tasks

# One process, or torchrun with GPUS processes per node (several nodes: NNODES=2
# RDZV=node0:29500 on every node).
ifeq ($(GPUS)$(NNODES),11)
LAUNCH   := $(PY) -m encodecmae_hear
else
LAUNCH   := $(VENV)/bin/torchrun --nnodes=$(NNODES) --nproc_per_node=$(GPUS) \
            $(if $(RDZV),--rdzv_backend=c10d --rdzv_endpoint=$(RDZV),--standalone) -m encodecmae_hear
endif
TRAIN_ARGS = --data $(DATA) --batch-size $(BATCH) $(if $(STEPS),--steps $(STEPS)) --resume $(ARGS)
HEAR_ARGS = --tasks-dir $(TASKS_DIR) --suite $(SUITE) --runs $(RUNS) --options '$(OPTIONS)' \
            $(if $(MODEL),--model $(MODEL)) $(if $(LABEL),--label $(LABEL)) $(if $(MODULE),--module $(MODULE)) \
            $(if $(DEVICE),--device $(DEVICE)) $(if $(FORCE),--force)
PREDICT_ARGS = --seeds $(SEEDS) $(if $(GRID_POINTS),--grid-points $(GRID_POINTS))

.DEFAULT_GOAL := help
HELP_GROUPS := Use,Evaluate,Train,Reproduce our models,Develop
.PHONY: help install demo embed fetch models
.PHONY: hear hear-validate hear-embed hear-predict hear-table synth-tasks
.PHONY: manifest pretrain selftrain mobile-pretrain distill gpu-check
.PHONY: test wheel-check bench bench-train clean

##@ Use
install: $(STAMP) ## build .venv (pinned by constraints.txt) with the HEAR tools

# The HEAR 2021 tools, the dependencies they really use, torchaudio beside a CPU torch and
# the .pth file that makes the tools work in the venv: tools/install_hear_tools.py, the
# recipe that `make wheel-check` uses too.
$(STAMP): setup.cfg setup.py constraints.txt tools/install_hear_tools.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,hear,mobile,teachers]'
	$(PY) tools/install_hear_tools.py
	touch $(STAMP)

demo: $(STAMP) ## install if needed, validate the bundled model, time embeddings [MODEL=]
	$(PY) -m encodecmae_hear demo $(if $(MODEL),--model $(MODEL))

# MODEL: a checkpoint file, a bundled or local name, or a published name (mel256-ec-base_st).
fetch: $(STAMP) ## MODEL=mel256-ec-base_st [REVISION=]: fetch a published model, print path
	$(PY) -m encodecmae_hear fetch $(MODEL) $(if $(REVISION),--revision $(REVISION))

models: $(STAMP) ## the models a MODEL= name loads: bundled, local, fetched, published
	$(PY) -m encodecmae_hear models

# GPUS=N runs N processes with torchrun (docs/EMBED.md).
embed: $(STAMP) ## AUDIO='files, dirs, .jsonl' OUT=dir [MODEL= DEVICE= GPUS= ARGS=--scene]
	$(LAUNCH) embed $(AUDIO) --out $(OUT) $(if $(MODEL),--model $(MODEL)) $(if $(DEVICE),--device $(DEVICE)) $(ARGS)

##@ Evaluate
hear: hear-validate ## validate, embed, predict, table [MODEL= TASKS_DIR= SUITE= SEEDS= OPTIONS=]
	$(PY) -m encodecmae_hear hear $(HEAR_ARGS) $(PREDICT_ARGS)

hear-validate: $(STAMP) ## step 1 of hear: hear-validator on MODEL (or MODULE=)
	$(PY) -m encodecmae_hear hear-validate $(if $(MODEL),--model $(MODEL)) $(if $(MODULE),--module $(MODULE)) $(if $(DEVICE),--device $(DEVICE))

hear-embed: $(STAMP) ## step 2 of hear: embeddings of every task into RUNS
	$(PY) -m encodecmae_hear hear-embed $(HEAR_ARGS)

hear-predict: $(STAMP) ## step 3 of hear: heareval's downstream training, SEEDS seeds [GRID_POINTS=]
	$(PY) -m encodecmae_hear hear-predict $(HEAR_ARGS) $(PREDICT_ARGS)

hear-table: $(STAMP) ## step 4 of hear: the score table of RUNS for SUITE
	$(PY) -m encodecmae_hear hear-table --runs $(RUNS) --suite $(SUITE)

synth-tasks: $(STAMP) ## TASKS_DIR=tasks: write the synthetic HEAR suite (SUITE=synthetic)
	$(PY) -m encodecmae_hear synth-tasks --out $(TASKS_DIR)

##@ Train
manifest: $(STAMP) ## AUDIO='dir ...' DATA=corpus.jsonl: scan audio for training
	$(PY) -m encodecmae_hear manifest $(AUDIO) -o $(DATA)

# DATA: a folder of audio, a manifest .jsonl or a folder of .tar shards (docs/TRAINING.md).
# TARGETS: encodec (the official EnCodec's codes, fetched once), mel-kmeans, encodec-untrained.
pretrain: $(STAMP) ## DATA= [PRESET=base FRONTEND=mel256 TARGETS= STEPS= BATCH=128 OUT= GPUS=1]
	$(LAUNCH) pretrain $(TRAIN_ARGS) --preset $(PRESET) --frontend $(FRONTEND) \
	    $(if $(TARGETS),--targets $(TARGETS)) \
	    --out $(or $(OUT),runs/$(PRESET)-$(FRONTEND))

selftrain: $(STAMP) ## FROM=<pretrained ckpt> DATA= [STEPS= BATCH=128 OUT= GPUS=1]; resumes
	$(LAUNCH) selftrain $(TRAIN_ARGS) --from $(FROM) --out $(or $(OUT),$(dir $(FROM))selftrain)

# The mobile line (docs/MOBILE.md): self-supervised pretraining and distillation.
mobile-pretrain: $(STAMP) ## OBJECTIVE=cbow|skipgram|temporalgap MOBILE_PRESET=mobile-half DATA= OUT=
	$(LAUNCH) pretrain-mobile $(TRAIN_ARGS) --objective $(OBJECTIVE) --preset $(MOBILE_PRESET) \
	    --out $(or $(OUT),runs/$(MOBILE_PRESET)-$(OBJECTIVE))

distill: $(STAMP) ## TEACHER=<ckpt; bundled> STUDENT=mobile-quarter DATA= OUT=runs/student
	$(LAUNCH) distill $(TRAIN_ARGS) $(if $(TEACHER),--teacher $(TEACHER)) --preset $(STUDENT) \
	    --out $(or $(OUT),runs/student)

# One prepared script for a short GPU window (docs/TRAINING.md): figures in $OUT or
# runs/gpu-check; the training run uses $(CORPUS)/packed when it is there.
gpu-check: $(STAMP) ## GPU figures in < 10 min: embed and train speed, short runs [OUT=]
	$(PY) -m gpu_check $(if $(OUT),--out $(OUT)) $(if $(wildcard $(CORPUS)/packed),--data $(CORPUS)/packed)

include recipes.mk

##@ Develop
help: ## this list: the targets by group, from their own comments
	@awk 'BEGIN { FS = ":.*## "; n = split("$(HELP_GROUPS)", order, ",") } \
	    /^##@ / { group = substr($$0, 5); next } \
	    /^[a-z][a-z0-9-]*:.*## / { text[group] = text[group] sprintf("  %-22s %s\n", $$1, $$2) } \
	    END { for (i = 1; i <= n; i++) printf "%s\n%s", order[i], text[order[i]] }' $(MAKEFILE_LIST)

test: $(STAMP) ## install if needed, import contracts, the whole test suite, wheel-check
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory wheel-check

# The wheel as a user installs it: built from this checkout, installed with the HEAR tools
# into a fresh venv outside it, then the bundled model, hear-validator and heareval's own
# commands run from another folder (tools/wheel_check.py).
wheel-check: $(STAMP) ## build the wheel, install it in a fresh venv, run the HEAR tools on it
	$(PY) tools/wheel_check.py

bench: $(STAMP) ## embedding speed and memory on this machine (prints figures)
	$(PY) bench/embed.py

bench-train: $(STAMP) ## training throughput on this machine (prints figures)
	$(PY) bench/train.py

clean: ## remove .venv, build/ and *.egg-info
	rm -rf $(VENV) build *.egg-info
