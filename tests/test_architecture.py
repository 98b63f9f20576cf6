"""Imports inside cnnkit point one way.

Every module under ``src/cnnkit`` is parsed with ``ast``; every import it makes (module level,
inside functions, ``if TYPE_CHECKING`` blocks and relative ones alike) that names a cnnkit module
is an edge.  The rules:

1. Each top-level module or subpackage belongs to a layer (bottom to top)::

       errors, io, settings, runtime  <  augment  <  config, run_folder  <  data, models  <  inference
       <  train, evaluate, visualize  <  commands, recipes, serve, studio
       <  cli, __main__, the package root (cnnkit/__init__.py)

   A module may import its own layer or lower ones, never a higher one.  A new top-level module
   must be given a layer here.
2. These imports are forbidden as well: ``evaluate``, ``visualize`` and ``serve`` never import
   ``train`` (a saved model is served without training code); ``train`` never imports
   ``visualize``.  (Together with rule 1: nothing below ``train`` imports it, and neither
   ``train`` nor ``data`` draws pictures.)
3. ``inference`` takes from ``data`` only decoding and file names (``data.decode``, ``data.folders``).
4. No import cycles: neither between top-level subpackages nor between modules.

A failure names the importing module, its line and the import.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "cnnkit"

LAYERS = [
    {"errors", "io", "settings", "runtime", "phases"},
    {"augment"},  # each augmentation declares its own settings; config assembles them into RunConfig
    {"config", "run_folder"},  # run_folder: the run folder's file names and records
    {"data", "models"},
    {"inference"},
    {"train", "evaluate", "visualize"},
    {"commands", "recipes", "serve", "studio"},
    {"cli", "__main__", ""},  # "" = the package root, cnnkit/__init__.py
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
FORBIDDEN = {("evaluate", "train"), ("visualize", "train"), ("train", "visualize"), ("serve", "train")}
INFERENCE_MAY_USE_FROM_DATA = {"cnnkit.data.decode", "cnnkit.data.folders"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a cnnkit module (``cnnkit.a.b.func`` -> ``cnnkit.a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, str]]:
    """(imported cnnkit module, line, source text of the import) for every import in ``path``."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found, seen = [], set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y / from .. import z
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub where there is one
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for name in names:
            if name == ROOT or name.startswith(ROOT + "."):
                target = _resolve(name, modules)
                if target is not None and target != module and (target, node.lineno) not in seen:
                    seen.add((target, node.lineno))
                    found.append((target, node.lineno, ast.get_source_segment(text, node)))
    return found


def top(module: str) -> str:
    """``cnnkit.train.run`` -> ``train``; ``cnnkit.commands.train`` -> ``runs``; ``cnnkit`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph() -> dict[str, list[tuple[str, int, str]]]:
    modules = all_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (iterative depth-first search)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = defaultdict(int)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path = [start]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif colour[child] == GREY:
                return path[path.index(child):] + [child]
            elif colour[child] == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def where(graph, a: str, b: str) -> str:
    """The first import in module ``a`` of module ``b``, as 'a:line: text'."""
    for target, line, text in graph[a]:
        if target == b:
            return f"{a}:{line}: {text}"
    return f"{a} -> {b}"


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_parser_sees_function_level_and_relative_imports(tmp_path):
    # the rules are only as good as the edges: check the edge finder on a known file
    modules = {"cnnkit.a": tmp_path / "a.py", "cnnkit.pkg": tmp_path / "pkg" / "__init__.py",
               "cnnkit.pkg.sub": tmp_path / "pkg" / "sub.py", "cnnkit.pkg.other": tmp_path / "pkg" / "other.py"}
    src = tmp_path / "pkg" / "sub.py"
    src.parent.mkdir()
    src.write_text("import os\nfrom . import other\n\ndef f():\n    from cnnkit.a import thing\n"
                   "    import cnnkit.pkg\n")
    found = {t for t, _, _ in imports_of("cnnkit.pkg.sub", src, modules)}
    assert found == {"cnnkit.pkg.other", "cnnkit.a", "cnnkit.pkg"}


def test_every_top_level_module_has_a_layer(graph):
    missing = sorted({top(m) for m in graph} - set(LAYER))
    assert not missing, f"give these cnnkit modules a layer in tests/test_architecture.py: {missing}"


def test_imports_never_point_up_a_layer(graph):
    bad = []
    for module, imports in graph.items():
        src = top(module)
        for target, line, text in imports:
            dst = top(target)
            if src == dst:
                continue
            if LAYER.get(dst, -1) > LAYER.get(src, -1):
                bad.append(f"{module}:{line}: {text}  ({src or 'cnnkit'} is below {dst})")
            elif (src, dst) in FORBIDDEN:
                bad.append(f"{module}:{line}: {text}  ({src} must not import {dst})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_inference_uses_only_decoding_from_data(graph):
    bad = [f"{m}:{line}: {text}" for m, imports in graph.items() if top(m) == "inference"
           for target, line, text in imports
           if top(target) == "data" and target not in INFERENCE_MAY_USE_FROM_DATA]
    assert not bad, "inference may take only decoding from data:\n" + "\n".join(bad)


def test_no_import_cycle_between_subpackages(graph):
    packages: dict[str, set[str]] = defaultdict(set)
    for module, imports in graph.items():
        for target, _, _ in imports:
            if top(target) != top(module):
                packages[top(module)].add(top(target))
    cycle = find_cycle(packages)
    if cycle:
        # name one import for each step of the cycle
        steps = []
        for a, b in zip(cycle, cycle[1:]):
            first = next((where(graph, m, t) for m in graph if top(m) == a
                          for t, _, _ in graph[m] if top(t) == b), f"{a} -> {b}")
            steps.append(first)
        pytest.fail("import cycle between subpackages " + " -> ".join(c or "cnnkit" for c in cycle) + ":\n"
                    + "\n".join(steps))


def test_no_import_cycle_between_modules(graph):
    edges = {m: {t for t, _, _ in imports} for m, imports in graph.items()}
    cycle = find_cycle(edges)
    if cycle:
        pytest.fail("import cycle " + " -> ".join(cycle) + ":\n"
                    + "\n".join(where(graph, a, b) for a, b in zip(cycle, cycle[1:])))


def test_the_checks_catch_a_cycle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert LAYER["train"] > LAYER["inference"] > LAYER["data"] and LAYER["commands"] > LAYER["visualize"]
