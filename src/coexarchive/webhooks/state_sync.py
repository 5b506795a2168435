"""``field: "smb_app_state_sync"``: the business's WhatsApp Business app contact book."""

from __future__ import annotations

from coexarchive.webhooks._base import IdText, Timestamp, WebhookModel
from coexarchive.webhooks.envelope import Metadata


class SyncedContact(WebhookModel):
    """A contact; names are omitted on ``remove``, ``phone_number`` for BSUID-only users."""

    full_name: str | None = None
    first_name: str | None = None
    phone_number: IdText | None = None
    user_id: IdText | None = None
    parent_user_id: IdText | None = None
    username: str | None = None


class StateSyncMetadata(WebhookModel):
    timestamp: Timestamp | None = None


class StateSyncItem(WebhookModel):
    """One contact change; ``action`` is ``add`` (add or edit) or ``remove``."""

    type: str | None = None  # "contact"
    contact: SyncedContact | None = None
    action: str | None = None
    metadata: StateSyncMetadata | None = None


class StateSyncValue(WebhookModel):
    """``value`` of ``field: "smb_app_state_sync"``."""

    messaging_product: str | None = None
    metadata: Metadata
    state_sync: list[StateSyncItem] | None = None
