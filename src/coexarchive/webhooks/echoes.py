"""``field: "smb_message_echoes"``: messages the business sent from the WhatsApp Business app."""

from __future__ import annotations

from pydantic import Field

from coexarchive.webhooks._base import IdText, WebhookModel
from coexarchive.webhooks.envelope import Contact, Metadata
from coexarchive.webhooks.messages import MessageContent


class MessageEcho(MessageContent):
    """An app-sent message. ``to`` may carry a leading ``+`` and is absent for BSUID-only users.

    ``id`` is required by the normaliser except on edits and revokes.
    """

    id: IdText | None = None
    from_: IdText | None = Field(default=None, alias="from")
    to: IdText | None = None
    to_user_id: IdText | None = None
    to_parent_user_id: IdText | None = None


class EchoesValue(WebhookModel):
    """``value`` of ``field: "smb_message_echoes"``."""

    messaging_product: str | None = None
    metadata: Metadata
    contacts: list[Contact] | None = None
    message_echoes: list[MessageEcho] | None = None
