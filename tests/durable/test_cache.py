"""The stage output cache: runs skip stages whose code and input are unchanged."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stagewidget as sw
from stagewidget.durable.cache import CacheWarning, StageCache
from stagewidget.views.text import TextView

CACHED, SUCCEEDED = sw.StageState.CACHED, sw.StageState.SUCCEEDED
# Stages note their calls here: a global, read by name, is not part of their fingerprint
# (a list in their closure would be, by value, and change with every call).
calls: list[str] = []


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh stagewidget home per test (the default cache is ``<home>/cache``)."""
    calls.clear()
    folder = tmp_path / "home"
    monkeypatch.setenv("STAGEWIDGET_HOME", str(folder))
    monkeypatch.delenv("STAGEWIDGET_CACHE_MAX_BYTES", raising=False)
    return folder


def states(run: sw.Run) -> list[sw.StageState]:
    return [stage.state for stage in run.wait(20).stages]


def load(n: int) -> Any:
    calls.append("load")
    return np.arange(n)


def double(x: Any) -> Any:
    calls.append("double")
    return x * 2


def total(x: Any) -> int:
    calls.append("total")
    return int(x.sum())


def counting_pipeline(*, cache: Any = True, second: Any = double) -> sw.Pipeline:
    """load -> double -> total; ``second`` replaces ``double`` (an edited cell)."""
    return sw.Pipeline("counting", [load, second, total], cache=cache)


def test_a_second_run_loads_every_stage_without_calling_it() -> None:
    pipe = counting_pipeline()
    assert pipe.run(100, display=False) == 9900
    run = pipe.start(100, display=False)
    assert run.result(20) == 9900
    assert states(run) == [CACHED, CACHED, CACHED]
    assert calls == ["load", "double", "total"]  # the second run called nothing
    assert [s["state"] for s in run.status().to_dict()["stages"]] == ["cached"] * 3


def test_the_text_view_says_cached() -> None:
    pipe = counting_pipeline()
    pipe.run(10, display=False)
    stream = io.StringIO()
    pipe.start(10, display=TextView(stream)).wait(20)
    assert stream.getvalue().count("cached") >= 3, stream.getvalue()


def test_the_widget_rows_say_cached() -> None:
    from stagewidget.views.widget import stage_html

    pipe = counting_pipeline()
    pipe.run(10, display=False)
    status = pipe.start(10, display=False).wait(20)
    assert all(">cached<" in stage_html(stage) for stage in status.stages), \
        [stage_html(stage) for stage in status.stages]


def test_another_input_runs_the_stages_again() -> None:
    pipe = counting_pipeline()
    pipe.run(10, display=False)
    calls.clear()
    assert pipe.run(11, display=False) == 110
    assert calls == ["load", "double", "total"]


def test_editing_a_stage_reruns_it_and_the_stages_after_it_only() -> None:
    counting_pipeline().run(10, display=False)
    calls.clear()

    def double(x: Any) -> Any:  # the notebook cell defining 'double', edited and run again
        calls.append("double")
        return x * 3

    run = counting_pipeline(second=double).start(10, display=False)
    assert run.result(20) == 135
    assert states(run) == [CACHED, SUCCEEDED, SUCCEEDED]
    assert calls == ["double", "total"]


def test_an_edit_giving_the_same_output_keeps_the_later_stages_cached() -> None:
    counting_pipeline().run(10, display=False)
    calls.clear()

    def double(x: Any) -> Any:
        calls.append("double")
        return x + x  # new code, same output: 'total' gets the same input

    run = counting_pipeline(second=double).start(10, display=False)
    assert states(run) == [CACHED, SUCCEEDED, CACHED]
    assert calls == ["double"]


def test_a_stage_can_opt_out_of_the_pipelines_cache() -> None:
    pipe = counting_pipeline(cache=True)
    pipe.add(sw.Stage(lambda x: calls.append("fresh") or x, name="fresh", cache=False))
    pipe.run(5, display=False)
    calls.clear()
    run = pipe.start(5, display=False)
    assert states(run) == [CACHED, CACHED, CACHED, SUCCEEDED]
    assert calls == ["fresh"]


def test_a_stage_can_opt_in_when_the_pipeline_does_not_cache() -> None:
    pipe = sw.Pipeline("opt-in")
    pipe.add(lambda: calls.append("slow") or 1, name="slow", cache=True)
    pipe.add(lambda x: calls.append("quick") or x + 1, name="quick")
    pipe.run(display=False)
    run = pipe.start(display=False)
    assert states(run) == [CACHED, SUCCEEDED]
    assert calls == ["slow", "quick", "quick"]


def test_the_cache_is_off_by_default(home: Path) -> None:
    pipe = counting_pipeline(cache=False)
    pipe.run(3, display=False)
    pipe.run(3, display=False)
    assert calls == ["load", "double", "total"] * 2
    assert not (home / "cache").exists()


def test_retry_after_a_fix_runs_only_the_failed_stage() -> None:
    pipe = sw.Pipeline("retry", cache=True)
    pipe.add(lambda n: calls.append("make") or list(range(n)), name="make")
    broken = threading.Event()

    def check(x: list[int]) -> int:
        calls.append("check")
        if not broken.is_set():
            raise ValueError("bug")
        return len(x)

    pipe.add(check)
    failed = pipe.start(4, display=False)
    assert states(failed) == [SUCCEEDED, sw.StageState.FAILED]
    broken.set()
    retried = failed.retry()
    assert retried.result(20) == 4
    assert calls == ["make", "check", "check"]
    # a fresh run now finds both stages cached
    assert states(pipe.start(4, display=False)) == [CACHED, CACHED]


def test_clear_cache_removes_one_pipelines_outputs_or_all() -> None:
    first, second = counting_pipeline(), sw.Pipeline("other", [lambda: 1], cache=True)
    first.run(3, display=False)
    second.run(display=False)
    assert sw.clear_cache(first) == 3
    assert states(second.start(display=False)) == [CACHED]
    assert states(first.start(3, display=False)) == [SUCCEEDED] * 3
    assert sw.clear_cache() == 4
    assert states(second.start(display=False)) == [SUCCEEDED]


def test_clear_cache_names_a_bad_argument() -> None:
    with pytest.raises(sw.ConfigError, match=r"clear_cache takes a pipeline.*got 3"):
        sw.clear_cache(3)


def test_least_recently_used_outputs_are_evicted_past_the_cap(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache", max_bytes=3_500_000)  # room for 3 of 1 MB
    keys = [cache.key("p", f"s{i}", len, i) for i in range(4)]
    assert all(key is not None for key in keys)
    for age, key in enumerate(keys[:3]):
        assert key is not None and cache.store(key, np.zeros(1_000_000 // 8) + age)
        os.utime(key.path, (1_000_000 + age, 1_000_000 + age))  # stored long ago, in order
    assert keys[0] is not None and cache.load(keys[0])[0]  # a hit makes s0 the newest
    assert keys[3] is not None and cache.store(keys[3], np.zeros(1_000_000 // 8))
    present = [key is not None and key.path.exists() for key in keys]
    assert present == [True, False, True, True]  # s1 was the least recently used
    assert cache.size_bytes() <= 3_500_000


def test_the_cap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEWIDGET_CACHE_MAX_BYTES", "12345")
    assert StageCache().max_bytes == 12345


@pytest.mark.parametrize("value", ["lots", "-1", "0"])
def test_a_bad_cap_fails_the_start_naming_it(monkeypatch: pytest.MonkeyPatch,
                                             value: str) -> None:
    monkeypatch.setenv("STAGEWIDGET_CACHE_MAX_BYTES", value)
    pipe = counting_pipeline()
    with pytest.raises(sw.ConfigError, match=f"STAGEWIDGET_CACHE_MAX_BYTES must be a "
                                             f"positive integer.*'{value}'"):
        pipe.start(3, display=False)


def test_an_output_over_the_cap_is_not_stored_and_the_run_goes_on(tmp_path: Path) -> None:
    pipe = sw.Pipeline("big", [lambda: np.zeros(100_000)],
                       cache=StageCache(tmp_path / "c", max_bytes=1000))
    with pytest.warns(CacheWarning, match=r"stage '<lambda>' of pipeline 'big'.*not cached.*"
                                          r"over the cache's cap of 1,000 bytes"):
        run = pipe.start(display=False)
        assert run.result(20).shape == (100_000,)
    assert [p for p in (tmp_path / "c").rglob("*") if p.is_file()] == []


def test_an_output_that_cannot_be_pickled_warns_and_the_run_goes_on() -> None:

    def make_lock() -> Any:
        calls.append("make_lock")
        return threading.Lock()

    pipe = sw.Pipeline("locks", [make_lock, sw.Stage(lambda lock: lock.locked(), name="check", cache=False)], cache=True)
    with pytest.warns(CacheWarning, match=r"stage 'make_lock' of pipeline 'locks': its "
                                          r"output \(a lock\) was not cached.*TypeError"):
        assert pipe.run(display=False) is False
    with pytest.warns(CacheWarning):
        pipe.run(display=False)
    assert calls == ["make_lock", "make_lock"]


def test_a_disk_error_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    pipe = sw.Pipeline("disk", [lambda: 42], cache=StageCache(blocked))
    with pytest.warns(CacheWarning, match=r"stage '<lambda>' of pipeline 'disk': its output "
                                          r"\(an int\) was not cached, the run goes on"):
        assert pipe.run(display=False) == 42


def test_an_input_that_cannot_be_hashed_runs_uncached_with_one_warning() -> None:
    pipe = sw.Pipeline("unhashable", cache=True)
    pipe.add(lambda lock: calls.append("use") or "used", name="use")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pipe.run(threading.Lock(), display=False) == "used"
    found = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(found) == 1, [str(w.message) for w in found]
    assert "stage 'use' of pipeline 'unhashable' runs uncached: its input (a lock) cannot be " \
           "hashed" in str(found[0].message)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        pipe.run(threading.Lock(), display=False)
    assert calls == ["use", "use"]


def test_a_damaged_file_is_a_miss_with_a_warning() -> None:
    pipe = counting_pipeline()
    pipe.run(4, display=False)
    for path in StageCache().path.rglob("load-*.joblib"):
        path.write_bytes(b"not a joblib file")
    calls.clear()
    with pytest.warns(CacheWarning, match="stage 'load' of pipeline 'counting' runs again"):
        run = pipe.start(4, display=False)
        assert states(run) == [SUCCEEDED, CACHED, CACHED]
    assert calls == ["load"]


@pytest.mark.parametrize(("options", "message"), [
    ({"cache": "yes"}, "stage 'f' cache must be True, False or None (got 'yes', a str)"),
    ({"cache": 1}, "stage 'f' cache must be True, False or None (got 1, an int)"),
])
def test_a_bad_stage_cache_option_is_named(options: dict[str, Any], message: str) -> None:
    def f(x: Any) -> Any:
        return x

    with pytest.raises(sw.PipelineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sw.Stage(f, **options)
    pipe = sw.Pipeline("bad")
    with pytest.raises(sw.PipelineError, match="cache must be"):
        pipe.stage(**options)(f)


def test_a_bad_pipeline_cache_option_is_named() -> None:
    with pytest.raises(sw.PipelineError, match=r"pipeline 'p' cache must be True, False or a "
                                               r"StageCache \(got 'on', a str\)"):
        sw.Pipeline("p", cache="on")  # type: ignore[arg-type]


def test_the_process_executor_caches_in_the_driver(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pipe = sw.Pipeline("remote", [sw.Stage(_Append(str(marker)), name="append")], cache=True)
    assert pipe.run(display=False, executor="process") == "out"
    run = pipe.start(display=False, executor="process")
    assert run.result(60) == "out"
    assert states(run) == [CACHED]
    assert marker.read_text() == "ran\n"  # the worker ran the stage once


class _Append:
    """A stage for another process: notes each call in a file (picklable by reference)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> str:
        with open(self.path, "a") as file:
            file.write("ran\n")
        return "out"



def test_an_async_stage_is_cached_too() -> None:
    async def fetch(n: int) -> list[int]:
        calls.append("fetch")
        return list(range(n))

    pipe = sw.Pipeline("async", [fetch], cache=True)
    assert pipe.run(3, display=False) == [0, 1, 2]
    run = pipe.start(3, display=False)
    assert run.result(20) == [0, 1, 2]
    assert states(run) == [CACHED]
    assert calls == ["fetch"]


SHARING = """
import sys, warnings
import numpy as np
from stagewidget.durable.cache import StageCache

warnings.simplefilter("error")  # any CacheWarning (a failed store or read) fails
cache = StageCache(sys.argv[1], max_bytes=5_000_000)  # two outputs: evicting all along
print("ready", flush=True)
sys.stdin.readline()  # both processes start together
for i in range(100):
    key = cache.key("shared", f"s{i % 5}", len, i % 5)
    assert cache.store(key, np.full(250_000, i % 5))
    found, output = cache.load(key)  # the other process may have evicted it: a miss
    assert not found or output[0] == i % 5
print("ok")
"""


def test_processes_sharing_a_cache_store_load_and_evict_without_errors(tmp_path: Path) -> None:
    workers = [subprocess.Popen([sys.executable, "-c", SHARING, str(tmp_path / "shared")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    for worker in workers:
        out, err = worker.communicate("go\n", timeout=120)
        assert (worker.returncode, out.strip()) == (0, "ok"), err
    assert StageCache(tmp_path / "shared", max_bytes=5_000_000).size_bytes() <= 5_000_000
    assert list((tmp_path / "shared").rglob("*.tmp")) == []


def test_a_write_failing_halfway_leaves_no_file_behind(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "c")
    key = cache.key("p", "half", len, 1)
    assert key is not None
    # the array is written before pickling reaches the lock and fails
    with pytest.warns(CacheWarning, match="was not cached"):
        assert not cache.store(key, [np.zeros(1_000_000), threading.Lock()])
    assert [p.name for p in (tmp_path / "c").rglob("*") if p.is_file()] == []
    assert cache.load(key) == (False, None)
