# erv-lab: two commands on a fresh machine (python3, pip and make are all you need).
#   make course   # creates .venv, installs, runs every notebook on the CPU default preset (offline)
#   make test     # creates/updates .venv with dev extras, runs unit tests + notebooks on the smoke preset
PY      ?= python3
VENV    ?= .venv
PRESET  ?= cpu-tiny
SET     ?=
# e.g. make course SET="--set grpo.max_steps=20 --set eval.extra_judges=[gemma]"
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

# Everything runs offline: no Hub downloads anywhere in the CPU presets.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: course test test-gpu venv venv-newest clean strip links reference browser help

help:
	@echo "make course   - run the whole course on the $(PRESET) preset (writes runs/$(PRESET)/)"
	@echo "make test     - run the test suite (unit tests + notebooks on the smoke preset)"
	@echo "make strip    - strip outputs from notebooks before committing"
	@echo "make links    - regenerate the notebooks' Colab badges and install cells from [project.urls]"
	@echo "make reference - maintainers: run the cpu-tiny course and refresh the shipped erv_lab/reference_run/"

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	# trackio (the optional tracker, tested in make test) caps pillow<13 while the pins hold 13.0.0: its
	# dependencies from the pins, then trackio itself without its cap (README, "trackio")
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt brotli gradio_client httpx orjson \
		python-multipart starlette "uvicorn[standard]"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt --no-deps trackio
	touch $(STAMP)

# The newest torch and transformers that pyproject.toml's ranges allow (everything else pinned), beside .venv: the
# numerics set-up of scripts/spread.py that a learner who does not use the pins gets.
NEWEST  ?= .venv-newest
venv-newest:
	test -x $(NEWEST)/bin/python || $(PY) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install --quiet --upgrade pip
	grep -v -E '^(torch|transformers)==' requirements/constraints.txt > $(NEWEST)/constraints-unpinned.txt
	$(NEWEST)/bin/python -m pip install --quiet --upgrade -c $(NEWEST)/constraints-unpinned.txt -e ".[dev]" torch transformers
	$(NEWEST)/bin/python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

course: $(STAMP)
	$(BIN)/erv-lab course --preset $(PRESET) $(SET)

# The browser test drives Debian's Chromium (the only apt use), or the one at $$ERV_LAB_CHROMIUM. Without root it
# is not installed, and the test is skipped, except under CI (CI=1), where it fails.
browser:
	@if [ -x "$${ERV_LAB_CHROMIUM:-/usr/bin/chromium}" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "note: apt could not install chromium; the browser test will skip (or fail under CI=1)"; \
	else echo "note: no /usr/bin/chromium (apt install chromium); the browser test will be skipped"; fi

test: $(STAMP) browser
	@set +e; $(BIN)/python -m pytest -m "not gpu"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests"; fi; exit $$rc

# On a machine with a CUDA GPU: the guards that need one (tests marked gpu; make test leaves them out).
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu

reference: $(STAMP)
	$(BIN)/erv-lab course --preset cpu-tiny --out runs/reference --reference --set "eval.extra_judges=[gemma]" \
		--set grpo.degenerate_lesson=true --set sft.audio_ablation=true \
		--set grpo.grounding_ablation=true $(SET)

links: $(STAMP)
	$(BIN)/python -m erv_lab.notebook_tools links

strip: $(STAMP)
	$(BIN)/python -m erv_lab.notebook_tools strip notebooks/*.ipynb

clean:
	rm -rf $(VENV) runs .pytest_cache
