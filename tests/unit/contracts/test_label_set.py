"""The label set has one home (contracts.labels); the copies the stack cannot import from it stay equal to it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from samtranslator.yaml_helper import yaml_parse

from contracts.labels import CLASS_NAMES, UNUSABLE

REPO = Path(__file__).resolve().parents[3]


def _constant(path: Path, name: str):
    """A module-level constant of a deploy unit, read without importing it (it reads its environment)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.relative_to(REPO)} defines no {name}")


def test_the_class_names_are_the_shipped_models_in_its_output_order():
    assert tuple(json.loads((REPO / "training" / "model" / "metadata.json").read_text())["classes"]) == CLASS_NAMES


def test_the_stack_and_its_functions_default_to_the_same_class_names():
    template = yaml_parse((REPO / "template.yaml").read_text())
    assert tuple(template["Parameters"]["ClassNames"]["Default"].split(",")) == CLASS_NAMES
    classify = _constant(REPO / "functions" / "classify" / "app.py", "DEFAULT_CLASS_NAMES")
    assert tuple(classify.split(",")) == CLASS_NAMES


def test_the_review_api_offers_the_same_extra_label():
    assert _constant(REPO / "functions" / "reviews" / "decisions.py", "UNUSABLE") == UNUSABLE
    assert UNUSABLE not in CLASS_NAMES
