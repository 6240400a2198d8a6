# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install run test lint format bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the local CPU wheel: a bare `torch` requirement would pull
# several GB of CUDA packages. laion-clap with --no-deps: its numpy<2 pin conflicts
# with pyarrow>=26; its real runtime deps are in pyproject.toml.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps laion-clap==1.1.7
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/forge run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Headless Chromium for the review viewer's browser tests (Debian packages). Skipped when
# both are present; if apt-get cannot install them the browser tests skip with a warning.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	echo "WARNING: chromium + chromium-driver not installed: the viewer's browser tests will skip"

test: install lint browser
	$(BIN)/python -m pytest

# Each script prints its figures and the ratio to a baseline measured in the same run.
bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/llm.py --sweep --requests 400 --repeats 2 --latency 0.5 --knee 8 --capacity 12
	$(BIN)/python bench/auditorybench_pitch.py
	$(BIN)/python bench/clap.py
	$(BIN)/python bench/orchestration.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/redact.py
	$(BIN)/python bench/sound_groups.py
	$(BIN)/python bench/nlar_pairs.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf warehouse/data warehouse/forge.duckdb warehouse/.catalog.json warehouse/prefect_results
