"""The stage fingerprint: the function's own code and values, not where it was written."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from stagewidget.durable.fingerprint import stage_fingerprint

SOURCE = '''
def stage(x, scale=2, *, shift=1):
    """Scale and shift."""
    total = [v * scale + shift for v in x]
    if "a" in {"a", "b", "c"}:  # a frozenset constant: its order varies between processes
        total.append(helper(len(total)))
    return sorted(total, key=lambda v: -v)
'''


def define(source: str, filename: str = "<cell>", name: str = "stage",
           namespace: dict[str, Any] | None = None) -> Callable[..., Any]:
    """Define a function as a notebook cell does: compiled from text under a file name."""
    namespace = {} if namespace is None else namespace
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def test_same_code_in_another_cell_file_and_line_gives_the_same_fingerprint() -> None:
    first = define(SOURCE, "/tmp/ipykernel_101/2410851262.py")
    moved = define("x = 1\n\n\n# a cell above\n" + SOURCE, "/tmp/ipykernel_202/99.py")
    assert stage_fingerprint(first) == stage_fingerprint(moved)


def test_comments_and_blank_lines_do_not_change_it() -> None:
    commented = SOURCE.replace("    total = [", "    # scaled values\n\n    total = [")
    assert stage_fingerprint(define(SOURCE)) == stage_fingerprint(define(commented))


def test_editing_the_body_changes_it() -> None:
    edited = SOURCE.replace("v * scale + shift", "v * scale - shift")
    assert stage_fingerprint(define(SOURCE)) != stage_fingerprint(define(edited))


def test_editing_a_constant_or_a_nested_lambda_changes_it() -> None:
    base = stage_fingerprint(define(SOURCE))
    assert stage_fingerprint(define(SOURCE.replace('"c"', '"d"'))) != base
    assert stage_fingerprint(define(SOURCE.replace("key=lambda v: -v", "key=lambda v: v"))) \
        != base


def test_defaults_and_keyword_defaults_count() -> None:
    base = stage_fingerprint(define(SOURCE))
    assert stage_fingerprint(define(SOURCE.replace("scale=2", "scale=3"))) != base
    assert stage_fingerprint(define(SOURCE.replace("shift=1", "shift=0"))) != base


def test_closure_values_count_by_value() -> None:
    def make(weights: Any) -> Callable[[Any], Any]:
        def stage(x: Any) -> Any:
            return x * weights
        return stage

    assert stage_fingerprint(make(np.arange(1000))) == stage_fingerprint(make(np.arange(1000)))
    changed = np.arange(1000)
    changed[500] = -1
    assert stage_fingerprint(make(np.arange(1000))) != stage_fingerprint(make(changed))


def test_a_closure_value_joblib_cannot_hash_counts_by_its_type() -> None:
    def make(lock: Any) -> Callable[[Any], Any]:
        def stage(x: Any) -> Any:
            with lock:
                return x
        return stage

    # a lock cannot be pickled: two different locks give the same fingerprint...
    assert stage_fingerprint(make(threading.Lock())) == stage_fingerprint(make(threading.Lock()))
    # ...and its type still counts
    assert stage_fingerprint(make(threading.Lock())) != stage_fingerprint(make(threading.RLock()))


def test_a_function_in_a_closure_counts_by_its_code() -> None:
    def make(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def stage(x: Any) -> Any:
            return inner(x)
        return stage

    assert stage_fingerprint(make(lambda v: v + 1)) == stage_fingerprint(make(lambda v: v + 1))
    assert stage_fingerprint(make(lambda v: v + 1)) != stage_fingerprint(make(lambda v: v + 2))


def test_a_recursive_closure_ends() -> None:
    def outer() -> Callable[[int], int]:
        def countdown(n: int) -> int:
            return 0 if n <= 0 else countdown(n - 1)
        return countdown

    assert stage_fingerprint(outer()) == stage_fingerprint(outer())


def test_the_helpers_a_stage_calls_are_not_covered() -> None:
    namespace: dict[str, Any] = {}
    stage = define(SOURCE, namespace=namespace)
    before = stage_fingerprint(stage)
    define("def helper(n):\n    return n * 100\n", name="helper", namespace=namespace)
    assert stage_fingerprint(stage) == before  # documented: only the name 'helper' counts


def test_async_functions_are_covered_the_same_way() -> None:
    source = "async def stage(x):\n    return x + 1\n"
    assert stage_fingerprint(define(source, "a.py")) == \
        stage_fingerprint(define("\n\n" + source, "b.py"))
    assert stage_fingerprint(define(source)) != stage_fingerprint(define(source.replace("1", "2")))


def test_partial_arguments_count() -> None:
    stage = define(SOURCE)
    assert stage_fingerprint(functools.partial(stage, scale=2)) == \
        stage_fingerprint(functools.partial(stage, scale=2))
    assert stage_fingerprint(functools.partial(stage, scale=2)) != \
        stage_fingerprint(functools.partial(stage, scale=5))


def test_a_callable_object_counts_its_call_code_and_its_state() -> None:
    class Scale:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def __call__(self, x: int) -> int:
            return x * self.factor

    assert stage_fingerprint(Scale(2)) == stage_fingerprint(Scale(2))
    assert stage_fingerprint(Scale(2)) != stage_fingerprint(Scale(3))
    assert stage_fingerprint(len) == stage_fingerprint(len)


def test_a_fresh_process_gives_the_same_fingerprint() -> None:
    # another process: another hash seed (set and frozenset order), another file name
    script = (
        "import sys\n"
        "from stagewidget.durable.fingerprint import stage_fingerprint\n"
        "ns = {}\n"
        "exec(compile(sys.stdin.read(), '/tmp/ipykernel_777/1.py', 'exec'), ns)\n"
        "print(stage_fingerprint(ns['stage']))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], input="\n" + SOURCE, env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == stage_fingerprint(define(SOURCE))


def test_the_code_only_fingerprint_never_hashes_a_value() -> None:
    # the run history fingerprints every stage of every run at its start: a closure over
    # a big object must cost nothing there, and its value must not matter
    class Big:
        def __init__(self, size: int) -> None:
            self.size = size

        def __reduce__(self) -> Any:
            raise AssertionError("a code-only fingerprint must not pickle a value")

    def closing_over(value: object) -> Callable[[int], int]:
        def stage(x: int) -> int:
            return x + len(str(value))
        return stage

    small, big = closing_over(Big(1)), closing_over(Big(10**9))
    assert stage_fingerprint(small, values=False) == stage_fingerprint(big, values=False)
    assert stage_fingerprint(closing_over(np.zeros(3)), values=False) == \
        stage_fingerprint(closing_over(np.ones(3)), values=False)
    assert stage_fingerprint(closing_over(np.zeros(3))) != \
        stage_fingerprint(closing_over(np.ones(3)))
    assert stage_fingerprint(small, values=False) != stage_fingerprint(small)
