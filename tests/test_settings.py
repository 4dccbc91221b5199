"""Settings (canopy_svc/core/settings.py): the one reader of the environment, each variable declared once."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from canopy_svc import cli
from canopy_svc.core.settings import HttpLimits, Settings, variable

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "canopy_svc"
SECRETS = {"CANOPY_SVC_JWT_SECRET": "s" * 40, "CANOPY_SVC_DATA_KEY": "A" * 43}

# Uses of the process environment outside config.py, per module, with why they are not settings.
ENVIRONMENT_USES = {
    # setdefault("XDG_RUNTIME_DIR", ...): the runtime dir pgserver's child processes inherit.
    "canopy_svc/core/embedded.py": 1,
}
_ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(source: str) -> int:
    """How many times the module names os.environ, os.getenv and the like (however os is imported)."""
    tree = ast.parse(source)
    os_names = {
        alias.asname or "os"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os"
    }
    uses = 0
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _ENVIRONMENT_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            uses += 1
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            uses += sum(alias.name in _ENVIRONMENT_NAMES for alias in node.names)
    return uses


def test_only_config_reads_the_environment() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name != "canopy_svc/core/settings.py" and (uses := environment_uses(path.read_text())):
            found[name] = uses
    assert found == ENVIRONMENT_USES


def test_the_check_sees_every_spelling() -> None:
    spellings = [
        "import os\nos.environ.get('X')",
        "import os as o\no.getenv('X')",
        "from os import environ",
        "from os import getenv as g",
        "import os\nos.environ['X'] = '1'",
    ]
    assert [environment_uses(source) for source in spellings] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("cls", [Settings, HttpLimits])
def test_each_setting_declares_its_own_variable(cls: type) -> None:
    names = [variable(cls, setting.name) for setting in dataclasses.fields(cls)]
    assert all(re.fullmatch(r"CANOPY_SVC_[A-Z0-9_]+|DATABASE_URL", name) for name in names), names
    assert len(set(names)) == len(names)


def test_the_readme_documents_exactly_the_declared_variables() -> None:
    declared = {variable(cls, setting.name) for cls in (Settings, HttpLimits) for setting in dataclasses.fields(cls)}
    documented = set(re.findall(r"\bCANOPY_SVC_[A-Z0-9_]+\b|\bDATABASE_URL\b", (ROOT / "README.md").read_text()))
    assert documented == declared


def test_exported_settings_read_back_the_same(tmp_path: Path) -> None:
    """What serve writes for its workers is what each worker reads (secrets come from where they came)."""
    settings = Settings.from_env(
        SECRETS,
        data_dir=tmp_path,
        database_url="postgresql://db/x",
        port=9001,
        workers=3,
        card_worker=False,
        lithic_allowed_hosts=("127.0.0.1", "[::1]:80"),
        rate_limit_timeout_seconds=0.125,
        log_level="DEBUG",
    )
    exported = settings.exported()
    assert not set(exported) & set(SECRETS)
    assert Settings.from_env({**exported, **SECRETS}) == settings
    assert not list(tmp_path.iterdir())  # the secrets were given: nothing made in the data folder


def test_unset_and_empty_variables_are_the_defaults(tmp_path: Path) -> None:
    given = Settings.from_env({**SECRETS, "CANOPY_SVC_PORT": "", "CANOPY_SVC_DATA_DIR": str(tmp_path)})
    assert dataclasses.replace(given, data_dir=Settings.data_dir, jwt_secret="", data_key=b"") == Settings()


def test_several_workers_share_their_rate_limits_unless_the_operator_chose() -> None:
    assert Settings.from_env(SECRETS).rate_limit_store == "memory"
    assert Settings.from_env({**SECRETS, "CANOPY_SVC_WORKERS": "2"}).rate_limit_store == "postgres"
    chosen = {**SECRETS, "CANOPY_SVC_WORKERS": "2", "CANOPY_SVC_RATE_LIMIT_STORE": "memory"}
    assert Settings.from_env(chosen).rate_limit_store == "memory"


def test_secrets_not_given_are_made_once_in_the_data_folder(tmp_path: Path) -> None:
    first = Settings.from_env({}, data_dir=tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data-key", "jwt-secret"]
    again = Settings.from_env({"CANOPY_SVC_DATA_DIR": str(tmp_path)})
    assert (again.jwt_secret, again.data_key) == (first.jwt_secret, first.data_key)
    assert first.jwt_secret not in repr(first) and "data_key" not in repr(first)


def test_the_cli_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        **SECRETS,
        "CANOPY_SVC_PORT": "8100",
        "CANOPY_SVC_HOST": "0.0.0.0",
        "CANOPY_SVC_DATA_DIR": str(tmp_path / "env"),
    }.items():
        monkeypatch.setenv(name, value)
    args = cli.build_parser().parse_args(
        ["serve", "--port", "8200", "--data-dir", str(tmp_path / "flag"), "--graceful-timeout", "3"]
    )
    settings = cli._settings(args)
    assert (settings.port, settings.host, settings.data_dir) == (8200, "0.0.0.0", tmp_path / "flag")
    assert settings.graceful_timeout_seconds == 3


def test_a_webhook_lease_no_longer_than_the_timeout_is_refused() -> None:
    """A lease that runs out while its POST may still be answering would let another process send the
    same delivery at once."""
    given = {**SECRETS, "CANOPY_SVC_WEBHOOK_TIMEOUT_SECONDS": "10", "CANOPY_SVC_WEBHOOK_LEASE_SECONDS": "10"}
    with pytest.raises(ValueError, match="CANOPY_SVC_WEBHOOK_LEASE_SECONDS must be longer than"):
        Settings.from_env(given)
    assert Settings.from_env({**given, "CANOPY_SVC_WEBHOOK_LEASE_SECONDS": "10.5"}).webhook_lease_seconds == 10.5
