"""Shared pieces of the webhook models: the permissive base class and lenient scalar types."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Identifiers feed record ids, columns and object keys; nothing Meta sends comes near this.
MAX_ID_LENGTH = 512


class WebhookModel(BaseModel):
    """Base of every payload model: frozen, and keeps fields it does not know."""

    model_config = ConfigDict(extra="allow", frozen=True)


class NumberText(str):
    """A JSON number with a fraction or exponent, kept as its exact source text."""

    __slots__ = ()


def _number_to_text(value: Any) -> Any:
    # Meta sends identifiers as strings; a bare JSON integer carries the same digits.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, NumberText | float):
        raise ValueError("a fractional number is not an identifier")
    return value


def _decimal_to_text(value: Any) -> Any:
    # Sealed data holds no floats. Bodies with fractional numbers are parsed so that the number
    # arrives here as its exact source text; a float only reaches us from direct model use.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return value


IdText = Annotated[str, BeforeValidator(_number_to_text), Field(max_length=MAX_ID_LENGTH)]
"""An identifier: a string, or an integer taken as its decimal digits."""

DecimalText = Annotated[str, BeforeValidator(_decimal_to_text)]
"""A JSON number kept as its decimal text (never a float)."""

Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""An integer that fits a 64-bit column (error codes): a larger one is refused, never cut."""

Timestamp = str | int
"""Unix seconds as Meta sends them: a string on message fields, an integer on management fields."""

IntLike = int | str
"""An integer that some senders quote (history ``phase``, ``chunk_order``, ``progress``)."""
