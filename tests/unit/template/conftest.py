"""Fixtures for the template tests: the raw and the transformed template, the functions' code, tools.

Several test folders have a conftest.py, so `import conftest` would be ambiguous: everything here is
handed to the tests as a fixture.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from samtranslator.yaml_helper import yaml_parse

from local.template import Stack

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "template.yaml"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def raw_template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="session")
def load_stack() -> Callable[..., Stack]:
    """template.yaml after the SAM transform, intrinsics resolvable, for stack test-stack in us-east-1."""

    def load(**parameters: str) -> Stack:
        return Stack.load(TEMPLATE, name="test-stack", region="us-east-1",
                          parameters={"EndpointName": "my-endpoint", **parameters})

    return load


@pytest.fixture(scope="session")
def stack(load_stack) -> Stack:
    return load_stack()


@pytest.fixture(scope="session")
def defaults(raw_template) -> dict[str, Any]:
    return {name: p["Default"] for name, p in raw_template["Parameters"].items() if "Default" in p}


@pytest.fixture(scope="session")
def find_tool() -> Callable[[str], str]:
    """A command from PATH (as `make test` sets it up), else from the venv that runs pytest."""

    def find(name: str) -> str:
        found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if not found:
            pytest.fail(f"`{name}` is neither on PATH nor next to {sys.executable}; run `make venv`")
        return found

    return find


@pytest.fixture(scope="session")
def logical_id_of() -> Callable[[Any], str]:
    """The resource a raw Ref / Fn::GetAtt points at (as yaml_parse or the SAM transform writes it)."""

    def target(value: Any) -> str:
        if "Ref" in value:
            return value["Ref"]
        ref = value["Fn::GetAtt"]
        return ref.split(".", 1)[0] if isinstance(ref, str) else ref[0]

    return target


@pytest.fixture(scope="session")
def function_sources(stack) -> dict[str, str]:
    """Python source of each Lambda function's CodeUri folder, by logical id."""
    sources = {lid: "\n".join(p.read_text() for p in sorted(folder.glob("*.py")))
               for lid, folder in stack.code_dirs.items()}
    assert sources and all(sources.values()), f"no function code found: {stack.code_dirs}"
    return sources


@pytest.fixture(scope="session")
def classes_defined() -> Callable[[str], set[str]]:
    return lambda source: set(re.findall(r"^class (\w+)\(", source, flags=re.MULTILINE))


@pytest.fixture(scope="session")
def emitted_metrics(function_sources, repo) -> set[str]:
    """Metric names the functions publish with Powertools: add_metric / single_metric with a literal name, or
    the review function's (name, MetricUnit, value) lists."""
    code = "\n".join(function_sources.values())
    names = set(re.findall(r"(?:add_metric|single_metric)\(\s*name=\"(\w+)\"", code))
    assert names, "no Powertools metrics found in the functions' code"
    listed = set(re.findall(r"\(\"(\w+)\", MetricUnit\.", code))
    assert listed, "no metrics found in the review function's code"
    return names | listed


@pytest.fixture(scope="session")
def emitted_dimensions(function_sources) -> set[str]:
    """Dimension names the functions add (add_dimension / set_default_dimensions)."""
    code = "\n".join(function_sources.values())
    return (set(re.findall(r"add_dimension\(\s*name=\"(\w+)\"", code))
            | set(re.findall(r"set_default_dimensions\(\s*(\w+)=", code)))
