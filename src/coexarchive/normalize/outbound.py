"""Outbound capture: a Cloud API send as the sending system posted it (RAW_LANDING.md §4)."""

from __future__ import annotations

from typing import Any

import orjson

from coexarchive.normalize._base import (
    _CHAIN_ID,
    _VALUES,
    DETAIL_VERSION,
    _id_text,
    _phone,
    _Rejected,
    _Sink,
    message_record_id,
)
from coexarchive.records import Direction, Kind, Origin, Record


def _outbound(tree: dict[str, Any], sink: _Sink) -> Record:
    """A captured Cloud API send: the request as posted and Meta's answer with the wamid."""
    chain_id = _id_text(tree.get("phone_number_id"), "phone_number_id")
    if chain_id is None or not _CHAIN_ID.fullmatch(chain_id):
        raise _Rejected("phone_number_id missing or not a valid chain id")
    request, response = tree.get("request"), tree.get("response")
    if type(request) is not dict or type(response) is not dict:
        raise _Rejected("capture needs a request object and a response object")
    messages = response.get("messages")
    if type(messages) is not list or not messages or type(messages[0]) is not dict:
        raise _Rejected("response.messages[0] missing: the send has no wamid")
    wamid = _id_text(messages[0].get("id"), "response.messages[0].id")
    if wamid is None:
        raise _Rejected("response.messages[0].id missing")
    msg_type = request.get("type") if type(request.get("type")) is str else "text"
    content = _object(request.get(msg_type))
    found = request.get("template") if msg_type == "template" else None
    template: dict[str, Any] = found if type(found) is dict else {}
    language = template.get("language")
    context = _object(request.get("context"))
    to = request.get("to") if type(request.get("to")) is str else None
    contacts = response.get("contacts")
    answered = (
        contacts[0] if type(contacts) is list and contacts and type(contacts[0]) is dict else {}
    )
    wa_id = _phone(answered.get("wa_id") if type(answered.get("wa_id")) is str else to)
    user_id = request.get("recipient") if type(request.get("recipient")) is str else None
    sent_at = tree.get("sent_at")
    event_time = sent_at if type(sent_at) is int and sent_at > 0 else sink.received_time
    text = content.get("body") if msg_type == "text" else content.get("caption")
    detail = {
        "v": DETAIL_VERSION,
        "field": "outbound_capture",
        "path": "$",
        "time_source": "sent_at" if event_time == sent_at else "received",
        "raw": tree,
        **sink.auth,
    }
    return Record(
        chain_id=chain_id,
        record_id=message_record_id(chain_id, wamid),
        kind=_VALUES[Kind.OUTBOUND],
        origin=_VALUES[Origin.CLOUD_API],
        direction=_VALUES[Direction.OUTBOUND],
        event_time=event_time,
        received_time=sink.received_time,
        customer_id=wa_id if wa_id is not None else user_id,
        customer_wa_id=wa_id,
        customer_user_id=user_id,
        wamid=wamid,
        msg_type=msg_type,
        text=text if type(text) is str else None,
        media_id=content.get("id") if type(content.get("id")) is str else None,
        template_name=template.get("name") if type(template.get("name")) is str else None,
        template_language=(
            language.get("code")
            if type(language) is dict and type(language.get("code")) is str
            else None
        ),
        context_wamid=(
            context.get("message_id") if type(context.get("message_id")) is str else None
        ),
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
        raw_key=sink.raw_key,
        raw_line=sink.raw_line,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}
