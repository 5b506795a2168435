"""Duplicate object keys: found cheaply, named exactly.

RFC 8259 leaves the meaning of ``{"a":1,"a":2}`` to each parser: orjson and the standard library
keep the last value, others keep the first or refuse. Evidence that two readers can read two
ways is ambiguous, so the archive refuses it (``schemas/RECORD_KINDS.md``, quarantine).

The check costs one serialisation of the parsed tree and a few counts (:func:`duplicate_key`);
only when they disagree is the text parsed again, slowly, to name the key.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["duplicate_key", "skeleton"]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def skeleton(text: bytes) -> bytes:
    """Valid JSON text with every string emptied: what replacing each string token by ``""`` gives.

    Backslashes occur only inside strings. Dropping escaped backslashes and then escaped quotes
    (left to right, as JSON pairs them) leaves every remaining quote a string delimiter, so the
    even-numbered pieces between quotes are exactly the text outside strings. The emptied strings
    stay, so that ``[""]`` still shows a non-empty array.
    """
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b'""'.join(text.split(b'"')[::2])


def duplicate_key(text: bytes, tree: Any, text_skeleton: bytes | None = None) -> str | None:
    """The path of the first duplicated key in ``text`` (which parsed to ``tree``), or None.

    The path is quoted, such as ``"entry[0].changes[0].value.messages[0].text.body"``; a key that
    is not a plain name appears as a JSON string in brackets, cut to 32 characters.
    ``text_skeleton`` is :func:`skeleton` of ``text`` when the caller has it already.

    How it stays cheap: re-serialised with orjson's two-space indent, every member and array
    element of the tree starts a line, and every non-empty object or array ends on a line of its
    own (strings hold no raw newline). The source text gives the same two counts from its
    skeleton: items = commas + non-empty containers. A duplicate drops at least one member from
    the tree and never empties a container, so the line counts differ exactly when one exists.
    """
    if text_skeleton is None:
        text_skeleton = skeleton(text)
    compact = text_skeleton.translate(None, b" \t\r\n")
    empty = compact.count(b"{}") + compact.count(b"[]")
    containers = compact.count(b"{") + compact.count(b"[") - empty
    expected_lines = compact.count(b",") + 2 * containers
    if orjson.dumps(tree, option=orjson.OPT_INDENT_2).count(b"\n") == expected_lines:
        return None
    return _find_duplicate(text)


class _Members(dict[str, Any]):
    """A parsed object that remembers the first key it saw twice."""

    __slots__ = ("duplicate",)
    duplicate: str | None


def _members(pairs: list[tuple[str, Any]]) -> _Members:
    found = _Members()
    found.duplicate = None
    for key, value in pairs:
        if key in found and found.duplicate is None:
            found.duplicate = key
        found[key] = value
    return found


def _find_duplicate(text: bytes) -> str | None:
    tree = json.loads(text, object_pairs_hook=_members)
    path = _walk(tree, "")
    return None if path is None else f'"{path}"'


def _walk(node: Any, path: str) -> str | None:
    if isinstance(node, _Members):
        if node.duplicate is not None:
            return _join(path, node.duplicate)
        for key, value in node.items():
            found = _walk(value, _join(path, key))
            if found is not None:
                return found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _walk(value, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _join(path: str, key: str) -> str:
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    # A key that is not a plain name is shown escaped and cut short: it may be content.
    return f"{path}[{json.dumps(key[:32] + ('…' if len(key) > 32 else ''))}]"
