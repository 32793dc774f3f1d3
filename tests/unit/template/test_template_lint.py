"""The linters a deploy depends on accept the template and the state machine (what `make lint` runs)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest


def _run(command: list[str], cwd, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_cfn_lint_accepts_template(repo, find_tool):
    # The same cfn-lint `make lint` runs (.venv/bin/cfn-lint, shipped with the SAM CLI).
    result = _run([find_tool("cfn-lint"), "template.yaml"], cwd=repo)
    assert result.returncode == 0, f"cfn-lint findings:\n{result.stdout}{result.stderr}"


def test_sam_validate_lint_accepts_template(repo, find_tool):
    # --region: the lint's resource specs are per region; none configured on CI machines.
    result = _run([find_tool("sam"), "validate", "--lint", "--region", "us-east-1"], cwd=repo,
                  SAM_CLI_TELEMETRY="0")
    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}{result.stderr}"
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_asl_validator_accepts_every_state_machine(repo, find_tool):
    definitions = sorted(repo.glob("statemachine/*.asl.json"))
    assert definitions, "no statemachine/*.asl.json found"
    if not (repo / "node_modules" / ".bin" / "asl-validator").exists():
        pytest.fail("node_modules/.bin/asl-validator is missing: run `npm ci` (or `make venv`)")
    command = [find_tool("npx"), "--no-install", "asl-validator"]
    for definition in definitions:
        command += ["--json-path", str(definition.relative_to(repo))]
    result = _run(command, cwd=repo)
    assert result.returncode == 0, f"asl-validator:\n{result.stdout}{result.stderr}"
    for definition in definitions:
        assert f'"{definition.relative_to(repo)}" is valid' in result.stdout


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(repo, raw_template, find_tool):
    # The same checkov `make lint` runs (.venv/bin/checkov, from its own venv); --skip-download: offline.
    result = _run([find_tool("checkov"), "-f", "template.yaml", "--framework", "cloudformation", "--compact",
                   "--skip-download", "--output", "json"], cwd=repo)
    assert result.returncode == 0, f"checkov findings:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
    summary = json.loads(result.stdout)["summary"]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0 and summary["passed"] > 0
    skips = [(lid, skip) for lid, resource in raw_template["Resources"].items()
             for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    assert len(skips) == summary["skipped"]
    for lid, skip in skips:  # each skip says why, in a sentence
        assert len(skip.get("comment", "")) > 40, f"{lid}: {skip['id']} is skipped without a reason"
