"""The error tree: one root, one module, and expected failures that read as one line."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import coexarchive
from coexarchive import errors
from coexarchive.cli import main

SRC = Path(coexarchive.__file__).parent


def exception_classes_outside_errors_py() -> list[str]:
    """Public classes deriving from an *Error/*Exception name, defined outside errors.py."""
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = [ast.unparse(base) for base in node.bases]
            if any(base.endswith(("Error", "Exception")) for base in bases):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    return found


def test_every_public_exception_class_is_defined_in_errors_py() -> None:
    assert exception_classes_outside_errors_py() == []


def test_every_class_in_errors_py_is_under_the_root_and_in_the_docstring_tree() -> None:
    doc = errors.__doc__ or ""
    for name, value in inspect.getmembers(errors, inspect.isclass):
        if value.__module__ != errors.__name__ or not issubclass(value, BaseException):
            continue
        assert issubclass(value, errors.CoexArchiveError), name
        assert name in doc, f"{name} is missing from the tree in errors.py's docstring"


def test_a_value_error_kept_for_callers_is_still_a_tree_error() -> None:
    from coexarchive.raw import landing_key
    from coexarchive.store.layout import check_chain_id

    with pytest.raises(errors.InvalidArgumentError) as info:
        landing_key("Bad Id", 0, 0)
    assert isinstance(info.value, ValueError)
    with pytest.raises(errors.ConfigError):
        check_chain_id("../etc")


def test_a_bad_chain_id_on_the_command_line_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COEXARCHIVE_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["head", "--chain", "../etc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coexarchive: error: invalid chain id '../etc'")
    assert err.count("\n") == 1 and "Traceback" not in err
