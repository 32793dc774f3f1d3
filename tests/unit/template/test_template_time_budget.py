"""Every execution ends (with a record, or in a queue) well inside the EXPRESS workflow's 5-minute limit.

An EXPRESS execution that runs past 5 minutes is stopped with an error no Catch sees: no record, no queue.
So every Task has its own timeout, and the slowest path through the machine - each Task retried to its
last attempt, each attempt taking its whole timeout, each backoff its longest - must stay inside a budget.
"""

from __future__ import annotations

import json
import re

import pytest

EXPRESS_LIMIT_S = 300
BUDGET_S = 240  # a fifth of the limit left for transitions, queueing and clock skew
LAMBDA_INVOKE = "${LambdaInvoke}"


@pytest.fixture(scope="module")
def machine(raw_template, repo):
    (props,) = (r["Properties"] for r in raw_template["Resources"].values()
                if r["Type"] == "AWS::Serverless::StateMachine")
    return props, json.loads((repo / props["DefinitionUri"]).read_text())


def retry_delays(retrier: dict) -> float:
    """The longest total wait of one retrier (full jitter waits at most the computed interval)."""
    interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    return sum(min(interval * rate ** i, cap) for i in range(retrier.get("MaxAttempts", 3)))


def task_worst_case(state: dict) -> float:
    """Every retrier used to its last attempt, every attempt timing out."""
    retriers = state.get("Retry", [])
    attempts = 1 + sum(r.get("MaxAttempts", 3) for r in retriers)
    return attempts * state["TimeoutSeconds"] + sum(retry_delays(r) for r in retriers)


def slowest_path(definition: dict) -> tuple[float, list[str]]:
    states = definition["States"]

    def successors(state: dict) -> list[str]:
        nxt = [state["Next"]] if "Next" in state else []
        nxt += [c["Next"] for c in state.get("Choices", [])] + ([state["Default"]] if "Default" in state else [])
        return nxt + [c["Next"] for c in state.get("Catch", [])]

    def longest(name: str, seen: frozenset) -> tuple[float, list[str]]:
        assert name not in seen, f"the machine loops through {name}"
        state = states[name]
        own = task_worst_case(state) if state["Type"] == "Task" else 0.0
        tails = [longest(n, seen | {name}) for n in successors(state)]
        tail = max(tails, default=(0.0, []))
        return own + tail[0], [name] + tail[1]

    return longest(definition["StartAt"], frozenset())


def test_every_task_has_its_own_timeout_above_its_functions(raw_template, machine):
    props, definition = machine
    substitutions = props["DefinitionSubstitutions"]
    checked = 0
    for name, state in definition["States"].items():
        if state["Type"] != "Task":
            continue
        assert isinstance(state.get("TimeoutSeconds"), int), name
        if state["Resource"] == LAMBDA_INVOKE and state["Parameters"].get("Payload.$") == "$":
            # a function's own work: its own timeout comes first, so the record names it (FunctionTimeout),
            # with room for a cold start's initialisation
            placeholder = re.fullmatch(r"\$\{(\w+)\}", state["Parameters"]["FunctionName"]).group(1)
            function = substitutions[placeholder]["Fn::GetAtt"][0]
            timeout = raw_template["Resources"][function]["Properties"]["Timeout"]
            assert state["TimeoutSeconds"] >= timeout + 3, name
            checked += 1
    assert checked == 3  # serialize, classify, filter
    # DecodeKey asks serialize for a key alone, no image read: a short timeout bounds the failure path.
    decode = definition["States"]["DecodeKey"]
    assert decode["Parameters"]["Payload"] == {"decode_key.$": "$"} and decode["TimeoutSeconds"] <= 5


def test_the_slowest_path_stays_well_inside_the_express_limit(machine, repo):
    seconds, path = slowest_path(machine[1])
    assert seconds <= BUDGET_S < EXPRESS_LIMIT_S, f"{seconds:.0f} s through {' -> '.join(path)}"
    pipeline = (repo / "docs" / "pipeline.md").read_text()
    assert f"at most {seconds:.0f} s" in pipeline  # the figure docs/pipeline.md promises is this definition's


def test_the_budget_counts_what_it_should():
    """The computation itself: 1 try + 2 retries of 10 s, waits of at most 1 and 2 s; a cap applies."""
    state = {"TimeoutSeconds": 10, "Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 1, "MaxAttempts": 2,
                                               "BackoffRate": 2}]}
    assert task_worst_case(state) == 3 * 10 + 1 + 2
    assert retry_delays({"IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2, "MaxDelaySeconds": 8}) == 23
