# How `sam build` builds each function: template.yaml sets `BuildMethod: makefile`, and each
# functions/<name>/Makefile includes this file. It does what SAM's default Python builder does, plus bytecode:
#   1. the function's requirements, as wheels for the Lambda platform (python3.13 on arm64);
#   2. the function's own modules, and its assets/ folder if it has one (the review page's HTML, script, style);
#   3. every module compiled for the runtime's Python, so a cold start loads bytecode instead of compiling
#      the sources of Powertools, pydantic and Pillow first (about half of each function's import time).
# --invalidation-mode unchecked-hash: Lambda's /var/task is read-only and zip timestamps have 2 s resolution,
# so timestamp-checked .pyc files could be judged stale and recompiled in memory at every cold start.
PYTHON ?= python3.13
# PIP_PLATFORM= (empty) builds for this machine instead, e.g. to measure import times locally.
PIP_PLATFORM ?= --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --implementation cp \
                --python-version 3.13 --only-binary=:all:
SOURCE_DIR := $(dir $(firstword $(MAKEFILE_LIST)))

build-%:
	$(PYTHON) -m pip install --disable-pip-version-check --quiet --no-compile -r "$(SOURCE_DIR)requirements.txt" \
		--target "$(ARTIFACTS_DIR)" $(PIP_PLATFORM)
	cp "$(SOURCE_DIR)"*.py "$(ARTIFACTS_DIR)/"
	if [ -d "$(SOURCE_DIR)assets" ]; then cp -R "$(SOURCE_DIR)assets" "$(ARTIFACTS_DIR)/"; fi
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)"
