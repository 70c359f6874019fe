"""The ``stagewidget-api`` directive: autodoc entries for the names in ``stagewidget.__all__``.

``.. stagewidget-api:: KIND`` (in a reST page) documents every public name of that kind
(``classes``, ``exceptions``, ``functions``, ``other``), derived from ``__all__`` when the
page is built, so a name added to the package appears here without editing the docs.
"""

from __future__ import annotations

import enum
import inspect
import types
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import stagewidget

KINDS = ("classes", "exceptions", "functions", "other")


def kind_of(value: Any) -> str:
    """Which section of the reference a public value belongs to."""
    if isinstance(value, type) and issubclass(value, BaseException):
        return "exceptions"
    if isinstance(value, type):
        return "classes"
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return "functions"
    return "other"


def directive_lines(name: str, value: Any) -> list[str]:
    """The autodoc directive (with its options) that documents ``stagewidget.<name>``."""
    target = f"stagewidget.{name}"
    if isinstance(value, type) and issubclass(value, BaseException):
        return [f".. autoexception:: {target}", "   :show-inheritance:"]
    if isinstance(value, type) and issubclass(value, enum.Enum):
        return [f".. autoclass:: {target}", "   :members:", "   :undoc-members:"]
    if isinstance(value, type):
        return [f".. autoclass:: {target}", "   :members:", "   :show-inheritance:"]
    if isinstance(value, types.ModuleType):
        return [f".. automodule:: {target}"]
    if callable(value):
        return [f".. autofunction:: {target}"]
    return [f".. autodata:: {target}", "   :annotation:", "",
            f"   ``{value!r}``, the installed version."]


class PublicApi(SphinxDirective):
    """Document every name of one kind in ``stagewidget.__all__``, in ``__all__``'s order."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0]
        if kind not in KINDS:
            raise self.error(f"stagewidget-api takes one of {', '.join(KINDS)} (got {kind!r})")
        lines: list[str] = []
        for name in stagewidget.__all__:
            value = getattr(stagewidget, name)
            if kind_of(value) == kind:
                lines += [*directive_lines(name, value), ""]
        content = StringList(lines, source=f"<stagewidget-api {kind}>")
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, content, node)
        return node.children


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("stagewidget-api", PublicApi)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
