"""The package is a strict downward house: its imports form no cycle and never go up.

Layers, bottom to top: ``errors``; ``status``; ``durable`` (the data folder, the run
history, the stage cache); ``engine``; ``views``, ``service`` and
``adapters``; the public facade (``__init__``, ``pipeline``, ``__main__``, ``demo``). A
module may import its own layer or lower ones, never a higher one, and the import graph
(module-level and function-level imports alike) has no cycle. Imports inside a function
are for optional dependencies only (or for package modules that import one at their
top, such as ``views.widget``, which needs ipywidgets). Imports under
``if TYPE_CHECKING:`` are not run and are left out: they name types only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import stagewidget

PACKAGE = "stagewidget"
ROOT = Path(stagewidget.__file__).parent

LAYERS = {"errors": 0, "status": 1, "durable": 2, "engine": 3, "views": 4, "service": 4,
          "adapters": 4, "jupyter": 4, "__init__": 5, "pipeline": 5, "__main__": 5, "demo": 5}
FACADE_LAYER = 5

# Third-party packages a user may not have: imported where they are needed, on use.
OPTIONAL = frozenset({
    "ipywidgets", "IPython", "dask", "distributed", "cloudpickle", "redis", "nest_asyncio",
    "nest_asyncio2", "starlette", "uvicorn", "tqdm", "keras", "lightning",
    "pytorch_lightning", "torch", "transformers", "optuna", "sklearn", "numpy",
    # a dependency, but its import takes ~0.3 s: loaded by the stage cache when used
    "joblib",
    # the Jupyter Server extension (stagewidget.jupyter), loaded by Jupyter Server only
    "tornado", "jupyter_server",
})
# The package's optional parts, loaded on first use so ``import stagewidget`` stays
# small and fast (the style guide's "optional parts imported lazily"): the HTTP service,
# the Dask and process executors, the run table, the training-loop adapters.
LAZY_PARTS = ("stagewidget.service", "stagewidget.engine.cluster",
              "stagewidget.engine.process", "stagewidget.views.table", "stagewidget.adapters",
              "stagewidget.jupyter")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1 and parts[:-1] != [PACKAGE]:
        parts.pop()
    elif parts == [PACKAGE, "__init__"]:
        return f"{PACKAGE}.__init__"
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def layer_of(module: str) -> int:
    return LAYERS[module.split(".")[1]]


class Imports(ast.NodeVisitor):
    """Collect (target, in_function, line) of every import not under TYPE_CHECKING."""

    def __init__(self, module: str, package: bool) -> None:
        self.module = module
        # the package a relative import is resolved against
        base = module if package else module.rpartition(".")[0]
        self.base = PACKAGE if module == f"{PACKAGE}.__init__" else base
        self.found: list[tuple[str, bool, int]] = []
        self.depth = 0

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else \
            test.attr if isinstance(test, ast.Attribute) else ""
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, self.depth > 0, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.base.split(".")
            parts = parts[:len(parts) - (node.level - 1)]
            target = ".".join(parts + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] == PACKAGE:
            # "from . import format": a name may be a submodule, imported as such
            targets = {f"{target}.{alias.name}" if known(f"{target}.{alias.name}") else target
                       for alias in node.names}
            for one in sorted(targets):
                self.found.append((one, self.depth > 0, node.lineno))
        else:
            self.found.append((target, self.depth > 0, node.lineno))


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def known(module: str) -> bool:
    return module in MODULES


def resolve(target: str) -> str:
    """The package module an import of ``target`` loads (its longest known prefix)."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in MODULES:
            return name
        parts.pop()
    return f"{PACKAGE}.__init__"


def scan() -> dict[str, list[tuple[str, bool, int]]]:
    graph = {}
    for module, path in MODULES.items():
        visitor = Imports(module, is_package(path))
        visitor.visit(ast.parse(path.read_text(), str(path)))
        graph[module] = visitor.found
    return graph


GRAPH = scan()


def internal_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, found in GRAPH.items():
        for target, _, _ in found:
            if target.split(".")[0] == PACKAGE:
                resolved = resolve(target)
                if resolved != module:
                    edges[module].add(resolved)
    return edges


def gateways() -> set[str]:
    """Package modules that import an optional dependency at their top."""
    return {module for module, found in GRAPH.items()
            if any(not inner and target.split(".")[0] in OPTIONAL
                   for target, inner, _ in found)}


def test_every_module_has_a_layer() -> None:
    assert {module.split(".")[1] for module in MODULES} <= set(LAYERS)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
              for module, targets in internal_edges().items() for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    edges = internal_edges()
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    # A package's __init__ importing its own submodules is not a cycle back to them.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []


def test_imports_inside_functions_are_of_optional_dependencies_only() -> None:
    allowed = OPTIONAL | gateways()

    def optional(target: str) -> bool:
        if target.split(".")[0] in OPTIONAL:
            return True
        module = resolve(target) if target.split(".")[0] == PACKAGE else ""
        return module in allowed or module.startswith(LAZY_PARTS)

    inner = [f"{module}:{line} imports {target}"
             for module, found in GRAPH.items() for target, in_function, line in found
             if in_function and not optional(target)]
    assert inner == []


def test_the_engine_does_not_import_the_views() -> None:
    engine = [module for module in MODULES if module.startswith(f"{PACKAGE}.engine")]
    edges = internal_edges()
    assert [(m, t) for m in engine for t in edges[m] if not t.startswith(
        (f"{PACKAGE}.engine", f"{PACKAGE}.durable", f"{PACKAGE}.status",
         f"{PACKAGE}.errors"))] == []


def test_durable_imports_only_errors_and_status() -> None:
    durable = [module for module in MODULES if module.startswith(f"{PACKAGE}.durable")]
    edges = internal_edges()
    assert [(m, t) for m in durable for t in edges[m] if not t.startswith(
        (f"{PACKAGE}.durable", f"{PACKAGE}.status", f"{PACKAGE}.errors"))] == []


def test_nothing_imports_the_jupyter_extension_and_it_reads_only_below_it() -> None:
    # Jupyter Server alone loads it (through the facade's lazy extension point); it
    # reads the history (durable), the status model and the service's page and wire
    # helpers, and never the engine that runs things
    edges = internal_edges()
    jupyter = f"{PACKAGE}.jupyter"
    assert [m for m, targets in edges.items() if not m.startswith(jupyter)
            and any(t.startswith(jupyter) for t in targets)] == []
    assert sorted({t for m, targets in edges.items() if m.startswith(jupyter)
                   for t in targets if not t.startswith(jupyter)}) == [
        f"{PACKAGE}.durable.owner", f"{PACKAGE}.durable.reader", f"{PACKAGE}.errors",
        f"{PACKAGE}.service.openapi", f"{PACKAGE}.service.pages", f"{PACKAGE}.service.store",
        f"{PACKAGE}.service.stores", f"{PACKAGE}.service.wire", f"{PACKAGE}.status"]
