"""Read the stack back through each engine's own HTTP query API: Tempo, Loki, Prometheus.

Used by the demo to follow one order and by the end-to-end tests to prove what
was stored. Standard library only; every call has a timeout.

Example:
    >>> from otel_correlate._query import Tempo
    >>> Tempo().search('{ span.orderId = "ORD-1" }')  # doctest: +SKIP
    ['5b8aa5a2d2c872e8321cf37308d69df2']
"""

from __future__ import annotations

import base64
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class QueryError(RuntimeError):
    """An engine answered a query with an error; the message carries its answer."""


def _get(url: str, params: dict[str, str] | None = None, *, headers: dict[str, str] | None = None) -> Any:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[:500]
        raise QueryError(f"GET {url} answered {exc.code}: {body}") from exc


def _any_value(value: dict[str, Any]) -> Any:
    for kind, inner in value.items():
        if kind == "arrayValue":
            return [_any_value(v) for v in inner.get("values", [])]
        if kind == "kvlistValue":
            return {kv["key"]: _any_value(kv["value"]) for kv in inner.get("values", [])}
        if kind == "intValue":
            return int(inner)
        return inner
    return None


def _hex_id(raw: str) -> str:
    if len(raw) in (16, 32) and all(c in "0123456789abcdef" for c in raw.lower()):
        return raw.lower()
    return base64.b64decode(raw).hex()


@dataclass(frozen=True)
class StoredSpan:
    """A span as Tempo returns it."""

    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    name: str
    kind: str
    attributes: dict[str, Any]
    start_ns: int = 0


class Tempo:
    """Tempo's HTTP API (search with TraceQL, fetch a trace by id)."""

    def __init__(self, base_url: str = "http://127.0.0.1:3200") -> None:
        self.base_url = base_url

    def search(self, traceql: str, *, since_seconds: int = 3600, limit: int = 20) -> list[str]:
        """Trace ids matching ``traceql`` in the last ``since_seconds``."""
        now = int(time.time())
        answer = _get(
            f"{self.base_url}/api/search",
            {"q": traceql, "start": str(now - since_seconds), "end": str(now + 60), "limit": str(limit)},
        )
        return [_hex_id(t["traceID"].rjust(32, "0")) for t in answer.get("traces") or []]

    def trace(self, trace_id: str) -> list[StoredSpan]:
        """Every span of one trace (empty when Tempo does not have it)."""
        try:
            answer = _get(f"{self.base_url}/api/traces/{trace_id}")
        except QueryError as exc:
            if " 404:" in str(exc):
                return []
            raise
        spans = []
        for batch in answer.get("batches") or answer.get("resourceSpans") or []:
            resource = {
                a["key"]: _any_value(a["value"]) for a in batch.get("resource", {}).get("attributes", [])
            }
            for scope in batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []:
                for span in scope.get("spans", []):
                    spans.append(
                        StoredSpan(
                            trace_id=_hex_id(span["traceId"]),
                            span_id=_hex_id(span["spanId"]),
                            parent_span_id=_hex_id(span["parentSpanId"]) if span.get("parentSpanId") else "",
                            service=str(resource.get("service.name", "")),
                            name=span["name"],
                            kind=span.get("kind", ""),
                            attributes={a["key"]: _any_value(a["value"]) for a in span.get("attributes", [])},
                            start_ns=int(span.get("startTimeUnixNano", 0)),
                        )
                    )
        return sorted(spans, key=lambda span: span.start_ns)


@dataclass(frozen=True)
class StoredLogLine:
    """A log line as Loki returns it: the line, its index labels and its structured metadata."""

    timestamp_ns: int
    line: str
    labels: dict[str, str]
    metadata: dict[str, str]


class Loki:
    """Loki's HTTP API (LogQL range queries, labels)."""

    def __init__(self, base_url: str = "http://127.0.0.1:3100") -> None:
        self.base_url = base_url

    def query(self, logql: str, *, since_seconds: int = 3600, limit: int = 5000) -> list[StoredLogLine]:
        """Log lines matching ``logql``, oldest first, with labels and metadata kept apart."""
        now_ns = time.time_ns()
        answer = _get(
            f"{self.base_url}/loki/api/v1/query_range",
            {
                "query": logql,
                "start": str(now_ns - since_seconds * 1_000_000_000),
                "end": str(now_ns + 60_000_000_000),
                "limit": str(limit),
                "direction": "forward",
            },
            headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"},
        )
        lines = []
        for stream in answer["data"]["result"]:
            labels = stream["stream"]
            for value in stream["values"]:
                categories = value[2] if len(value) > 2 else {}
                lines.append(
                    StoredLogLine(
                        timestamp_ns=int(value[0]),
                        line=value[1],
                        labels=dict(labels),
                        metadata=dict(categories.get("structuredMetadata", {})),
                    )
                )
        return sorted(lines, key=lambda line: line.timestamp_ns)

    def label_names(self, *, since_seconds: int = 3600) -> list[str]:
        """Every index label name Loki has."""
        now_ns = time.time_ns()
        answer = _get(
            f"{self.base_url}/loki/api/v1/labels",
            {"start": str(now_ns - since_seconds * 1_000_000_000), "end": str(now_ns)},
        )
        return list(answer.get("data") or [])


def range_selector(selector: str, *, since: float, until: float) -> str:
    """A range vector selector covering ``since`` to ``until`` (Unix seconds), to the millisecond.

    Example:
        >>> range_selector('up{job="orders"}', since=100.0, until=102.5)
        'up{job="orders"}[2500ms]'
    """
    return f"{selector}[{max(1, math.ceil((until - since) * 1000))}ms]"


class Prometheus:
    """Prometheus' HTTP API (instant queries, raw samples, series, exemplars)."""

    def __init__(self, base_url: str = "http://127.0.0.1:9090") -> None:
        self.base_url = base_url

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query: ``[{"metric": {...}, "value": [t, "v"]}]``."""
        answer = _get(f"{self.base_url}/api/v1/query", {"query": promql})
        if answer.get("status") != "success":
            raise QueryError(f"{promql}: {answer}")
        return list(answer["data"]["result"])

    def samples(self, selector: str, *, since: float, until: float | None = None) -> list[dict[str, Any]]:
        """Raw samples of every series ``selector`` matches, taken from ``since`` to ``until``.

        Times are Unix seconds (``until`` defaults to now). Each sample keeps the
        time it was taken at, not an evaluation step:
        ``[{"metric": {...}, "values": [[t, "v"], ...]}]``.
        """
        until = time.time() if until is None else until
        query = range_selector(selector, since=since, until=until)
        answer = _get(f"{self.base_url}/api/v1/query", {"query": query, "time": f"{until:.3f}"})
        if answer.get("status") != "success":
            raise QueryError(f"{query}: {answer}")
        return list(answer["data"]["result"])

    def series(self, match: str, *, since_seconds: int = 3600) -> list[dict[str, str]]:
        """Label sets of every series matching ``match``."""
        now = time.time()
        answer = _get(
            f"{self.base_url}/api/v1/series",
            {"match[]": match, "start": str(now - since_seconds), "end": str(now)},
        )
        return list(answer["data"])

    def exemplars(self, promql: str, *, since_seconds: int = 3600) -> list[dict[str, Any]]:
        """Exemplars of the series selected by ``promql``: ``[{"seriesLabels", "exemplars": [...]}]``."""
        now = time.time()
        answer = _get(
            f"{self.base_url}/api/v1/query_exemplars",
            {"query": promql, "start": str(now - since_seconds), "end": str(now + 60)},
        )
        return list(answer.get("data") or [])
