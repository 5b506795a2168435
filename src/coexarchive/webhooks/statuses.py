"""``statuses[]`` in ``field: "messages"``: delivery of business messages sent via the API."""

from __future__ import annotations

from enum import StrEnum

from coexarchive.webhooks._base import IdText, Timestamp, WebhookModel
from coexarchive.webhooks.envelope import WebhookError


class StatusValue(StrEnum):
    """Known delivery statuses (open: unknown values are kept as sent)."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"


class ConversationOrigin(WebhookModel):
    type: str | None = None  # marketing, utility, service, authentication, ...


class Conversation(WebhookModel):
    """Conversation of a status; omitted from Graph v24 outside free-entry-point windows."""

    id: str | None = None
    expiration_timestamp: Timestamp | None = None  # on ``sent`` only
    origin: ConversationOrigin | None = None


class Pricing(WebhookModel):
    """Pricing of a status; sent with ``sent`` and with one of ``delivered`` or ``read``."""

    billable: bool | None = None  # deprecated by Meta
    pricing_model: str | None = None  # CBP (before 2025-07-01) or PMP
    type: str | None = None  # regular, free_customer_service, free_entry_point
    category: str | None = None  # both authentication-international spellings occur


class Status(WebhookModel):
    """A status of one business-sent message; ``recipient_id`` is absent for BSUID-only users."""

    id: IdText
    status: str
    timestamp: Timestamp | None = None
    recipient_id: IdText | None = None
    recipient_user_id: IdText | None = None
    parent_recipient_user_id: IdText | None = None
    parent_user_id: IdText | None = None  # the prose spelling of parent_recipient_user_id
    recipient_type: str | None = None  # "group" for group messages
    recipient_participant_id: IdText | None = None
    recipient_identity_key_hash: str | None = None
    biz_opaque_callback_data: str | None = None
    conversation: Conversation | None = None
    pricing: Pricing | None = None
    errors: list[WebhookError] | None = None
