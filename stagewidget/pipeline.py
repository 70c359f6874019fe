"""The public ``Pipeline``: a pipeline definition that starts its own runs.

Part of the facade, the top of the house: ``Pipeline.start`` creates the engine's
``Run``, attaches the views this front end wants (and registers them as the engine's
display hook), then launches it. The definitions themselves (``Stage``, validation)
live in ``engine.definition``, so the engine and the service need no facade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .engine.call import NO_INPUT
from .engine.definition import PipelineDefinition, Stage
from .engine.run import Run
from .views import show

__all__ = ["NO_INPUT", "Pipeline", "Stage"]


class Pipeline(PipelineDefinition):
    """A named sequence of stages; the output of each stage is the input of the next.

    Build it with the ``@pipe.stage`` decorator or pass the stages at once::

        pipe = Pipeline("train-model", [load, Stage(preprocess, total=3), train])

    With ``capture=True`` (the default) the tqdm bars that a stage's code creates are
    shown as that stage's progress instead of drawing themselves; ``capture=False``
    leaves them alone (a stage's own ``capture=`` wins over the pipeline's).

    With ``cache=True`` each stage's output is kept on disk (``sw.clear_cache()`` empties
    it), keyed by the stage's own code and its input: a later run, in this process or a
    fresh kernel, loads it instead of running the stage, which shows as ``cached``.
    """

    def start(self, data: Any = NO_INPUT, *, executor: Any = None, display: Any = None,
              refresh_hz: float = 10.0, clock: Callable[[], float] | None = None) -> Run:
        """Start a run in the background and return its ``Run`` at once.

        Args:
            data: the first stage's input; leave it out for a first stage without arguments.
            executor: ``"thread"`` (default: a background thread), ``"inline"`` (the
                calling thread, for debuggers; returns when the run ends) or an executor.
            display: None shows the best view for this front end, False none, True
                forces one; a callable or view object is subscribed as given.
            refresh_hz: most progress snapshots per second delivered to observers.
            clock: wall-clock function for timestamps (default ``time.time``).
        """
        self._check_startable(data)
        run = Run.start(self, data, executor=executor, refresh_hz=refresh_hz, clock=clock,
                        launch=False)
        show.attach(run, display)  # registers the engine's display hook, too
        run.launch()
        return run

    def run(self, data: Any = NO_INPUT, **options: Any) -> Any:
        """Start a run, wait for it and return the last stage's output.

        Ctrl-C (or a kernel interrupt) cancels the run, waits for it to stop and
        re-raises ``KeyboardInterrupt``. A failed stage's exception is re-raised.
        """
        return self.start(data, **options)._join()
