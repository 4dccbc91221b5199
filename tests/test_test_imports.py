"""Test modules share helpers through tests/helpers.py (issue 10, item 6), never through conftest or
one another: pytest loads conftest itself (imported as a module it is a second copy, fixtures and all),
and a test module imported by another brings its tests and fixtures into that one. Modules of this
folder are imported as the `tests` package's (tests.processes), not found because the folder is on
sys.path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LOCAL_MODULES = frozenset(path.stem for path in TESTS.glob("*.py")) - {"__init__"}


def imported_modules(tree: ast.AST) -> list[str]:
    """The dotted name of every module an import statement may load (relative ones as tests.<name>)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("tests" + (f".{node.module}" if node.module else "")) if node.level else (node.module or "")
            found.append(base)
            if base == "tests":  # `from tests import x`: x may be a module
                found.extend(f"tests.{alias.name}" for alias in node.names)
    return found


def problems(source: str) -> list[str]:
    found = []
    for name in imported_modules(ast.parse(source)):
        first, _, rest = name.partition(".")
        if first in LOCAL_MODULES:
            found.append(f"{name}: import it as tests.{name}, through the package")
            local = first
        elif first == "tests" and rest:
            local = rest.partition(".")[0]
        else:
            continue
        if local == "conftest" or local.startswith("test_"):
            found.append(f"{name}: shared helpers belong in tests/helpers.py, fixtures in tests/conftest.py")
    return found


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda path: path.name)
def test_no_module_imports_conftest_or_a_test_module(path: Path) -> None:
    assert problems(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "from conftest import ApiClient",
        "import conftest",
        "from tests.conftest import served",
        "from tests import conftest",
        "from . import test_card_worker",
        "from .test_encryption import schema_of",
        "from test_validation import SEED_ASSIGNMENT",
        "def f():\n    from tests.test_resilience import CrashablePostgres\n",
        "from processes import ServerProcess",
    ],
)
def test_the_check_finds_each_kind_of_import_it_forbids(source: str) -> None:
    assert problems(source)


@pytest.mark.parametrize(
    "source",
    [
        "from tests.helpers import ApiClient",
        "from tests import helpers",
        "from tests.processes import ServerProcess",
        "import pytest",
        "from canopy_svc.api.app import create_app",
    ],
)
def test_the_check_allows_the_package_s_helper_modules(source: str) -> None:
    assert problems(source) == []
