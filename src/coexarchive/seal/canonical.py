"""Canonical bytes: RFC 8785 (JSON Canonicalization Scheme) of a JSON object without floats.

The fast path serialises with ``orjson`` and is byte-identical to the ``rfc8785`` reference for
every value it accepts (property-tested). Values JCS cannot represent exactly are refused with
:class:`~coexarchive.errors.CanonicalizationError`: floats (decimals travel as strings), integers
outside ±(2**53 - 1), non-string keys, lone surrogates and any type other than ``str``, ``int``,
``bool``, ``None``, ``list``/``tuple`` and ``dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

from coexarchive.errors import CanonicalizationError

__all__ = ["MAX_SAFE_INTEGER", "canonical_bytes", "reference_canonical_bytes"]

MAX_SAFE_INTEGER = 2**53 - 1

_NONE_TYPE = type(None)
_SCALAR_TYPES = frozenset({str, int, bool, _NONE_TYPE})
# OPT_STRICT_INTEGER makes orjson refuse integers outside ±(2**53 - 1), as JCS does.
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_MAX_BMP = "\uffff"


def canonical_bytes(obj: Mapping[str, Any]) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj``."""
    if type(obj) is not dict:
        obj = dict(obj)
    if not _check_object(obj):
        # A key outside the BMP sorts differently by UTF-16 code units (JCS) than by code
        # points (orjson), so such objects take the reference path.
        return reference_canonical_bytes(obj)
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise CanonicalizationError(f"no canonical JSON encoding: {exc}") from None


def reference_canonical_bytes(obj: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes from the ``rfc8785`` reference implementation (slow; for cross-checks)."""
    if type(obj) is not dict:
        obj = dict(obj)
    _check_object(obj)
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:
        raise CanonicalizationError(f"no canonical JSON encoding: {exc}") from None


def _check_object(obj: dict[Any, Any]) -> bool:
    """Refuse values JCS cannot represent; return False if a key needs UTF-16 ordering."""
    sortable = True
    for key in obj:
        if not isinstance(key, str):
            raise CanonicalizationError(f"object key {key!r} is not a string")
        if not key.isascii():
            _check_utf8(key)
            if max(key) > _MAX_BMP:
                sortable = False
    if set(map(type, obj.values())) <= _SCALAR_TYPES:
        return sortable
    for value in obj.values():
        sortable = _check_value(value) and sortable
    return sortable


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalizationError(f"{text!r} holds a lone surrogate, not Unicode text") from None


def _check_value(value: Any) -> bool:
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return True
    if kind is list or kind is tuple:
        if set(map(type, value)) <= _SCALAR_TYPES:
            return True
        sortable = True
        for item in value:
            sortable = _check_value(item) and sortable
        return sortable
    if isinstance(value, dict):
        return _check_object(value)
    if isinstance(value, float):
        raise CanonicalizationError(
            f"float {value!r} has no exact canonical form: encode decimals as strings"
        )
    # str and int subclasses (StrEnum, IntEnum) serialise as their plain value.
    if isinstance(value, str | int):
        return True
    raise CanonicalizationError(f"{kind.__name__} value has no canonical JSON encoding")
