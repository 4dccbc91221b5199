"""ARCHITECTURE.md stays true: every module, folder and file it names exists, and every module of the
package is named there or sits in a folder it names."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "canopy_svc"
MAP = (ROOT / "ARCHITECTURE.md").read_text()
NAMED = set(re.findall(r"(?<![\w<>/.-])((?:[a-z_]+/)*[a-z_]+(?:\.py|\.sql|\.md|/))(?![\w<>])", MAP))


def exists(name: str) -> bool:
    """A path from the repository or the package; a bare file name, as a list of one folder's modules
    gives it, anywhere in the package."""
    if "/" not in name.rstrip("/"):
        return (ROOT / name).exists() or any(PACKAGE.rglob(name))
    return any((base / name).exists() for base in (ROOT, PACKAGE))


def test_every_path_the_map_names_exists() -> None:
    assert {"api/app.py", "store/schema.sql", "canopy_svc/wire/", "core/settings.py"} <= NAMED
    assert sorted(name for name in NAMED if not exists(name)) == []


def test_every_folder_of_the_package_is_on_the_map() -> None:
    folders = {path.parent.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")} - {"."}
    assert sorted(f for f in folders if f"canopy_svc/{f}/" not in NAMED and f"{f}/" not in NAMED) == []
