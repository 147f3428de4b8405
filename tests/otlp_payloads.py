"""Valid OTLP protobuf requests built with the official proto classes, for tests that POST them."""

from __future__ import annotations

import hashlib

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

START_NS = 1_750_000_000_000_000_000


def trace_id(n: int) -> bytes:
    """A deterministic, well-spread 16-byte trace id for trace number ``n``."""
    return hashlib.sha256(f"trace-{n}".encode()).digest()[:16]


def span_id(trace: int, span: int) -> bytes:
    return hashlib.sha256(f"span-{trace}-{span}".encode()).digest()[:8]


def spans_request(
    spans: list[tuple[int, int]], *, service: str = "orders", padding: str = ""
) -> ExportTraceServiceRequest:
    """One request holding span ``(trace number, span number)`` for each pair.

    ``padding`` goes into an attribute of every span, to make payloads big.
    """
    built = []
    for trace, span in spans:
        attributes = [KeyValue(key="orderId", value=AnyValue(string_value=f"ORD-{trace}"))]
        if padding:
            attributes.append(KeyValue(key="padding", value=AnyValue(string_value=padding)))
        built.append(
            Span(
                trace_id=trace_id(trace),
                span_id=span_id(trace, span),
                parent_span_id=span_id(trace, 0) if span else b"",
                name=f"step-{span}",
                kind=Span.SPAN_KIND_SERVER if span == 0 else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=START_NS + span * 1000,
                end_time_unix_nano=START_NS + span * 1000 + 500,
                attributes=attributes,
            )
        )
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=built)])]
    )
