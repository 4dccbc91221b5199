"""A plain (non-editable) install carries everything the server reads: every subpackage and schema.sql
(the Dockerfile installs so; /docs comes from the swagger-ui-bundle package). Built as `pip wheel` builds
it, and imported from the wheel's own files, not from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_wheel_carries_every_package_and_data_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--quiet", "-w", str(tmp_path)],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("canopy_svc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "canopy_svc").rglob("__init__.py")}
    assert {f"{package}/__init__.py" for package in packages} <= names
    assert {"canopy_svc/store/schema.sql", "canopy_svc/py.typed"} <= names

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = (
        "import canopy_svc, sys; from canopy_svc.store.migrations import schema_path; "
        "from canopy_svc.api.app import create_app; "
        "print(canopy_svc.__file__); print(len(schema_path().read_text()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        timeout=120,
    ).stdout.split()
    assert Path(out[0]).is_relative_to(unpacked)
    assert int(out[1]) == len((ROOT / "canopy_svc" / "store" / "schema.sql").read_text())
