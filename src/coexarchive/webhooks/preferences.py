"""``field: "user_preferences"``: marketing stop and resume (consent evidence)."""

from __future__ import annotations

from coexarchive.webhooks._base import IdText, Timestamp, WebhookModel
from coexarchive.webhooks.envelope import Contact, Metadata


class UserPreference(WebhookModel):
    """One preference change; ``value`` is ``stop`` or ``resume`` (``signup`` per one library)."""

    wa_id: IdText | None = None
    user_id: IdText | None = None
    parent_user_id: IdText | None = None
    detail: str | None = None
    category: str | None = None  # "marketing_messages"
    value: str
    timestamp: Timestamp | None = None  # an integer here, unlike message timestamps
    signup_id: IdText | None = None


class UserPreferencesValue(WebhookModel):
    """``value`` of ``field: "user_preferences"``."""

    messaging_product: str | None = None
    metadata: Metadata
    contacts: list[Contact] | None = None
    user_preferences: list[UserPreference] | None = None
