"""``field: "messages"``: inbound messages of every catalogued type, and their value."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from coexarchive.webhooks._base import DecimalText, IdText, Timestamp, WebhookModel
from coexarchive.webhooks.envelope import Contact, Metadata, WebhookError
from coexarchive.webhooks.statuses import Status


class MessageType(StrEnum):
    """Known values of ``messages[].type`` (open: unknown types are archived as unsupported)."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    REACTION = "reaction"
    ORDER = "order"
    SYSTEM = "system"
    EDIT = "edit"
    REVOKE = "revoke"
    REQUEST_WELCOME = "request_welcome"
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"  # older name for unsupported
    MEDIA_PLACEHOLDER = "media_placeholder"  # history only: media older than 14 days


MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})


class Text(WebhookModel):
    body: str | None = None


class Media(WebhookModel):
    """An image, video, audio, document or sticker; in echoes every key may be missing."""

    id: IdText | None = None
    mime_type: str | None = None
    sha256: str | None = None  # base64 or hex depending on the source: kept opaque
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool | None = None  # audio: a voice note
    animated: bool | None = None  # sticker


class Location(WebhookModel):
    latitude: DecimalText | None = None
    longitude: DecimalText | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ContactName(WebhookModel):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class ContactPhone(WebhookModel):
    phone: str | None = None
    wa_id: IdText | None = None
    type: str | None = None


class ContactCard(WebhookModel):
    """A vCard-like contact shared in a ``contacts`` message."""

    name: ContactName | None = None
    phones: list[ContactPhone] | None = None
    emails: list[dict[str, Any]] | None = None
    addresses: list[dict[str, Any]] | None = None
    org: dict[str, Any] | None = None
    urls: list[dict[str, Any]] | None = None
    birthday: str | None = None
    vcard: str | None = None


class ButtonReply(WebhookModel):
    id: str | None = None
    title: str | None = None


class ListReply(WebhookModel):
    id: str | None = None
    title: str | None = None
    description: str | None = None


class NfmReply(WebhookModel):
    """A WhatsApp Flow completion; ``response_json`` is a JSON document as a string."""

    name: str | None = None
    body: str | None = None
    response_json: str | None = None


class Interactive(WebhookModel):
    type: str | None = None  # button_reply, list_reply, nfm_reply, call_permission_reply, ...
    button_reply: ButtonReply | None = None
    list_reply: ListReply | None = None
    nfm_reply: NfmReply | None = None


class Button(WebhookModel):
    """A template quick-reply tap."""

    payload: str | None = None
    text: str | None = None


class Reaction(WebhookModel):
    """A reaction; removing one arrives with an empty or missing ``emoji``."""

    message_id: IdText | None = None
    emoji: str | None = None


class ProductItem(WebhookModel):
    product_retailer_id: str | None = None
    quantity: int | str | None = None
    item_price: DecimalText | None = None
    currency: str | None = None


class Order(WebhookModel):
    catalog_id: IdText | None = None
    text: str | None = None
    product_items: list[ProductItem] | None = None


class System(WebhookModel):
    body: str | None = None
    type: str | None = None  # user_changed_number, customer_identity_changed, user_changed_user_id
    wa_id: IdText | None = None
    user_id: IdText | None = None
    parent_user_id: IdText | None = None


class Identity(WebhookModel):
    acknowledged: bool | str | None = None
    created_timestamp: Timestamp | None = None
    hash: str | None = None


class EditedMessage(WebhookModel):
    """The new content of an edited message: ``type`` plus a property named after it."""

    type: str | None = None
    text: Text | None = None
    image: Media | None = None
    video: Media | None = None
    document: Media | None = None
    context: Context | None = None


class Edit(WebhookModel):
    original_message_id: IdText | None = None
    message: EditedMessage | None = None


class Revoke(WebhookModel):
    original_message_id: IdText | None = None


class Unsupported(WebhookModel):
    type: str | None = None  # the original type, e.g. poll_creation, gif


class ReferredProduct(WebhookModel):
    catalog_id: IdText | None = None
    product_retailer_id: str | None = None


class Context(WebhookModel):
    """Reply, forward or product-enquiry context."""

    from_: IdText | None = Field(default=None, alias="from")
    id: IdText | None = None
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None
    referred_product: ReferredProduct | None = None


class WelcomeMessage(WebhookModel):
    text: str | None = None


class Referral(WebhookModel):
    """Click-to-WhatsApp ad or post that started the conversation."""

    source_url: str | None = None
    source_id: IdText | None = None
    source_type: str | None = None  # ad, post
    body: str | None = None
    headline: str | None = None
    media_type: str | None = None  # image, video
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None  # omitted for Status ad placements
    welcome_message: WelcomeMessage | None = None


class MessageContent(WebhookModel):
    """The type-named content properties shared by inbound messages, echoes and history."""

    type: str = Field(max_length=128)
    timestamp: Timestamp | None = None
    context: Context | None = None
    referral: Referral | None = None
    errors: list[WebhookError] | None = None
    text: Text | None = None
    image: Media | None = None
    video: Media | None = None
    audio: Media | None = None
    document: Media | None = None
    sticker: Media | None = None
    location: Location | None = None
    contacts: list[ContactCard] | None = None
    interactive: Interactive | None = None
    button: Button | None = None
    reaction: Reaction | None = None
    order: Order | None = None
    system: System | None = None
    identity: Identity | None = None
    edit: Edit | None = None
    revoke: Revoke | None = None
    unsupported: Unsupported | None = None


class Message(MessageContent):
    """An inbound message; ``from`` is absent for BSUID-only users (``from_user_id`` is not)."""

    id: IdText | None = None  # required by the normaliser except on edits and revokes
    from_: IdText | None = Field(default=None, alias="from")
    from_user_id: IdText | None = None
    from_parent_user_id: IdText | None = None
    group_id: IdText | None = None


class MessagesValue(WebhookModel):
    """``value`` of ``field: "messages"``: messages, statuses and value-level errors, in any mix."""

    messaging_product: str | None = None
    metadata: Metadata
    contacts: list[Contact] | None = None
    messages: list[Message] | None = None
    statuses: list[Status] | None = None
    errors: list[WebhookError] | None = None


EditedMessage.model_rebuild()
