"""The layers ARCHITECTURE.md draws, checked on every module's imports (at module level and inside
functions): the package graph has no cycle and no arrow the drawing lacks; `model`, `audio_io` and
`realtime` know nothing of Qt; importing a module of the app process (`app`, `ui`, `audio_io`) never
brings in torch or transformers, through any chain of module-level imports."""

from __future__ import annotations

import ast
import functools
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("main", "app", "ui", "audio_io", "realtime", "model", "bench")
BOTTOM = ("events", "facts", "worker_thread")  # every layer may import these; they import none of ours
ARROWS: dict[str, set[str]] = {
    "main": {"app", "audio_io", "realtime"},
    "app": {"ui", "audio_io", "realtime", "model"},
    "realtime": {"model"},
    "bench": {"app", "audio_io", "realtime", "model"},  # measures every layer; never the tests' code
    "ui": set(),
    "audio_io": set(),
    "model": set(),
}
OURS = (*PACKAGES, *BOTTOM, "tests")
QT_FREE = ("model", "audio_io", "realtime", *BOTTOM)
APP_PROCESS = ("app", "ui", "audio_io")
ENGINE_ONLY = ("torch", "transformers")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    module_level: bool  # run when the source is imported (not inside a function, not TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        top = path.relative_to(ROOT).parts[0]
        if top.removesuffix(".py") in (*PACKAGES, *BOTTOM):
            yield path


MODULES = {module_name(p): p for p in product_files()}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return found or [base]


@functools.cache
def imports_of(path: Path) -> list[Import]:
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend(Import(source, t, module_level) for t in _targets(child, package))
            inside = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            typing_only = isinstance(child, ast.If) and _type_checking(child)
            visit(child, module_level and not inside and not typing_only)

    visit(ast.parse(path.read_text(), str(path)), True)
    return found


ALL_IMPORTS = [i for p in MODULES.values() for i in imports_of(p)]


def layer(module: str) -> str:
    return module.split(".")[0]


def package_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in imports:
        source, target = layer(i.source), layer(i.target)
        if target in OURS and target != source:
            graph.setdefault(source, set()).add(target)
    return graph


def test_the_modules_are_found() -> None:
    assert {"app.session", "ui.main_window", "model.engine", "audio_io.playback", "realtime.server"} <= set(
        MODULES
    )
    assert any(i.source == "app.session" and i.target == "app.reply_ledger" for i in ALL_IMPORTS)
    in_function = [i for i in ALL_IMPORTS if i.source == "app.terminal_chat" and i.target == "model.engine"]
    assert in_function and not any(i.module_level for i in in_function)


def test_the_package_graph_has_no_cycle() -> None:
    graph = package_graph(ALL_IMPORTS)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"the packages import each other in a circle: {' -> '.join(error.args[1])}")


def test_every_import_between_packages_is_an_arrow_of_the_drawing() -> None:
    def allowed(source: str) -> set[str]:
        return set() if source in BOTTOM else ARROWS[source] | set(BOTTOM)

    stray = sorted(
        f"{i.source} imports {i.target}"
        for i in ALL_IMPORTS
        if layer(i.target) in OURS
        and layer(i.target) != layer(i.source)
        and layer(i.target) not in allowed(layer(i.source))
    )
    assert stray == []


def test_model_audio_io_and_realtime_know_nothing_of_qt() -> None:
    qt = sorted(
        f"{i.source} imports {i.target}"
        for i in ALL_IMPORTS
        if layer(i.source) in QT_FREE and layer(i.target) in ("PySide6", "PyQt5", "PyQt6", "shiboken6")
    )
    assert qt == []


def _loaded_on_import(module: str) -> set[str]:
    """Every module that importing `module` runs: its packages' `__init__`s and, transitively, the
    module-level imports of each."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix in seen:
                continue
            seen.add(prefix)
            if prefix in MODULES:
                todo.extend(i.target for i in imports_of(MODULES[prefix]) if i.module_level)
    return seen


@pytest.mark.parametrize("package", APP_PROCESS)
def test_the_app_process_never_imports_torch_at_module_level(package: str) -> None:
    heavy = {
        module: sorted(m for m in _loaded_on_import(module) if layer(m) in ENGINE_ONLY)
        for module in MODULES
        if layer(module) == package
    }
    assert {m: found for m, found in heavy.items() if found} == {}
