"""What clients may start: the served pipelines by name, and the JSON input each takes.

A pipeline's input type comes from its first stage's annotation (``def prepare(data:
dict)`` takes a JSON object); input of another type is refused before a run starts. A
request body sent to a pipeline that takes no input (or none sent to one that needs one) is
refused in the words of the request, not of the stage's Python signature.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from ..engine.call import NO_INPUT
from ..engine.definition import PipelineDefinition as Pipeline
from ..engine.definition import Stage
from ..errors import PipelineError

__all__ = ["check_input_given", "check_input_type", "input_schema", "input_type",
           "pipelines_by_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def pipelines_by_name(pipelines: Any) -> dict[str, Pipeline]:
    """Accept a Pipeline, an iterable of them or a mapping name -> Pipeline."""
    if isinstance(pipelines, Pipeline):
        items: Iterable[tuple[object, Any]] = [(pipelines.name, pipelines)]  # names checked below
    elif isinstance(pipelines, Mapping):
        items = pipelines.items()
    elif isinstance(pipelines, Iterable) and not isinstance(pipelines, (str, bytes)):
        items = [(getattr(p, "name", None), p) for p in pipelines]
    else:
        raise PipelineError(f"pipelines must be a Pipeline, a list or a dict of them "
                            f"(got {pipelines!r})")
    found: dict[str, Pipeline] = {}
    for name, pipe in items:
        if not isinstance(pipe, Pipeline):
            raise PipelineError(f"{name!r} is not a stagewidget Pipeline (got {pipe!r})")
        if not isinstance(name, str) or not _NAME.match(name):
            raise PipelineError(f"pipeline name {name!r} cannot be served: use letters, "
                                "digits, '.', '_' and '-' (at most 100)")
        if name in found:
            raise PipelineError(f"two pipelines are named {name!r}")
        found[name] = pipe
    return found


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
               bool: "boolean"}
_JSON_NAMES = {**_JSON_TYPES, type(None): "null"}


def input_type(pipe: Pipeline) -> type | None:
    """The JSON type the first stage's parameter is annotated with, if a plain one."""
    fn = pipe.stages[0].fn
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: accept any JSON
        return None
    if not params:
        return None
    hint = hints.get(params[0].name)
    hint = typing.get_origin(hint) or hint
    return hint if hint in _JSON_TYPES else None


def check_input_type(name: str, pipe: Pipeline, data: Any) -> None:
    """Raise ``PipelineError`` if ``data`` is not the JSON type the first stage declares."""
    kind = input_type(pipe)
    if kind is None:
        return
    fits = isinstance(data, kind) and (kind is bool or not isinstance(data, bool))
    if kind is float and isinstance(data, int) and not isinstance(data, bool):
        fits = True  # JSON has one number type
    if not fits:
        first = pipe.stages[0]
        param = next(iter(inspect.signature(first.fn).parameters))
        raise PipelineError(
            f"pipeline {name!r} takes a JSON {_JSON_TYPES[kind]} (its first stage is "
            f"{first.name}({param}: {kind.__name__})); got "
            f"{_JSON_NAMES.get(type(data), type(data).__name__)}")


def check_input_given(pipe: Pipeline, data: Any) -> None:
    """Raise ``PipelineError`` worded for an HTTP client when the request's body (``data``;
    ``NO_INPUT`` for an empty one) is there and the first stage takes no input, or is not
    and the first stage needs one. A stage that accepts both is happy either way."""
    if not pipe.stages:
        return  # the pipeline's own check says it has no stages
    first = pipe.stages[0]
    if data is NO_INPUT:
        if not _accepts(first) and _accepts(first, None):
            kind = input_type(pipe)
            what = f"a JSON {_JSON_TYPES[kind]}" if kind is not None else "any JSON value"
            raise PipelineError(f"this pipeline needs an input: send a JSON body ({what})")
    elif not _accepts(first, data) and _accepts(first):
        raise PipelineError("this pipeline takes no input: send an empty body")


def _accepts(stage: Stage, *args: object) -> bool:
    try:
        stage.check_accepts(*args)
    except PipelineError:
        return False
    return True


def input_schema(pipe: Pipeline) -> dict[str, Any] | None:
    """The pipeline's input as a JSON schema; None when its first stage takes no input."""
    try:
        pipe._check_startable(object())
    except PipelineError:
        return None
    kind = input_type(pipe)
    return {"type": _JSON_TYPES[kind]} if kind is not None else {}
