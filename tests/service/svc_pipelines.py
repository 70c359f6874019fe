"""The pipelines the service tests serve, in the test process and in service subprocesses."""

from __future__ import annotations

import threading
import time

import stagewidget as sw

# In-process tests open these to let a "gated" run finish: {"gate": name} waits on GATES[name].
GATES: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def gate(name: str) -> threading.Event:
    """The event a gated run named ``name`` waits for (created on first use)."""
    with _gates_lock:
        return GATES.setdefault(name, threading.Event())


square = sw.Pipeline("square")


@square.stage
def prepare(data: dict):
    n = data.get("n") if isinstance(data, dict) else None
    if not isinstance(n, int) or not 0 <= n <= 1_000_000:
        raise ValueError(f"input must be {{'n': int between 0 and 1000000}} (got {data!r})")
    return list(range(n))


@square.stage
def compute(items):
    return {"sum_of_squares": sum(x * x for x in sw.track(items, desc="squares"))}


slow = sw.Pipeline("slow")


@slow.stage
def tick(data: dict):
    """``steps`` steps of ``step_s`` seconds each: a stand-in for real work."""
    steps, step_s = int(data.get("steps", 100)), float(data.get("step_s", 0.05))
    for _ in sw.track(range(steps), desc="steps"):
        time.sleep(step_s)
    return steps


gated = sw.Pipeline("gated")


@gated.stage
def wait_for_gate(data: dict):
    event = gate(data["gate"])
    while not event.wait(0.01):
        if sw.cancelled():
            raise sw.Cancelled("the run was cancelled while waiting")
    sw.report(opened=True)
    return data["gate"]


fails = sw.Pipeline("fails")


@fails.stage
def load(data):
    print(f"loading row {data.get('row', 3)} from /srv/secret/rows.csv")  # the run's log
    raise ValueError(f"row {data.get('row', 3)} is malformed")


hello = sw.Pipeline("hello")


@hello.stage
def greet():
    return "hello"


hostile = sw.Pipeline("hostile")


class _BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


def _nested(depth: int) -> list:
    outer: list = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


@hostile.stage
def misbehave(data: dict):
    """Return (or report) a value JSON cannot hold: {"kind": "big-int" | ...}."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "big-int":
        return 7**20000  # past Python's 4,300-digit int-to-text limit
    if kind == "bad-repr-element":
        return [1, _BadRepr()]
    if kind == "deep":
        return _nested(5000)
    if kind == "unrepresentable":
        return _BadRepr()
    if kind == "big-metric":
        sw.report(big=10**5000)
        return "reported"
    if kind == "big-range":
        for i in sw.track(range(10**30)):
            if i == 1000:
                return i
    return kind


PIPELINES = [square, slow, gated, fails, hello]  # hostile: served by its own tests
