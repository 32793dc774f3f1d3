# One virtual environment at .venv, filled in two steps so the demo starts fast:
#   the twin's packages (requirements-twin.txt, ~420 MB): make demo, local, submit, results;
#   everything else (requirements-dev.txt: torch CPU, SageMaker SDK, pytest; the SAM CLI in its own venv at
#   .venv/sam-cli because it pins boto3/click exactly; asl-validator from npm): make test, lint, build, train.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TWIN_STAMP := $(VENV)/.twin-installed
DEV_STAMP := $(VENV)/.dev-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check
# `sam build` needs the Lambda runtime's Python (3.13) on PATH; pyenv keeps one here.
PY313_BIN := $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin))
SAM_PATH := $(if $(PY313_BIN),$(PY313_BIN):)$(CURDIR)/$(BIN):$(PATH)
SAM := PATH="$(SAM_PATH)" sam

PORT ?= 4590
ENDPOINT_PORT ?= 4591
API_PORT ?= 4593
AUTH_PORT ?= 4594
REVIEW_PORT ?= 4592
STACK ?= scones-vehicle-classifier
DATA_DIR ?= data/staged
TRAIN_DATA ?= $(DATA_DIR)/train
EVAL_DATA ?= $(DATA_DIR)/test

.PHONY: help venv venv-dev browser test test-reliability lint build demo demo-drift local review requeue submit \
        results data train evaluate serve benchmark benchmark-twin benchmark-cold-start deploy delete logs traces clean

help:
	@echo "On this machine (no AWS account, no Docker):"
	@echo "  make demo        the whole flow on the local twin, 24 sample photos (main job)"
	@echo "  make demo-drift  the demo on darkened copies: the drift report detects it"
	@echo "  make local       run the twin until Ctrl-C (*PORT variables move its ports)"
	@echo "  make submit PHOTO=file-or-folder   upload to the twin (or STACK=name), wait"
	@echo "  make results     every recorded outcome (of the twin, or STACK=name)"
	@echo "  make review      the review page's address (of the twin, or STACK=name)"
	@echo "  make requeue     send every undecided record's review message again"
	@echo "  make test        the test suite (offline; installs chromium with apt-get)"
	@echo "  make test-reliability   the reliability suite alone (bad uploads, faults)"
	@echo "  make browser     just install chromium for the review page's browser test"
	@echo "  make lint        ruff, cfn-lint, checkov, sam validate --lint, asl-validator"
	@echo "Model:"
	@echo "  make data        stage CIFAR-100 into $(DATA_DIR) (ARCHIVE=path: a local copy)"
	@echo "  make train       train on $(TRAIN_DATA), export to build/model"
	@echo "  make evaluate    the shipped model (MODEL=dir: another) on $(EVAL_DATA)"
	@echo "  make serve       the shipped model as a SageMaker-style endpoint on :8080"
	@echo "  make benchmark   ONNX Runtime vs PyTorch eager vs the HTTP endpoint"
	@echo "  make benchmark-twin         uploads/s, latency and CPU per image of the twin"
	@echo "  make benchmark-cold-start   each function's size and import time, as built"
	@echo "AWS (credentials, and AWS_DEFAULT_REGION or a profile):"
	@echo "  make build       sam build (needs python3.13 on PATH)"
	@echo "  make deploy ENDPOINT_NAME=...   sam build + deploy (guided the first time)"
	@echo "  make delete      empty the intake bucket, sam delete (keeps decisions, labels)"
	@echo "  make logs | make traces   sam logs / sam traces (STACK=name)"
	@echo "  make clean       remove build outputs (.aws-sam, build)"

venv: $(TWIN_STAMP)
venv-dev: $(DEV_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TWIN_STAMP): requirements-twin.txt | $(BIN)/python
	@echo "==> installing the twin's packages into $(VENV) (about 420 MB, first run only)"
	$(PIP) install --progress-bar on -r requirements-twin.txt
	touch $@

$(DEV_STAMP): $(TWIN_STAMP) requirements-dev.txt requirements-sam.txt requirements-checkov.txt \
		requirements-torchserve.txt package.json package-lock.json
	@echo "==> installing test, training and SageMaker packages into $(VENV) (torch CPU, about 2 GB)"
	$(PIP) install --progress-bar on -r requirements-dev.txt
	@echo "==> installing the SAM CLI into $(VENV)/sam-cli"
	test -x $(VENV)/sam-cli/bin/python || $(PYTHON) -m venv $(VENV)/sam-cli
	$(VENV)/sam-cli/bin/python -m pip --disable-pip-version-check install --progress-bar on -r requirements-sam.txt
	ln -sf ../sam-cli/bin/sam $(BIN)/sam
	ln -sf ../sam-cli/bin/cfn-lint $(BIN)/cfn-lint
	@echo "==> installing checkov into $(VENV)/checkov"
	test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip --disable-pip-version-check install --progress-bar on -r requirements-checkov.txt
	ln -sf ../checkov/bin/checkov $(BIN)/checkov
	@echo "==> installing the SageMaker PyTorch serving toolkit and TorchServe into $(VENV)/torchserve (its test)"
	test -x $(VENV)/torchserve/bin/python || $(PYTHON) -m venv $(VENV)/torchserve
	$(VENV)/torchserve/bin/python -m pip --disable-pip-version-check install --progress-bar on \
		-r requirements-torchserve.txt
	@echo "==> installing asl-validator (npm)"
	npm ci --no-audit --no-fund
	touch $@

# The browser test drives Debian's chromium (Playwright's own browser download is not reachable here).
browser:
	@command -v chromium >/dev/null || { \
		echo "==> installing chromium (apt-get) for the review page's browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: $(DEV_STAMP) browser
	PATH="$(SAM_PATH)" $(BIN)/python -m pytest $(PYTEST_ARGS)

# The promise of one true record per upload alone: the upload corpus, 1,000 uploads, overwrites, outages, faults.
test-reliability: $(DEV_STAMP)
	$(BIN)/python -m pytest -m reliability $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml
	$(BIN)/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download
	$(SAM) validate --lint
	npx --no-install asl-validator --json-path statemachine/*.asl.json

build: $(DEV_STAMP)
	$(SAM) build

demo: $(TWIN_STAMP)
	$(BIN)/python -m local demo $(if $(IMAGES),--images "$(IMAGES)")

demo-drift: $(TWIN_STAMP)
	$(BIN)/python -m local demo --shift dark --out build/demo-drift $(if $(IMAGES),--images "$(IMAGES)")

local: $(TWIN_STAMP)
	$(BIN)/python -m local --port $(PORT) --endpoint-port $(ENDPOINT_PORT) --api-port $(API_PORT) --auth-port $(AUTH_PORT) \
		--review-port $(REVIEW_PORT)

# STACK given on the command line (make results STACK=name) means a deployed stack; otherwise the twin.
WHERE = $(if $(filter command line environment,$(origin STACK)),--stack "$(STACK)",--port $(PORT))

submit: $(TWIN_STAMP)
	@test -n "$(PHOTO)" || { echo "usage: make submit PHOTO=<photo or folder> [STACK=<deployed stack>]" >&2; exit 2; }
	$(BIN)/python -m client submit "$(PHOTO)" $(WHERE)

results: $(TWIN_STAMP)
	$(BIN)/python -m client results $(WHERE)

review: $(TWIN_STAMP)
	$(BIN)/python -m review $(WHERE)

requeue: $(TWIN_STAMP)
	$(BIN)/python -m review requeue $(WHERE)

data: $(DEV_STAMP)
	$(BIN)/python -m training stage-data --out $(DATA_DIR) $(if $(ARCHIVE),--archive "$(ARCHIVE)")

train: $(DEV_STAMP)
	$(BIN)/python -m training train --data-dir $(TRAIN_DATA) --model-dir build/model

evaluate: $(DEV_STAMP)
	$(BIN)/python -m training evaluate --data-dir $(EVAL_DATA) $(if $(MODEL),--model "$(MODEL)")

serve: $(TWIN_STAMP)
	$(BIN)/python -m training serve --model-dir training/model --port 8080

benchmark: $(DEV_STAMP)
	$(BIN)/python -m training benchmark --data-dir $(EVAL_DATA)

benchmark-twin: $(TWIN_STAMP)
	$(BIN)/python -m local benchmark

benchmark-cold-start: $(TWIN_STAMP)
	PATH="$(SAM_PATH)" $(BIN)/python -m local cold-starts

# First deploy: guided (asks for the stack name, region and parameters and saves them in samconfig.toml).
deploy: $(DEV_STAMP)
	$(SAM) build
	@if [ -n "$(ENDPOINT_NAME)" ]; then \
		$(SAM) deploy --stack-name $(STACK) --parameter-overrides EndpointName=$(ENDPOINT_NAME); \
	elif grep -q 'EndpointName=REPLACE-ME' samconfig.toml; then \
		echo "==> first deploy: guided (have your SageMaker endpoint name ready; see docs/sagemaker.md)"; \
		$(SAM) deploy --guided --stack-name $(STACK); \
	else \
		$(SAM) deploy --stack-name $(STACK); \
	fi

delete: $(DEV_STAMP)
	$(BIN)/python -m client empty-bucket --stack "$(STACK)"
	$(SAM) delete --stack-name $(STACK)

logs: $(DEV_STAMP)
	$(SAM) logs --stack-name $(STACK) --tail

traces: $(DEV_STAMP)
	$(SAM) traces --tail

clean:
	rm -rf .aws-sam build
