"""Bar charts drawn on the server as SVG: no script, no CDN, readable by screen readers."""

from __future__ import annotations

from collections.abc import Mapping

from markupsafe import Markup, escape

__all__ = ["bars"]

_WIDTH = 640
_BAR = 22
_GAP = 6
_LABEL = 150


def bars(values: Mapping[str, int], *, title: str) -> Markup:
    """A horizontal bar per label, with its number beside it; an empty chart says so."""
    if not values:
        return Markup('<p class="empty">{}</p>').format(f"{title}: nothing yet")
    top = max(max(values.values()), 1)
    height = len(values) * (_BAR + _GAP) + _GAP
    span = _WIDTH - _LABEL - 60
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(values.items()):
        y = _GAP + i * (_BAR + _GAP)
        width = max(1, round(span * value / top)) if value else 0
        parts += [
            f'<text x="0" y="{y + 16}" class="chart-label">{escape(label)}</text>',
            f'<rect x="{_LABEL}" y="{y}" width="{width}" height="{_BAR}" class="chart-bar">'
            f"<title>{escape(label)}: {value}</title></rect>",
            f'<text x="{_LABEL + width + 6}" y="{y + 16}" class="chart-value">{value}</text>',
        ]
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated value is escaped above
