"""Imports flow one way: HTTP (api, and the LoanPro face beside it: loanpro) -> rules -> store, with
the outside world (issuers) below the rules,
the background workers beside the HTTP face, and under them all the contract's vocabulary (wire: the
types and the errors) and the plumbing (core).

Every import counts, at the top of a module or inside a function: a late import still ties the
modules together. api/app.py is the composition root (it builds the workers, the gateway and the
store's maintenance), so it may import any layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "canopy_svc"
COMPOSITION_ROOT = "canopy_svc.api.app"

# layer -> the layers it must not import.
FORBIDDEN = {
    # The Canopy face; api/app.py, the composition root, mounts the LoanPro face beside it.
    "api": {"store", "workers", "loanpro"},
    # The LoanPro face: a sibling of api/ that reuses its plumbing (writes.py, routing.py, requests.py)
    # and calls the same rules; never the store.
    "loanpro": {"store", "workers"},
    "workers": {"api", "loanpro"},
    "rules": {"api", "workers", "loanpro"},
    "store": {"api", "rules", "issuers", "workers", "loanpro"},
    "issuers": {"api", "rules", "store", "workers", "loanpro"},
    # Settings validates the operator's Lithic hosts with issuers/hosts.py, so core may import issuers.
    "core": {"api", "rules", "store", "workers", "loanpro"},
    "wire": {"api", "rules", "store", "issuers", "workers", "core", "loanpro"},
}
LAYERS = tuple(FORBIDDEN)

# Edges another branch removes; delete each here when it does (the test fails on a stale one too).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def layer(module: str) -> str:
    for name in LAYERS:
        if module == f"canopy_svc.{name}" or module.startswith(f"canopy_svc.{name}."):
            return name
    return "entry"  # canopy_svc itself, its __main__ and the CLI: they start everything


def test_every_module_is_in_a_layer() -> None:
    """No module loose at the package's top but the entry points."""
    assert {module for module in modules() if layer(module) == "entry"} == {
        "canopy_svc",
        "canopy_svc.__main__",
        "canopy_svc.cli",
    }


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under `if TYPE_CHECKING:`: read by type checkers, never run."""
    return {
        node
        for test in ast.walk(tree)
        if isinstance(test, ast.If) and ast.unparse(test.test) == "TYPE_CHECKING"
        for statement in test.body
        for node in ast.walk(statement)
    }


def imports_of(module: str, path: Path, known: Iterable[str], type_only: bool = True) -> set[str]:
    """The canopy_svc modules `module` imports anywhere in its text (but under TYPE_CHECKING, unless
    `type_only`)."""
    known = set(known)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    tree = ast.parse(path.read_text())
    skipped = set() if type_only else type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {target for target in targets if target in known and target != module}


def import_graph(type_only: bool = True) -> dict[str, set[str]]:
    found = modules()
    return {module: imports_of(module, path, found, type_only) for module, path in found.items()}


def forbidden_edges(graph: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (source, target)
        for source, targets in graph.items()
        if source != COMPOSITION_ROOT
        for target in targets
        if layer(target) in FORBIDDEN.get(layer(source), set())
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, set())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_imports_flow_one_way() -> None:
    assert forbidden_edges(import_graph()) == KNOWN_EXCEPTIONS


def test_no_import_cycle() -> None:
    """No cycle among the imports that run: a module may name, for its type hints only, the type of a
    module that imports it (api/state.py and the rate limiter), as mypy resolves that without a cycle."""
    assert cycles(import_graph(type_only=False)) == []
    assert import_graph(type_only=False)["canopy_svc.api.state"] < import_graph()["canopy_svc.api.state"]


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "canopy_svc.rules.cards" in graph["canopy_svc.rules.accounts"]  # from canopy_svc.rules import cards
    assert "canopy_svc.issuers.lithic" in graph["canopy_svc.issuers.gateway"]  # from ... import LithicClient
    assert "canopy_svc.core.db" in graph["canopy_svc.core.logs"]  # imported inside a function
    assert "canopy_svc.core.embedded" in graph["canopy_svc.cli"]


def test_the_checks_catch_what_they_forbid() -> None:
    graph = {
        "canopy_svc.rules.a": {"canopy_svc.api.routes.b", "canopy_svc.workers.cards"},
        "canopy_svc.store.c": {"canopy_svc.rules.a"},
        "canopy_svc.issuers.d": {"canopy_svc.store.c"},
        "canopy_svc.api.routes.b": {"canopy_svc.store.c"},
        "canopy_svc.api.app": {"canopy_svc.store.c"},
        "canopy_svc.x": {"canopy_svc.y"},
        "canopy_svc.y": {"canopy_svc.z"},
        "canopy_svc.z": {"canopy_svc.x"},
    }
    assert forbidden_edges(graph) == {
        ("canopy_svc.rules.a", "canopy_svc.api.routes.b"),
        ("canopy_svc.rules.a", "canopy_svc.workers.cards"),
        ("canopy_svc.store.c", "canopy_svc.rules.a"),
        ("canopy_svc.issuers.d", "canopy_svc.store.c"),
        ("canopy_svc.api.routes.b", "canopy_svc.store.c"),
    }
    assert cycles(graph) == [
        ["canopy_svc.api.routes.b", "canopy_svc.rules.a", "canopy_svc.store.c"],
        ["canopy_svc.x", "canopy_svc.y", "canopy_svc.z"],
    ]
