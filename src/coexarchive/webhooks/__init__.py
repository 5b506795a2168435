"""Pydantic models of Meta's WhatsApp webhook payloads, one module per field family.

The models are permissive where Meta is: unknown keys are kept (``extra="allow"``), every
documented optional key is optional, enumerations are open strings (the ``StrEnum`` classes list
the known values), and timestamps are accepted as strings or integers. They are frozen.
"""

from coexarchive.webhooks.account import AccountEvent, AccountUpdate, DisconnectionInfo
from coexarchive.webhooks.echoes import EchoesValue, MessageEcho
from coexarchive.webhooks.envelope import (
    WHATSAPP_OBJECT,
    Change,
    Contact,
    Entry,
    Envelope,
    Metadata,
    WebhookError,
    WebhookField,
)
from coexarchive.webhooks.history import (
    HISTORY_DECLINED_CODE,
    ChunkMetadata,
    HistoryChunk,
    HistoryMessage,
    HistoryStatus,
    HistoryThread,
    HistoryValue,
)
from coexarchive.webhooks.messages import (
    MEDIA_TYPES,
    Context,
    Media,
    Message,
    MessageContent,
    MessagesValue,
    MessageType,
    Referral,
)
from coexarchive.webhooks.preferences import UserPreference, UserPreferencesValue
from coexarchive.webhooks.quality import PhoneNumberQualityUpdate
from coexarchive.webhooks.state_sync import StateSyncItem, StateSyncValue, SyncedContact
from coexarchive.webhooks.statuses import Pricing, Status, StatusValue
from coexarchive.webhooks.templates import (
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
)

__all__ = [
    "HISTORY_DECLINED_CODE",
    "MEDIA_TYPES",
    "WHATSAPP_OBJECT",
    "AccountEvent",
    "AccountUpdate",
    "Change",
    "ChunkMetadata",
    "Contact",
    "Context",
    "DisconnectionInfo",
    "EchoesValue",
    "Entry",
    "Envelope",
    "HistoryChunk",
    "HistoryMessage",
    "HistoryStatus",
    "HistoryThread",
    "HistoryValue",
    "Media",
    "Message",
    "MessageContent",
    "MessageEcho",
    "MessageType",
    "MessagesValue",
    "Metadata",
    "PhoneNumberQualityUpdate",
    "Pricing",
    "Referral",
    "StateSyncItem",
    "StateSyncValue",
    "Status",
    "StatusValue",
    "SyncedContact",
    "TemplateCategoryUpdate",
    "TemplateQualityUpdate",
    "TemplateStatusUpdate",
    "UserPreference",
    "UserPreferencesValue",
    "WebhookError",
    "WebhookField",
]
