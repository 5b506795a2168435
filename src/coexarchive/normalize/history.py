"""The ``history`` field: onboarding chunks, their threads, errors and progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from coexarchive.normalize._base import (
    _Change,
    _digest,
    _each,
    _id_text,
    _not_a,
    _phone,
    _Rejected,
    _Sink,
    _validation_reason,
)
from coexarchive.normalize.messages import _message_like
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.webhooks.envelope import WebhookError
from coexarchive.webhooks.history import (
    HISTORY_DECLINED_CODE,
    ChunkMetadata,
    HistoryMessage,
    ThreadContext,
)


def _history_chunk(sink: _Sink, change: _Change, raw: dict[str, Any], path: str) -> None:
    try:
        chunk = ChunkMetadata.model_validate(raw.get("metadata") or {})
    except ValidationError as exc:
        raise _Rejected("metadata: " + _validation_reason(exc)) from None
    chunk_detail = {
        "phase": chunk.phase,
        "chunk_order": chunk.chunk_order,
        "progress": chunk.progress,
    }
    threads = raw.get("threads")
    if threads is not None and not isinstance(threads, list):
        raise _Rejected(_not_a("threads", threads, "an array"))
    found = False
    if "errors" in raw:
        found = True
        _each(sink, raw["errors"], f"{path}.errors", _history_error(change))
    if threads is not None:
        for index, thread in enumerate(threads):
            thread_path = f"{path}.threads[{index}]"
            try:
                found = _thread(sink, change, thread, thread_path, chunk_detail) or found
            except _Rejected as rejected:
                sink.reject(rejected.reason, thread_path, thread)
    if not found:
        sink.records.append(_history_progress(change, raw, path, chunk_detail))


def _thread(sink: _Sink, change: _Change, thread: Any, path: str, chunk: dict[str, Any]) -> bool:
    if type(thread) is not dict:
        raise _Rejected(_not_a("thread", thread, "an object"))
    thread_id = _phone(_id_text(thread.get("id"), "thread.id"))
    try:
        context = ThreadContext.model_validate(thread.get("context") or {})
    except ValidationError as exc:
        raise _Rejected("context: " + _validation_reason(exc)) from None
    messages = thread.get("messages")
    if messages is None:
        return False
    history = {**chunk, "thread_id": thread_id, "thread_context": thread.get("context")}
    customer_wa = thread_id or _phone(context.wa_id)
    business = _phone(change.business_phone)

    def handle(raw: dict[str, Any], item_path: str) -> Record:
        msg = HistoryMessage.model_validate(raw)
        history_context = msg.history_context
        from_me = history_context.from_me if history_context is not None else None
        sender = _phone(msg.from_)
        outbound = bool(from_me) or (sender is not None and sender == business)
        if from_me is None and not outbound and msg.to is not None and sender != customer_wa:
            outbound = True
        status = history_context.status if history_context is not None else None
        if outbound:
            wa_id = _phone(msg.to) or customer_wa
            user_id = _text_extra(msg, "to_user_id") or context.user_id
        else:
            wa_id = sender or customer_wa
            user_id = msg.from_user_id or context.user_id
        return _message_like(
            change,
            msg,
            raw,
            item_path,
            wamid=msg.id,
            default_kind=Kind.HISTORY_MESSAGE,
            origin=Origin.HISTORY_IMPORT,
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            wa_id=wa_id,
            user_id=user_id,
            extra={"history": history},
            status=status.lower() if status is not None else None,
        )

    _each(sink, messages, f"{path}.messages", handle)
    return True


def _text_extra(model: BaseModel, key: str) -> str | None:
    extra = model.model_extra or {}
    found = extra.get(key)
    return found if type(found) is str else None


def _history_error(change: _Change) -> Callable[[Any, str], Record]:
    def handle(raw: dict[str, Any], path: str) -> Record:
        error = WebhookError.model_validate(raw)
        declined = error.code == HISTORY_DECLINED_CODE
        return change.system_record(
            record_id=stable_id("history_error", change.chain_id, error.code, _digest(raw)),
            path=path,
            raw=raw,
            msg_type="history_declined" if declined else "history_error",
            status="declined" if declined else "error",
            error_code=error.code,
        )

    return handle


def _history_progress(
    change: _Change, raw: dict[str, Any], path: str, chunk: dict[str, Any]
) -> Record:
    """A chunk with no messages and no errors still says how far the import has got."""
    progress = chunk["progress"]
    return change.system_record(
        record_id=stable_id("history_chunk", change.chain_id, _digest(raw)),
        path=path,
        raw=raw,
        extra={"history": chunk},
        msg_type="history_progress",
        status=None if progress is None else str(progress),
    )


def _history_chunks(change: _Change) -> Callable[[Any, str], Record | None]:
    def handle(raw: dict[str, Any], path: str) -> None:
        _history_chunk(change.sink, change, raw, path)

    return handle
