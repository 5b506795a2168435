"""The locks a fresh clone installs from: stale inputs and drifted installs are caught."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "requirements_lock", ROOT / "requirements/lock.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def test_committed_locks_match_their_inputs() -> None:
    lock.check()


def test_a_new_dependency_makes_the_lock_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject.write_text(text.replace('"orjson>=3.10",', '"orjson>=3.10",\n  "requests",'))
    monkeypatch.setattr(lock, "PYPROJECT", pyproject)
    with pytest.raises(lock.LockError, match=r"dev\.lock, requirements/runtime\.lock out of date"):
        lock.check()


def test_a_changed_build_input_makes_only_its_lock_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("build.in", "infra.in", "tools.in"):
        (tmp_path / name).write_text((lock.HERE / name).read_text(encoding="utf-8"))
    (tmp_path / "tools.in").write_text("uv<1\n")
    for each in lock.LOCKS:
        (tmp_path / each.path.name).write_text(each.path.read_text(encoding="utf-8"))
    monkeypatch.setattr(lock, "HERE", tmp_path)
    with pytest.raises(lock.LockError, match=r"^\S*/tools\.lock out of date"):
        lock.check()


def test_this_venv_is_exactly_the_dev_lock() -> None:
    lock.installed(lock.HERE / "dev.lock")


def test_a_drifted_version_is_named(tmp_path: Path) -> None:
    text = (lock.HERE / "dev.lock").read_text(encoding="utf-8")
    pinned = lock.pins(lock.HERE / "dev.lock")["moto"]
    drifted = tmp_path / "dev.lock"
    drifted.write_text(text.replace(f"moto=={pinned} ", "moto==0.0.1 "))
    with pytest.raises(lock.LockError, match=rf"moto: {pinned} installed, 0\.0\.1 locked"):
        lock.installed(drifted)


def test_a_package_outside_the_lock_is_named(tmp_path: Path) -> None:
    text = (lock.HERE / "dev.lock").read_text(encoding="utf-8")
    start = text.index("\nmoto==")
    end = text.index("\n", text.index("# via", start))
    without = tmp_path / "dev.lock"
    without.write_text(text[:start] + text[end:])
    with pytest.raises(lock.LockError, match=r"not in the lock moto=="):
        lock.installed(without)
