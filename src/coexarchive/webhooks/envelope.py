"""The envelope every webhook shares: ``object`` → ``entry[]`` → ``changes[]`` → ``value``."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from coexarchive.webhooks._base import IdText, Int64, WebhookModel

WHATSAPP_OBJECT = "whatsapp_business_account"


class WebhookField(StrEnum):
    """Known values of ``changes[].field`` (open: unknown fields are archived as unsupported)."""

    MESSAGES = "messages"
    SMB_MESSAGE_ECHOES = "smb_message_echoes"
    HISTORY = "history"
    SMB_APP_STATE_SYNC = "smb_app_state_sync"
    MESSAGE_TEMPLATE_STATUS_UPDATE = "message_template_status_update"
    MESSAGE_TEMPLATE_QUALITY_UPDATE = "message_template_quality_update"
    TEMPLATE_CATEGORY_UPDATE = "template_category_update"
    ACCOUNT_UPDATE = "account_update"
    USER_PREFERENCES = "user_preferences"
    PHONE_NUMBER_QUALITY_UPDATE = "phone_number_quality_update"


class Metadata(WebhookModel):
    """The business number a message-type field is about."""

    display_phone_number: IdText | None = None
    phone_number_id: IdText


class Profile(WebhookModel):
    name: str | None = None
    username: str | None = None


class Contact(WebhookModel):
    """A user in ``value.contacts[]``; ``wa_id`` may be absent for BSUID-only users."""

    profile: Profile | None = None
    wa_id: IdText | None = None
    user_id: IdText | None = None
    parent_user_id: IdText | None = None
    identity_key_hash: str | None = None


class ErrorData(WebhookModel):
    details: str | None = None


class WebhookError(WebhookModel):
    """An error object (on a message, a status, a value or a history chunk)."""

    code: Int64 | None = None
    title: str | None = None
    message: str | None = None
    error_data: ErrorData | None = None
    href: str | None = None


class Change(WebhookModel):
    """One change; ``value`` is validated against the model its ``field`` names."""

    field: str
    value: dict[str, Any]


class Entry(WebhookModel):
    """One WABA's changes. ``time`` (unix seconds) is present on management fields only."""

    id: IdText
    time: int | None = None
    changes: list[Change] = Field(default_factory=list)


class Envelope(WebhookModel):
    """A whole delivery body."""

    object: str
    entry: list[Entry]
