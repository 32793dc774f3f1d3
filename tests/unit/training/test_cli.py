"""`python -m training`: one command line for the model's whole life, each command with its own options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.__main__ import COMMANDS, main

REPO = Path(__file__).resolve().parents[3]


def test_help_lists_every_command_in_one_process():
    run = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    listed = [line.split()[0] for line in run.stdout.split("commands:\n", 1)[1].splitlines() if line.strip()]
    assert listed == list(COMMANDS) == ["stage-data", "train", "cv", "evaluate", "gate", "quantize", "export",
                                        "serve", "benchmark", "sagemaker"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_answers_help_under_its_own_name(command, help_text):
    assert help_text(main, [command]).startswith(f"usage: python -m training {command}")


def test_an_unknown_command_is_one_line_naming_the_choices():
    run = subprocess.run([sys.executable, "-m", "training", "deploy"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    error = run.stderr.strip().splitlines()[-1]
    assert "invalid choice: 'deploy'" in error and "sagemaker" in error


def test_the_sagemaker_commands_are_one_group(help_text):
    out = help_text(main, ["sagemaker"])
    for command in ("train", "deploy", "monitor", "register", "update", "promote", "rollback", "teardown"):
        assert command in out
