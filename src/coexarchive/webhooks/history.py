"""``field: "history"``: the one-shot history import, its media follow-ups and its decline."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from coexarchive.webhooks._base import IdText, IntLike, WebhookModel
from coexarchive.webhooks.echoes import MessageEcho
from coexarchive.webhooks.envelope import Metadata, WebhookError
from coexarchive.webhooks.messages import Message, MessageContent

HISTORY_DECLINED_CODE = 2593109


class HistoryStatus(StrEnum):
    """Known ``history_context.status`` values; Meta sends upper case, some BSPs lower case."""

    DELIVERED = "delivered"
    ERROR = "error"
    PENDING = "pending"
    PLAYED = "played"
    READ = "read"
    SENT = "sent"


class HistoryContext(WebhookModel):
    status: str | None = None
    from_me: bool | None = None  # seen in a BSP sample on business-sent messages


class HistoryMessage(MessageContent):
    """A message of a history thread; ``to`` is present only on business-sent messages."""

    id: IdText
    from_: IdText | None = Field(default=None, alias="from")
    from_user_id: IdText | None = None
    from_parent_user_id: IdText | None = None
    to: IdText | None = None
    history_context: HistoryContext | None = None


class ThreadContext(WebhookModel):
    wa_id: IdText | None = None
    user_id: IdText | None = None
    parent_user_id: IdText | None = None
    username: str | None = None


class HistoryThread(WebhookModel):
    """One 1:1 chat; ``id`` (the user's number) is absent for BSUID-only users."""

    id: IdText | None = None
    context: ThreadContext | None = None
    messages: list[HistoryMessage] = Field(default_factory=list)


class ChunkMetadata(WebhookModel):
    """Phase 0 (day 0–1), 1 (day 1–90) or 2 (day 90–180); chunks arrive in any order."""

    phase: IntLike | None = None
    chunk_order: IntLike | None = None
    progress: IntLike | None = None  # 0–100; 100 means the sync is complete


class HistoryChunk(WebhookModel):
    """A chunk of threads, or an ``errors`` list (code 2593109: the business declined)."""

    metadata: ChunkMetadata | None = None
    threads: list[HistoryThread] | None = None
    errors: list[WebhookError] | None = None


class HistoryValue(WebhookModel):
    """``value`` of ``field: "history"``: chunks, or media follow-ups (``messages``, echoes)."""

    messaging_product: str | None = None
    metadata: Metadata
    history: list[HistoryChunk] | None = None
    messages: list[Message] | None = None
    message_echoes: list[MessageEcho] | None = None
