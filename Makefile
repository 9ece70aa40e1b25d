# Thin wrapper: every target calls the package's own CLI, where the logic lives.
# `make demo` and `make test` install into .venv first when needed.

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
MODEL   ?=

.PHONY: help install demo test bench clean

help:
	@echo "make install   build $(VENV) (pinned by constraints.txt) with the HEAR tools"
	@echo "make demo      install if needed, validate the bundled model, time embeddings"
	@echo "make test      install if needed, run the whole test suite"
	@echo "make bench     embedding speed and memory benchmark (prints figures)"

install: $(STAMP)

$(STAMP): setup.cfg constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,hear]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m encodecmae_hear demo $(if $(MODEL),--model $(MODEL))

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/embed.py

clean:
	rm -rf $(VENV) build *.egg-info
