"""``field: "phone_number_quality_update"``: messaging-limit tier changes of a business number."""

from __future__ import annotations

from coexarchive.webhooks._base import IdText, WebhookModel


class PhoneNumberQualityUpdate(WebhookModel):
    """``value`` of ``phone_number_quality_update`` (no ``metadata``; WABA-routed)."""

    display_phone_number: IdText | None = None
    event: str
    max_daily_conversations_per_business: str | None = None  # TIER_50 … TIER_UNLIMITED
    current_limit: str | None = None  # deprecated
    old_limit: str | None = None  # deprecated
