# One virtual environment at .venv holds everything: tests, the local twin, training.
# The SAM CLI pins boto3/click exactly, so it lives in its own venv inside it (.venv/sam-cli)
# and is linked as .venv/bin/sam.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `sam build` needs the Lambda runtime's Python (3.13) on PATH; pyenv keeps one here.
PY313_BIN := $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin))
SAM_PATH := $(if $(PY313_BIN),$(PY313_BIN):)$(CURDIR)/$(BIN):$(PATH)
PORT ?= 4566

.PHONY: help venv test lint build demo local results train evaluate serve benchmark clean
TRAIN_DATA ?= ../shared/data/cifar100-bikes/train

help:
	@echo "make demo   - run the whole flow on the local twin (main job)"
	@echo "make test   - run the test suite"
	@echo "make local  - start the local twin on 127.0.0.1:$(PORT) (Ctrl-C stops it)"
	@echo "make lint   - cfn-lint, sam validate --lint, asl-validator"
	@echo "make build  - sam build"
	@echo "make train  - train and export a model into build/model (TRAIN_DATA=folder of bicycle/ motorcycle/)"
	@echo "make evaluate DATA=dir - evaluate the shipped model on a labelled folder"
	@echo "make serve  - the shipped model as a local SageMaker endpoint on :8080"
	@echo "make benchmark - ONNX vs PyTorch eager vs the HTTP endpoint"

venv: $(STAMP)

$(STAMP): requirements-dev.txt requirements-sam.txt package.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	test -x $(VENV)/sam-cli/bin/python || $(PYTHON) -m venv $(VENV)/sam-cli
	$(VENV)/sam-cli/bin/python -m pip install --quiet -r requirements-sam.txt
	ln -sf ../sam-cli/bin/sam $(BIN)/sam
	npm ci --silent --no-audit --no-fund
	touch $@

test: $(STAMP)
	PATH="$(SAM_PATH)" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml
	PATH="$(SAM_PATH)" sam validate --lint
	npx --no-install asl-validator --json-path statemachine/*.asl.json

build: $(STAMP)
	PATH="$(SAM_PATH)" sam build

demo: $(STAMP)
	$(BIN)/python -m local.demo $(if $(IMAGES),--images "$(IMAGES)")

local: $(STAMP)
	$(BIN)/python -m local --port $(PORT)

results: $(STAMP)
	$(BIN)/python -m local.results --port $(PORT)

train: $(STAMP)
	$(BIN)/python -m training.train --data-dir $(TRAIN_DATA) --model-dir build/model

evaluate: $(STAMP)
	@test -n "$(DATA)" || { echo "usage: make evaluate DATA=<folder with bicycle/ and motorcycle/>"; exit 2; }
	$(BIN)/python -m training.evaluate --data-dir "$(DATA)"

serve: $(STAMP)
	$(BIN)/python -m training.serve --model-dir training/model --port 8080

benchmark: $(STAMP)
	$(BIN)/python -m training.benchmark

clean:
	rm -rf .aws-sam build
