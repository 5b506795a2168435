"""What a template send showed the customer: the registry's text as of the send, filled in.

A Cloud API send of a template carries only its name, language and parameters; its text lives in
the template registry, which holds it only from an imported catalogue (``coexarchive templates
import``: a Graph API template list, whose entries carry ``components``). The version shown is
the catalogue record in force at the send: the newest entry for that name and language whose
as-of time is not after the send, named by its as-of time, its template id and its leaf
(chain, seq). When the registry has no text as of the send, the rendering says so, and lists the
parameters sent.

The result is plain text: callers escape it for HTML; RSMF carries it as a JSON string.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from coexarchive.enrich.templates import CATALOGUE_TYPE, language_key
from coexarchive.export._rows import Row, detail_of

__all__ = ["TemplateBodies", "render_send"]

_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z0-9_]{1,64})\s*\}\}")
_MAX_TEXT: Final = 4096  # a field or parameter longer than Meta allows is cut, visibly


@dataclass(frozen=True)
class _Version:
    event_time: int
    seq: int
    chain_id: str
    template_id: str | None
    components: tuple[Mapping[str, Any], ...]


class TemplateBodies:
    """The catalogue entries among a bundle's rows, per template name and language."""

    def __init__(self, rows: Sequence[Row]) -> None:
        found: dict[tuple[str, str], list[_Version]] = {}
        for row in rows:
            if row["kind"] != "template_event" or row["msg_type"] != CATALOGUE_TYPE:
                continue
            detail = detail_of(row)
            raw = detail.get("raw")
            components = raw.get("components") if isinstance(raw, dict) else None
            if not isinstance(components, list):
                continue
            key = (str(row["template_name"]), language_key(row["template_language"]))
            template_id = detail.get("template_id")
            found.setdefault(key, []).append(
                _Version(
                    row["event_time"],
                    row["seq"],
                    row["chain_id"],
                    None if template_id is None else str(template_id),
                    tuple(c for c in components if isinstance(c, dict)),
                )
            )
        self._versions = {
            key: sorted(versions, key=lambda v: (v.event_time, v.chain_id, v.seq))
            for key, versions in found.items()
        }
        self._times = {key: [v.event_time for v in found] for key, found in self._versions.items()}

    def at(self, name: str | None, language: str | None, at: int) -> _Version | None:
        key = (name or "", language_key(language))
        times = self._times.get(key)
        if not times:
            return None
        end = bisect.bisect_right(times, at)
        return self._versions[key][end - 1] if end else None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + " […cut]"


def _parameter(parameter: Any) -> str:
    """A sent parameter as the customer saw it (text, or a currency or date's fallback)."""
    if not isinstance(parameter, dict):
        return _text(parameter)
    kind = parameter.get("type")
    if kind == "text":
        return _text(parameter.get("text"))
    value = parameter.get(kind) if isinstance(kind, str) else None
    if isinstance(value, dict):
        if "fallback_value" in value:
            return _text(value["fallback_value"])
        for name in ("link", "filename", "id"):
            if isinstance(value.get(name), str):
                return f"[{kind}: {_text(value[name])}]"
    return f"[{_text(kind) or 'parameter'}]"


def _sent(row: Row) -> dict[str, Any]:
    """The ``template`` object of the send request, as captured."""
    raw = detail_of(row).get("raw")
    request = raw.get("request") if isinstance(raw, dict) else None
    template = request.get("template") if isinstance(request, dict) else None
    return template if isinstance(template, dict) else {}


def _values(sent: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Parameters per component (``body``, ``header``, ``button 0``), by position and name."""
    values: dict[str, dict[str, str]] = {}
    components = sent.get("components")
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).lower()
        if kind == "button":
            kind = f"button {component.get('index', '')}"
        parameters = component.get("parameters")
        into = values.setdefault(kind, {})
        for position, parameter in enumerate(parameters if isinstance(parameters, list) else []):
            shown = _parameter(parameter)
            into[str(position + 1)] = shown
            if isinstance(parameter, dict) and isinstance(parameter.get("parameter_name"), str):
                into[parameter["parameter_name"]] = shown
    return values


def _fill(text: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return values.get(name, f"{{{{{name}: not sent}}}}")

    return _PLACEHOLDER.sub(one, text)


def _buttons(component: Mapping[str, Any], values: Mapping[str, dict[str, str]]) -> list[str]:
    lines = []
    buttons = component.get("buttons")
    for index, button in enumerate(buttons if isinstance(buttons, list) else []):
        if not isinstance(button, dict):
            continue
        kind = _text(button.get("type")).lower().replace("_", " ") or "button"
        label = _text(button.get("text"))
        target = ""
        for name in ("url", "phone_number"):
            if isinstance(button.get(name), str):
                target = " → " + _fill(_text(button[name]), values.get(f"button {index}", {}))
        lines.append(f"  [{kind}] {label}{target}")
    return lines


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def render_send(row: Row, bodies: TemplateBodies) -> str:
    """The template send as text: name, version, the filled-in text and the buttons."""
    name, language = row["template_name"], row["template_language"]
    sent = _sent(row)
    values = _values(sent)
    category = row["template_category"] or "category unknown"
    facts = f"{category}; {row['template_status'] or 'status unknown'}"
    version = bodies.at(name, language, row["event_time"])
    if version is None:
        lines = [
            f"Template {name} ({language}; {facts}); version unknown: the template registry "
            "holds no text for it as of this send (import the catalogue with `coexarchive "
            "templates import`), so the body the customer saw cannot be shown.",
        ]
        for part, named in sorted(values.items()):
            for key, value in named.items():
                if key.isdigit():
                    lines.append(f"  sent {part} parameter {key}: {value}")
        return "\n".join(lines)
    ident = f"template id {version.template_id}; " if version.template_id else ""
    lines = [
        f"Template {name} ({language}; {facts}); version as of {_iso(version.event_time)} "
        f"({ident}registry record {version.chain_id} #{version.seq}):"
    ]
    for component in version.components:
        kind = _text(component.get("type")).upper()
        if kind == "BUTTONS":
            lines.append("Buttons:")
            lines += _buttons(component, values)
        elif kind in ("HEADER", "BODY", "FOOTER"):
            form = _text(component.get("format")).upper()
            if kind == "HEADER" and form and form != "TEXT":
                media = values.get("header", {}).get("1", "not sent")
                lines.append(f"[header {form.lower()}: {media}]")
                continue
            text = _fill(_text(component.get("text")), values.get(kind.lower(), {}))
            lines.append(text if kind == "BODY" else f"[{kind.lower()}] {text}")
    return "\n".join(lines)
