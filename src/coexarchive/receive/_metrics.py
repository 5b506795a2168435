"""A few Prometheus metrics in the text exposition format, without a client library."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable

# Seconds; durable POSTs take about an fsync, so the interesting range is 0.5 ms to 1 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Histogram:
    """A cumulative-bucket histogram."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name: str, labels: str = "") -> Iterable[str]:
        running = 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}'
        running += self.counts[-1]
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {running}'
        suffix = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{suffix} {self.total:.6f}"
        yield f"{name}_count{suffix} {running}"


class Metrics:
    """Counters and gauges of one receiver; gauges are read at scrape time."""

    def __init__(self) -> None:
        self.responses: Counter[tuple[str, int]] = Counter()
        self.rejections: Counter[str] = Counter()
        self.latency = Histogram()
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        lines = [
            "# HELP coexarchive_receiver_responses_total HTTP responses by endpoint and status.",
            "# TYPE coexarchive_receiver_responses_total counter",
        ]
        for (endpoint, status), count in sorted(self.responses.items()):
            lines.append(
                "coexarchive_receiver_responses_total"
                f'{{endpoint="{endpoint}",status="{status}"}} {count}'
            )
        lines += [
            "# HELP coexarchive_receiver_rejections_total Deliveries refused, by reason.",
            "# TYPE coexarchive_receiver_rejections_total counter",
        ]
        for reason, count in sorted(self.rejections.items()):
            lines.append(f'coexarchive_receiver_rejections_total{{reason="{reason}"}} {count}')
        lines += [
            "# HELP coexarchive_receiver_durable_seconds Time from request to durable 200.",
            "# TYPE coexarchive_receiver_durable_seconds histogram",
            *self.latency.lines("coexarchive_receiver_durable_seconds"),
        ]
        for name, (help_text, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
