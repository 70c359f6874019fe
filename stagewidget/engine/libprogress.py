"""Library progress: tqdm bars created inside a stage become levels of its progress.

Code a stage calls (``trainer.train()``, ``df.progress_apply``, ``thread_map``) draws
its own tqdm bars. While a stage runs with capture on (the default), every tqdm bar
created in it is *captured*: it draws nothing (no stderr text, no notebook widget), it
becomes a level of the stage's progress (desc, count, total, unit, in nesting order;
tqdm's default unit "it" reads None), the outermost one drives the stage's done/total
(and desc and unit) when the stage reports nothing itself, the numbers it is given by
``set_postfix`` become the stage's metrics (as ``sw.report``'s), and Cancel raises
``Cancelled`` at the bar's next iteration, or at its next ``update()`` in the thread
that made it (an update from another thread, e.g. a pool's done-callback as in
``thread_map``, only counts: raising there would kill the pool's worker).

How: at the first stage start (never at import) ``tqdm.std.tqdm.__new__`` and
``__init__`` are wrapped. Every bar class derives from ``tqdm.std.tqdm`` and goes
through both, so bars of ``tqdm.auto``, ``tqdm.notebook``, ``tqdm.asyncio``,
``tqdm.rich`` and any subclass are seen whatever was imported first. Outside a stage
the wrappers call tqdm's own methods unchanged. Inside one, ``__new__`` moves the bar
to a subclass of its own class (cached per class), so Python runs that subclass's
``__init__`` around the bar class's own. tqdm's ``__init__`` builds the bar fully but
without drawing (``gui=True``) and leaves it disabled while the bar class's ``__init__``
finishes (so the notebook widget or the rich console is never built); then the bar
reads ``disable == False``, as its code asked, so libraries that check ``bar.disable``
before moving it (Lightning's progress bar) move it. The subclass overrides every
method that draws (``refresh``, ``display``, ``clear``, ``moveto``, ``close``,
``reset``), and its ``__iter__``, ``update`` and ``n`` count into the stage. Iterating
a captured bar takes ``sw.track``'s fast path (the sequence's own C iterator, sampled).

Which stage owns a bar (``owner()``, the rule ``engine.output`` shares for printed
output): the stage of the creating thread's context (the stage's thread, its async
tasks, threads run with ``contextvars.copy_context()`` or after
``progress.activate()``). A thread without a stage context (one the stage started with
``threading.Thread`` or a thread pool) is attributed to a stage only when that is
unambiguous: exactly one stage is running in this process and none other was when it
started, the thread did not exist yet then, and it is not one of stagewidget's own threads (named
``stagewidget-...``: views, notifiers, reporters). Anything else (the notebook's own
cells, two stages at once) is left alone and tqdm draws as usual.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import logging
import sys
import threading
import weakref
from collections.abc import Iterator
from itertools import chain, compress
from numbers import Integral, Real
from operator import length_hint
from typing import Any

from ..errors import Cancelled
from ..status import Level
from .progress import _CURRENT, _SEEKABLE, StageProgress, _Loop

__all__ = ["StageCapture", "begin", "capturing", "end", "install", "owner"]

_log = logging.getLogger("stagewidget")

# Process-wide by nature: tqdm's class is one per process, and which stages are running
# decides who owns a bar made in a thread without a stage context. list.append/remove
# and tuple(list) are atomic, so starting and ending stages needs no lock here.
_running: list[StageCapture] = []
_hook_lock = threading.Lock()  # installs the hook once, whichever stage starts first
_hooked: list[Any] = []  # [(tqdm.std.tqdm's own __new__, __init__)] once hooked
_classes: dict[type, type] = {}  # bar class -> its captured subclass


class StageCapture:
    """One running stage's side of the capture: whether it is on, and when it ended.

    ``enabled`` is the stage's ``capture`` switch: its tqdm bars (when tqdm is
    installed) and its printed output (``engine.output``) are captured.
    """

    __slots__ = ("enabled", "over", "progress", "threads")

    def __init__(self, progress: StageProgress, enabled: bool) -> None:
        self.progress = progress
        self.enabled = enabled
        self.over = False
        # Threads alive when the stage started: a bar made in one of them (the notebook's
        # main thread, a pool made earlier) never falls to this stage by elimination.
        # Taken only when no other stage runs: elimination needs this stage to be the only
        # one from its start, and a copy of every thread per stage start would cost time
        # and memory quadratic in the runs going at once (1,000 runs: 2,000 threads each).
        self.threads: frozenset[threading.Thread] | None = (
            None if _running else frozenset(threading.enumerate()))


def install() -> bool:
    """Wrap ``tqdm.std.tqdm.__new__`` and ``__init__`` once per process; False without tqdm.

    Called when a capturing stage starts (not at import). Imports ``tqdm.std`` if no
    one has yet, so a library that imports tqdm later, inside the stage, is captured.
    """
    if _hooked:
        return True
    with _hook_lock:
        if _hooked:
            return True
        try:
            if "tqdm.std" not in sys.modules and importlib.util.find_spec("tqdm") is None:
                return False
            import tqdm.std

            cls = tqdm.std.tqdm
            original_new, original_init = cls.__dict__["__new__"], cls.__dict__["__init__"]
            new_hook, init_hook = _hooked_new(original_new), _hooked_init(original_init)
        except Exception:  # a tqdm we do not understand: its bars draw as usual
            _log.warning("cannot capture tqdm bars in stages; they draw as usual",
                         exc_info=True)
            return False
        cls.__new__ = staticmethod(new_hook)
        cls.__init__ = init_hook
        _hooked.append((original_new, original_init))
    return True


def begin(progress: StageProgress, *, enabled: bool) -> StageCapture:
    """Register a stage that starts running its code in this process (any thread).

    With ``enabled``, tqdm bars made in the stage are captured from now on. Every
    running stage is registered, captured or not, so that a bar made in a thread with
    no stage context is attributed only when exactly one stage runs. Pair with ``end``.
    """
    capture = StageCapture(progress, enabled)
    if enabled:
        install()  # without tqdm there are no bars, but the stage still owns its output
        progress._library = capture
    _running.append(capture)
    return capture


def end(capture: StageCapture | None) -> None:
    """The stage of ``capture`` has ended: its bars never raise ``Cancelled`` any more."""
    if capture is None:
        return
    capture.over = True
    if capture.progress._library is capture:
        capture.progress._library = None
    with contextlib.suppress(ValueError):
        _running.remove(capture)


@contextlib.contextmanager
def capturing(progress: StageProgress, enabled: bool = True) -> Iterator[StageCapture]:
    """``begin`` and ``end`` around a block (worker processes, Dask tasks)."""
    capture = begin(progress, enabled=enabled)
    try:
        yield capture
    finally:
        end(capture)


def owner() -> StageCapture | None:
    """The capturing stage that what is done here and now belongs to, if any.

    A tqdm bar made here, a line printed here. The thread's stage context decides;
    a thread without one falls to the only running stage if it was started after
    that stage and is not one of stagewidget's own (see the module's docstring).
    """
    progress = _CURRENT.get()
    if progress is not None:
        capture = progress._library
    else:
        running = tuple(_running)
        if len(running) != 1:
            return None
        thread, only = threading.current_thread(), running[0]
        if only.threads is None or thread in only.threads \
                or thread.name.startswith("stagewidget-"):
            return None
        capture = only
    if capture is None or not capture.enabled or capture.over:
        return None
    return capture


def _hooked_new(original: Any) -> Any:
    """The replacement of ``tqdm.std.tqdm.__new__``: a bar made in a stage gets its class.

    The new bar is moved to the captured subclass of the class asked for *before* its
    ``__init__`` runs: Python then calls that subclass's ``__init__``, which wraps the
    whole construction (the bar class's own ``__init__`` included) and so can make the
    finished bar read ``disable == False``. Which stage owns it is decided here, once.
    """
    new = getattr(original, "__func__", original)

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        stage = owner()
        bar = new(cls, *args, **kwargs)
        if stage is not None and type(bar) is cls:
            bar.__class__ = _captured_class(cls)
            bar.__dict__["_sw_owner"] = stage  # taken by tqdm.std.tqdm.__init__
        return bar

    return __new__


def _hooked_init(original: Any) -> Any:
    """The replacement of ``tqdm.std.tqdm.__init__`` (``original`` may be a partialmethod).

    tqdm wraps ``__init__`` in ``functools.partialmethod`` carrying the ``TQDM_*``
    environment defaults read at import (tqdm#1526); they are applied here the same way.
    """
    func = getattr(original, "func", original)
    env = dict(getattr(original, "keywords", None) or {})
    names = [p.name for p in inspect.signature(func).parameters.values()
             if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD][1:]
    disable_at = names.index("disable") if "disable" in names else len(names)

    @functools.wraps(func)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        stage = self.__dict__.pop("_sw_owner", None)  # set by __new__ in a stage
        if stage is None:
            func(self, *args, **(env | kwargs if env else kwargs))
            return
        if len(args) > disable_at:  # disable= (or gui=) given by position: name them all
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"tqdm() got multiple values for argument {name!r}")
                kwargs[name] = value
            args = args[len(names):]
        merged = env | kwargs
        disable = merged.get("disable", False)
        if disable is not None and disable:  # the code asked for no bar: leave it be
            self.__class__ = type(self)._sw_base
            func(self, *args, **merged)
            return
        gui = merged.get("gui", False)
        # gui=True: tqdm builds everything but neither a screen printer nor a first draw
        func(self, *args, **(merged | {"disable": False, "gui": True}))
        self.gui = gui
        _capture(self, stage)

    return __init__


def _capture(bar: Any, owner: StageCapture) -> None:
    """Turn a freshly built, enabled bar into a level of ``owner``'s stage."""
    # Disabled while the rest of the bar class's __init__ runs, so the notebook widget,
    # the rich console and the like are never built; _CapturedBar.__init__ then makes
    # it read enabled, and its overrides keep every method from drawing.
    bar.disable = True
    with bar._lock:
        bar._instances.discard(bar)  # no screen position, no monitor thread visits
    loop = _BarLoop(owner, bar)
    bar.__dict__["_sw_loop"] = loop
    owner.progress._enter(loop)


def _number(value: Real) -> int | float:
    """A postfix number as a metric (numpy's and friends' as Python's)."""
    return int(value) if isinstance(value, Integral) else float(value)


def _captured_class(cls: type) -> type:
    """``cls`` with the capture overrides first in its MRO (one class per bar class)."""
    made = _classes.get(cls)
    if made is None:
        if issubclass(cls, _CapturedBar):  # copy.copy() of a captured bar, say
            return cls
        made = type(cls.__name__, (_CapturedBar, cls),
                    {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                     "__doc__": cls.__doc__, "_sw_base": cls})
        made = _classes.setdefault(cls, made)
    return made


class _CapturedBar:
    """Overrides of a captured bar: count into the stage, never draw.

    First in the MRO of the bar's new class, so they win over tqdm's and any subclass's
    (``tqdm.notebook``'s ``update``/``close``/``reset``, ``tqdm.rich``'s ``display``...).
    Every method of tqdm that draws or writes (``refresh``, ``display``, ``clear``,
    ``moveto``, ``close``, ``reset``; ``set_description``/``set_postfix`` go through
    ``refresh``) is one here, so the bar reads ``disable == False``, as the code that
    made it asked, and code that checks ``bar.disable`` before moving it (Lightning's
    progress bar) moves it. No ``__slots__``: an empty one would change the layout and
    forbid the class switch.
    """

    _sw_base: type  # the bar class this one captures

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the bar as its class does (disabled meanwhile), then read enabled."""
        super().__init__(*args, **kwargs)
        if "_sw_loop" in self.__dict__:
            self.disable = False

    def __iter__(self) -> Iterator[Any]:
        """Iterate the bar's iterable through the stage's fast, cancellable loop."""
        return self.__dict__["_sw_loop"].iterate(self)  # type: ignore[no-any-return]

    def update(self, n: float = 1) -> None:
        """Count ``n`` more; raise ``Cancelled`` once the run was cancelled."""
        loop = self._sw_loop  # type: ignore[attr-defined]  # faster than __dict__[...]
        if loop._progress._cancel_requested and loop.raises_here():
            raise Cancelled(f"stage {loop._progress.name!r} was cancelled")
        loop._n += n

    def close(self) -> None:
        """Leave the stage's levels and read disabled, as a closed tqdm bar (idempotent;
        ``__del__`` calls it too)."""
        loop = self.__dict__.get("_sw_loop")
        if loop is not None:
            loop.close(self)
            self.disable = True

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        """Set the bar's postfix as tqdm does; its numbers become the stage's metrics.

        Called as often as the code calls it (Lightning: per logged batch); the numbers
        (not bools, not strings) go through the stage's ``report``, so the views chart
        them (loss per batch), without its cancel check: a pool thread may call this.
        """
        super().set_postfix(ordered_dict, refresh=False, **kwargs)  # type: ignore[misc]
        loop = self.__dict__.get("_sw_loop")
        if loop is None:  # tqdm's __init__ sets postfix= before the bar is captured
            return
        given = dict(ordered_dict or {}) | kwargs
        numbers = {str(name): _number(value) for name, value in given.items()
                   if isinstance(value, Real) and not isinstance(value, bool)}
        if numbers:
            loop._progress._record(numbers)

    def reset(self, total: float | None = None) -> None:
        """Count from 0 again, with a new total if given (``tqdm.reset`` without drawing)."""
        self.n = 0
        if total is not None:
            self.total = None if total == float("inf") else total

    def refresh(self, *_: Any, **__: Any) -> None:
        """Draw nothing (``set_description`` and ``set_postfix`` call this)."""
        return None

    def display(self, *_: Any, **__: Any) -> None:
        """Draw nothing."""
        return None

    def clear(self, *_: Any, **__: Any) -> None:
        """Draw nothing."""
        return None

    def moveto(self, *_: Any, **__: Any) -> None:
        """Write nothing."""
        return None

    @property
    def n(self) -> float:
        """Units counted so far: updates plus items handed out by the bar's loop."""
        loop = self.__dict__.get("_sw_loop")
        if loop is None:  # tqdm's __init__ is still building the bar
            return self.__dict__.get("n", 0)  # type: ignore[no-any-return]
        return loop.count()  # type: ignore[no-any-return]

    @n.setter
    def n(self, value: float) -> None:
        loop = self.__dict__.get("_sw_loop")
        if loop is None:
            self.__dict__["n"] = value  # the loop takes it over when it is made
        else:
            loop._n = value - _Loop.done(loop)


class _BarLoop(_Loop):
    """A captured bar as a level of its stage: in the stage's loop stack from birth.

    Counts ``update()`` calls in ``_n``; iterating the bar goes through the ``_Loop``
    machinery (sequence iterator or counted selector chunks; cancel stops either).
    """

    __slots__ = ("_bar", "_capture", "_closed", "_final", "_n", "_thread")

    def __init__(self, capture: StageCapture, bar: Any) -> None:
        super().__init__(capture.progress, None, None, None)
        self._capture = capture
        self._thread = threading.get_ident()
        self._bar = weakref.ref(bar)
        self._n: float = bar.__dict__.pop("n", 0)  # the n property reads it from now on
        self._closed = False
        self._final: Level | None = None

    def iterate(self, bar: Any) -> Iterator[Any]:
        """The iterator of ``for item in bar`` (a closed bar iterates plainly, as tqdm's).

        The iterator holds the bar (in a generator's frame), as tqdm's own generator
        does: ``for x in tqdm(...)`` keeps no other reference to it.
        """
        if self._iter is not None or self._closed:
            return iter(bar.iterable)
        source = iter(bar.iterable)
        if type(source) in _SEEKABLE:
            self.total = length_hint(source)  # the sequence's length, for done()/stop()
            self._seq = source
            self._iter = chain(source, self._closing(bar))
        else:
            self._iter = compress(source, chain.from_iterable(self._chunks_of(bar)))
        if self._stopped or self._progress._cancel_requested:
            self.stop()
        return self._iter

    def _closing(self, bar: Any) -> Iterator[Any]:
        yield from self._end()  # raises Cancelled when stopped
        self.close(bar)

    def _chunks_of(self, bar: Any) -> Iterator[Iterator[bool]]:
        yield from self._chunks()

    def raises_here(self) -> bool:
        """Whether ``update()`` may raise ``Cancelled`` in the calling thread.

        Only in the thread that made the bar, and only while its stage runs: an update
        from a pool's done-callback (``thread_map`` updates its bar so) raising there
        would kill the pool's worker thread and leave the stage waiting for ever.
        """
        return not self._capture.over and threading.get_ident() == self._thread

    def count(self) -> float:
        """The bar's n: updates plus items handed out by its iteration."""
        return self._n + _Loop.done(self)

    def close(self, bar: Any) -> None:
        """The bar was closed: keep its last level, leave the stage's levels."""
        if not self._closed:
            self._final = self._level_of(bar)
            self._closed = True

    def active(self) -> bool:
        """True until the bar is closed, dropped, or its loop has ended."""
        if self._closed or self._bar() is None:
            return False
        if self._iter is None:
            return True  # not iterated (yet): driven by update()
        return _Loop.active(self)

    def level(self) -> Level:
        """The bar's progress now (its last state once closed)."""
        bar = self._bar()
        if self._closed or bar is None:
            return self._final or Level(None, int(self.count()), None)
        return self._level_of(bar)

    def _level_of(self, bar: Any) -> Level:
        desc = getattr(bar, "desc", "") or ""
        if desc.endswith(": "):  # set_description() adds the separator
            desc = desc[:-2]
        total = getattr(bar, "total", None)
        return Level(desc or None, int(self.count()), None if total is None else int(total),
                     _unit_of(bar))


def _unit_of(bar: Any) -> str | None:
    """The bar's unit for the views: None for tqdm's default ``"it"`` (nothing said)."""
    unit = getattr(bar, "unit", None)
    if not isinstance(unit, str):
        return None
    unit = unit.strip()  # datasets says " examples", for tqdm's "3.2 examples/s"
    return None if unit in ("", "it") else unit
