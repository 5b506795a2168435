"""One way to read a customer identifier, for every command that takes one.

Meta identifies a WhatsApp user by a phone number (``wa_id``: digits in international form, no
``+``) or, for users who hide their number, by a business-scoped user id (BSUID, ``CC.xxxx``).
People type numbers as ``+65 9170 3423``, ``0065-9170-3423`` or ``(65) 91703423``; sealed records
store ``6591703423``. :func:`normalize_customer` turns what a person typed into the form records
store, so a hold, a consent import and a query about the same person all match the same rows;
anything that is neither a phone number nor a BSUID is refused rather than matched against
nothing.
"""

from __future__ import annotations

import re
from typing import Final

from coexarchive.errors import InvalidArgumentError

__all__ = ["is_bsuid", "normalize_customer"]

# E.164: at most 15 digits, no leading zero; WhatsApp numbers have at least 7.
_WA_ID: Final = re.compile(r"^[1-9][0-9]{6,14}$")
_BSUID: Final = re.compile(r"^[A-Z]{2}(\.[A-Za-z0-9]{1,128}){1,2}$")
# What people put inside a phone number: spaces (also no-break and thin), dots, dashes, brackets.
_PHONE_PUNCTUATION: Final = re.compile(r"[\s\u00a0\u2009\u202f.\-()]")
_PHONE_TYPED: Final = re.compile(r"^(\+|00)?[0-9\s\u00a0\u2009\u202f.\-()]+$")


def normalize_customer(value: str) -> str:
    """The identifier as sealed records store it: a ``wa_id`` of digits, or a BSUID as given.

    Raises :class:`InvalidArgumentError` for anything that is neither.
    """
    text = value.strip()
    if _BSUID.fullmatch(text):
        return text
    if _PHONE_TYPED.fullmatch(text):
        digits = _PHONE_PUNCTUATION.sub("", text)
        digits = digits.removeprefix("+")
        if digits.startswith("00"):
            digits = digits[2:]
        if _WA_ID.fullmatch(digits):
            return digits
    raise InvalidArgumentError(
        f"customer {value!r} is neither a phone number in international form (e.g. "
        "+65 9170 3423, stored as 6591703423) nor a business-scoped user id (e.g. US.13491208)"
    )


def is_bsuid(customer: str) -> bool:
    """Whether a normalised identifier is a BSUID (else it is a ``wa_id``)."""
    return _BSUID.fullmatch(customer) is not None
