"""The stage progress handle and the functions stage code calls, without runs or threads."""

from __future__ import annotations

import asyncio

import pytest

import stagewidget as sw
from stagewidget import Cancelled, PipelineError
from stagewidget.engine.progress import StageProgress
from stagewidget.status import Level


def test_outside_a_run_track_returns_the_iterable_itself() -> None:
    data = [1, 2, 3]
    assert sw.track(data) is data
    sw.advance()
    sw.set_total(3)
    sw.report("hello", loss=1.0)
    assert sw.cancelled() is False
    assert sw.current_stage().active is False


def test_outside_a_run_bad_total_is_still_an_error() -> None:
    with pytest.raises(PipelineError, match=r"track\(\) total must be a non-negative int"):
        sw.track([1], total=-1)


def test_track_over_a_list_counts_items_without_wrapping_them() -> None:
    progress = StageProgress("s")
    loop = iter(progress.track([10, 20, 30], desc="rows"))
    assert next(loop) == 10
    assert next(loop) == 20
    assert progress.sample() == (2, 3, "rows", None, ())
    assert list(loop) == [30]
    assert progress.sample() == (3, 3, "rows", None, ())


def test_track_over_a_generator_counts_and_takes_the_given_total() -> None:
    progress = StageProgress("s")
    loop = iter(progress.track((i * i for i in range(1000)), total=1000))
    firsts = [next(loop) for _ in range(300)]
    assert firsts[:3] == [0, 1, 4]
    assert progress.sample()[:2] == (300, 1000)
    assert sum(1 for _ in loop) == 700
    assert progress.sample()[:2] == (1000, 1000)


def test_nested_loops_become_inner_levels() -> None:
    progress = StageProgress("train")
    seen = None
    for epoch in progress.track(range(3), desc="epoch"):
        for batch in progress.track(["a", "b", "c", "d"], desc="batch"):
            if epoch == 1 and batch == "b":
                seen = progress.sample()
    done, total, desc, _, inner = seen
    assert (done, total, desc) == (2, 3, "epoch")
    assert [(lv.desc, lv.done, lv.total) for lv in inner] == [("batch", 2, 4)]
    assert progress.sample() == (3, 3, "epoch", None, ())


def test_track_unit_names_its_level_and_the_stage_it_drives() -> None:
    progress = StageProgress("train")
    for epoch in progress.track(range(2), desc="epochs", unit="epoch"):
        for _ in progress.track(range(5), desc="batches", unit="batch"):
            if epoch == 1:
                seen = progress.sample()
                break
    assert seen == (2, 2, "epochs", "epoch", (Level("batches", 1, 5, "batch"),))
    assert progress.sample() == (2, 2, "epochs", "epoch", ())
    with pytest.raises(PipelineError, match="track\\(\\) unit must be a str or None"):
        progress.track([], unit=3)
    assert sw.track([1], unit="row") == [1]  # outside a run: unchanged, still checked
    with pytest.raises(PipelineError, match="unit must be a str"):
        sw.track([1], unit=b"row")


def test_a_loop_left_by_break_no_longer_shows_as_inner() -> None:
    progress = StageProgress("s")
    for _ in progress.track(range(2), desc="outer"):
        for j in progress.track(range(100), desc="inner"):
            if j == 5:
                break
        *_, inner = progress.sample()
        assert inner == ()


def test_declared_total_makes_advance_the_stage_counter_and_loops_inner() -> None:
    progress = StageProgress("prep", total=3)
    progress.advance()
    progress.advance(2)
    for _ in progress.track(range(4), desc="files"):
        *_, inner = progress.sample()
    assert progress.sample()[:2] == (3, 3)
    assert [lv.desc for lv in inner] == ["files"]


def test_set_total_and_advance_count_without_a_declared_total() -> None:
    progress = StageProgress("s")
    progress.set_total(10)
    for _ in range(4):
        progress.advance()
    progress.advance(0)
    assert progress.sample()[:2] == (4, 10)


@pytest.mark.parametrize("n", [-1, 1.5, "2"])
def test_advance_rejects_what_is_not_a_non_negative_int(n) -> None:
    with pytest.raises(PipelineError, match=r"advance\(\) takes a non-negative int"):
        StageProgress("s").advance(n)


def test_report_keeps_latest_metrics_message_and_a_history() -> None:
    progress = StageProgress("s")
    progress.report(loss=1.0)
    progress.report("epoch 2", loss=0.5, phase="fit")
    assert dict(progress.metrics()) == {"loss": 0.5, "phase": "fit"}
    assert progress.message == "epoch 2"
    assert progress.history()["loss"] == (1.0, 0.5)
    assert "phase" not in progress.history()


def test_report_rejects_non_scalar_metrics() -> None:
    with pytest.raises(PipelineError, match=r"metric 'weights' must be a number or a string \(got \[1, 2\], a list\)"):
        StageProgress("s").report(weights=[1, 2])


def test_history_stays_bounded_and_keeps_the_shape() -> None:
    progress = StageProgress("s")
    for i in range(10_000):
        progress.report(step=float(i))
    series = progress.history()["step"]
    assert 128 <= len(series) <= 512
    assert list(series) == sorted(series)
    assert series[-1] > 9_000


def test_cancel_stops_a_list_loop_at_the_next_item() -> None:
    progress = StageProgress("s")
    got = []
    with pytest.raises(Cancelled, match="stage 's' was cancelled"):
        for x in progress.track(list(range(100))):
            got.append(x)
            if x == 10:
                progress.request_cancel()
    assert got == list(range(11))


def test_cancel_stops_a_generator_loop_promptly() -> None:
    progress = StageProgress("s")
    got = []
    with pytest.raises(Cancelled):
        for x in progress.track(i for i in range(10**9)):
            got.append(x)
            if x == 10:
                progress.request_cancel()
    assert len(got) < 70_000  # at most one selector chunk after the request


def test_cancel_is_not_swallowed_by_except_exception() -> None:
    progress = StageProgress("s")
    progress.request_cancel()
    with pytest.raises(Cancelled):
        try:
            progress.advance()
        except Exception:  # what a stage's own error handling looks like
            pytest.fail("Cancelled must not be an Exception")


def test_report_and_new_loops_raise_after_cancel() -> None:
    progress = StageProgress("s")
    progress.request_cancel()
    assert progress.cancelled()
    with pytest.raises(Cancelled):
        progress.report(loss=1)
    with pytest.raises(Cancelled):
        progress.track([1, 2])


def test_async_track_counts_and_cancels() -> None:
    progress = StageProgress("s")

    async def numbers():
        for i in range(10):
            yield i

    async def consume() -> list[int]:
        got = []
        async for x in progress.track(numbers(), total=10, desc="async"):
            got.append(x)
            if x == 3:
                assert progress.sample()[:3] == (4, 10, "async")
                progress.request_cancel()
        return got

    with pytest.raises(Cancelled):
        asyncio.run(consume())


def test_a_track_loop_can_only_be_iterated_once() -> None:
    progress = StageProgress("s")
    loop = progress.track([1, 2])
    list(loop)
    with pytest.raises(RuntimeError, match="iterated only once"):
        list(loop)


def test_many_short_inner_loops_do_not_pile_up() -> None:
    progress = StageProgress("s")
    for _ in progress.track(range(10_000), desc="outer"):
        for _ in progress.track(range(3), desc="inner"):
            pass
    assert len(progress._loops) <= 2  # ended loops are dropped as new ones start
    assert progress.sample() == (10_000, 10_000, "outer", None, ())


def test_a_cancelled_list_loop_reports_how_far_it_got_not_its_total() -> None:
    progress = StageProgress("s")
    with pytest.raises(Cancelled):
        for x in progress.track(list(range(1000))):
            if x == 10:
                progress.request_cancel()
    assert progress.sample()[:2] == (11, 1000)


class HugeSequence:
    """A sequence whose __len__ is past sys.maxsize: ``for`` works, ``len()`` overflows."""

    def __len__(self) -> int:
        return 10**30

    def __getitem__(self, index: int) -> int:
        if index >= 5:
            raise IndexError(index)
        return index


@pytest.mark.parametrize("total", [None, 10**30], ids=["len", "given-total"])
def test_track_over_a_range_past_sys_maxsize_counts_like_any_range(total) -> None:
    progress = StageProgress("s")
    loop = iter(progress.track(range(10**30), total=total, desc="huge"))
    assert [next(loop) for _ in range(3)] == [0, 1, 2]
    assert progress.sample() == (3, 10**30, "huge", None, ())


def test_track_over_a_sequence_whose_len_overflows_takes_its_len_and_counts() -> None:
    progress = StageProgress("s")
    assert list(progress.track(HugeSequence())) == [0, 1, 2, 3, 4]
    assert progress.sample() == (5, 10**30, None, None, ())


def test_cancel_stops_a_loop_over_a_range_past_sys_maxsize() -> None:
    progress = StageProgress("s")
    loop = iter(progress.track(range(10**30)))
    assert next(loop) == 0
    progress.request_cancel()
    with pytest.raises(Cancelled):
        next(loop)
    assert progress.sample()[:2] == (1, 10**30)


def test_track_desc_must_be_a_string_in_and_out_of_a_run() -> None:
    with pytest.raises(PipelineError, match=r"track\(\) desc must be a str or None \(got 3"):
        sw.track([1], desc=3)
    with pytest.raises(PipelineError, match=r"track\(\) desc must be a str or None"):
        StageProgress("s").track([1], desc=object())


def test_report_accepts_an_int_past_float_range_and_charts_a_gap() -> None:
    progress = StageProgress("s")
    progress.report(big=10**5000)
    progress.report(big=3)
    assert progress.metrics() == {"big": 3}
    assert progress.history() == {"big": (float("inf"), 3.0)}
