"""Stage and pipeline definitions: what runs, validated when built (not when run).

The engine runs these; the public facade's ``Pipeline`` (``stagewidget.pipeline``) is a
``PipelineDefinition`` that can also start itself, attaching the views the front end
wants. The status service checks and runs definitions, so it needs no facade.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, overload

from ..durable.cache import StageCache
from ..errors import PipelineError
from .call import NO_INPUT

__all__ = ["PipelineDefinition", "Stage", "StageLike"]


def _describe(value: object) -> str:
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{value!r}, {article} {kind}"


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a pipeline: a function of the previous stage's output.

    Args:
        fn: a plain function or an ``async def`` function taking one argument.
        name: the name shown in views (default: the function's ``__name__``).
        total: units of work the stage will report with ``advance()``, if known.
        executor: where this stage runs, overriding the run's executor
            (``"thread"``, ``"inline"`` or an executor object).
        capture: show the tqdm bars of the code the stage calls as its progress (and
            hide their own drawing); None follows the pipeline's ``capture``.
        cache: keep this stage's output on disk and skip the stage when its code and
            input are unchanged (True), never (False); None follows the pipeline's
            ``cache``.
    """

    fn: Callable[..., Any]
    name: str = ""
    total: int | None = None
    executor: Any = None
    capture: bool | None = None
    cache: bool | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            label = f"stage {self.name!r}" if self.name else "a stage"
            raise PipelineError(f"{label} must be callable (got {_describe(self.fn)})")
        if not self.name:
            object.__setattr__(self, "name", getattr(self.fn, "__name__", "") or "")
        if not isinstance(self.name, str) or not self.name.strip():
            raise PipelineError(
                f"stage name must be a non-empty string (got {_describe(self.name)}); "
                "pass name=..."
            )
        if self.total is not None and (
            isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 0
        ):
            raise PipelineError(
                f"stage {self.name!r} total must be a non-negative int or None "
                f"(got {_describe(self.total)})"
            )
        if self.capture is not None and not isinstance(self.capture, bool):
            raise PipelineError(
                f"stage {self.name!r} capture must be True, False or None "
                f"(got {_describe(self.capture)})"
            )
        if self.cache is not None and not isinstance(self.cache, bool):
            raise PipelineError(
                f"stage {self.name!r} cache must be True, False or None "
                f"(got {_describe(self.cache)})"
            )

    @property
    def is_async(self) -> bool:
        """True when the stage's function is an ``async def`` function."""
        return inspect.iscoroutinefunction(self.fn)

    def check_accepts(self, *args: object) -> None:
        """Raise ``PipelineError`` unless the function can be called with ``args``."""
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError):  # builtins without a signature: trust them
            return
        try:
            signature.bind(*args)
        except TypeError:
            wanted = "no argument" if not args else "one positional argument"
            raise PipelineError(
                f"stage {self.name!r} must accept {wanted} (its signature is "
                f"{self.name}{signature})"
            ) from None


StageLike = Stage | Callable[..., Any]


class PipelineDefinition:
    """A named sequence of stages; the output of each stage is the input of the next.

    Users build the facade's ``Pipeline`` (this plus ``start()``/``run()``), with the
    ``@pipe.stage`` decorator or all stages at once::

        pipe = Pipeline("train-model", [load, Stage(preprocess, total=3), train])

    With ``capture=True`` (the default) the tqdm bars that a stage's code creates are
    shown as that stage's progress instead of drawing themselves; ``capture=False``
    leaves them alone (a stage's own ``capture=`` wins over the pipeline's).
    With ``history=True`` (the default) every run is recorded in the run history
    (``sw.history()``), which also gives the ETAs; ``history=False`` records nothing.

    With ``cache=True`` each stage's output is stored on disk, keyed by the stage's code
    and its input, and a later run (in any process) loads it instead of running the
    stage; pass a ``StageCache`` to choose its folder or size cap. A stage's own
    ``cache=`` wins over the pipeline's. Off by default.
    """

    def __init__(self, name: str, stages: Iterable[StageLike] = (), *,
                 capture: bool = True, history: bool = True,
                 cache: bool | StageCache = False) -> None:
        if not isinstance(name, str) or not name.strip():
            raise PipelineError(f"pipeline name must be a non-empty string (got {_describe(name)})")
        if not isinstance(capture, bool):
            raise PipelineError(
                f"pipeline {name!r} capture must be True or False (got {_describe(capture)})"
            )
        if not isinstance(history, bool):
            raise PipelineError(
                f"pipeline {name!r} history must be True or False (got {_describe(history)})"
            )
        if not isinstance(cache, (bool, StageCache)):
            raise PipelineError(
                f"pipeline {name!r} cache must be True, False or a StageCache "
                f"(got {_describe(cache)})"
            )
        self.capture = capture
        self.history = history
        self.cache = cache
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
            raise PipelineError(
                f"pipeline {name!r} stages must be a list of functions or Stage objects "
                f"(got {_describe(stages)})"
            )
        self.name = name
        self._stages: list[Stage] = []
        for stage in stages:
            self._add(stage, redefine=False)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages, in order."""
        return tuple(self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    def __repr__(self) -> str:
        names = ", ".join(stage.name for stage in self._stages)
        return f"Pipeline({self.name!r}, [{names}])"

    def add(self, stage: StageLike, *, name: str | None = None, total: int | None = None,
            executor: Any = None, capture: bool | None = None,
            cache: bool | None = None) -> Stage:
        """Append a stage (a function or a ``Stage``) and return it as a ``Stage``.

        Adding a function with the name and qualified name of an existing stage (a
        notebook cell run again) replaces that stage in place.
        """
        return self._add(stage, name=name, total=total, executor=executor, capture=capture,
                         cache=cache, redefine=True)

    def _add(self, stage: StageLike, *, name: str | None = None, total: int | None = None,
             executor: Any = None, capture: bool | None = None, cache: bool | None = None,
             redefine: bool) -> Stage:
        if not isinstance(stage, Stage):
            stage = Stage(stage, name=name or "", total=total, executor=executor,
                          capture=capture, cache=cache)
        elif name is not None or total is not None or executor is not None or \
                capture is not None or cache is not None:
            raise PipelineError(
                f"stage {stage.name!r} is already a Stage; set name/total/executor/capture/"
                "cache on it"
            )
        index = next((i for i, s in enumerate(self._stages) if s.name == stage.name), None)
        if index is not None and not (redefine and _redefines(self._stages[index].fn, stage.fn)):
            raise PipelineError(
                f"pipeline {self.name!r} already has a stage named {stage.name!r}; "
                "stage names must be unique (pass name=..., e.g. Stage(fn, name='scale'))"
            )
        position = len(self._stages) if index is None else index
        if position:
            stage.check_accepts(object())
        else:
            _check_first(stage)
        if index is None:
            self._stages.append(stage)
        else:  # a notebook cell defining the stage was run again: take the new code
            self._stages[index] = stage
        return stage

    @overload
    def stage(self, fn: Callable[..., Any], /) -> Callable[..., Any]: ...

    @overload
    def stage(self, name: str | None = None, /, *, total: int | None = None,
              executor: Any = None, capture: bool | None = None, cache: bool | None = None
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def stage(self, fn_or_name: Any = None, /, *, total: int | None = None,
              executor: Any = None, name: str | None = None,
              capture: bool | None = None, cache: bool | None = None) -> Any:
        """Decorate a function to append it as a stage; the function is returned unchanged.

        Usable bare (``@pipe.stage``) or with a display name and options
        (``@pipe.stage("Preprocess", total=3)``, ``@pipe.stage(cache=False)``).
        """
        if callable(fn_or_name) and not isinstance(fn_or_name, str):
            self.add(fn_or_name, name=name, total=total, executor=executor, capture=capture,
                     cache=cache)
            return fn_or_name
        if fn_or_name is not None and not isinstance(fn_or_name, str):
            raise PipelineError(
                f"@{self.name}.stage takes a function or a stage name (got {_describe(fn_or_name)})"
            )
        display = fn_or_name if fn_or_name is not None else name

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(fn, name=display, total=total, executor=executor, capture=capture,
                     cache=cache)
            return fn

        return decorate

    def _check_startable(self, data: Any) -> None:
        if not self._stages:
            raise PipelineError(
                f"pipeline {self.name!r} has no stages; add one with @pipe.stage"
            )
        first = self._stages[0]
        if data is NO_INPUT:
            first.check_accepts()
        else:
            first.check_accepts(data)

    def cache_for(self, stage: Stage) -> StageCache | None:
        """The cache ``stage`` uses in this pipeline's runs (None: it runs uncached)."""
        wanted = stage.cache if stage.cache is not None else self.cache is not False
        if not wanted:
            return None
        return self.cache if isinstance(self.cache, StageCache) else StageCache()


def _redefines(old: Callable[..., Any], new: Callable[..., Any]) -> bool:
    """True when ``new`` is the same function defined again (a re-run notebook cell)."""
    key = ("__module__", "__qualname__")
    if getattr(new, "__name__", "") == "<lambda>":
        return False
    same = all(getattr(old, a, None) is not None and getattr(old, a, None) == getattr(new, a, None)
               for a in key)
    return same and old is not new


def _check_first(stage: Stage) -> None:
    """The first stage must take the run's input or nothing at all."""
    try:
        stage.check_accepts(object())
    except PipelineError:
        try:
            stage.check_accepts()
        except PipelineError:
            raise PipelineError(
                f"stage {stage.name!r} must accept the run's input as one positional "
                f"argument, or no argument (its signature is "
                f"{stage.name}{inspect.signature(stage.fn)})"
            ) from None
