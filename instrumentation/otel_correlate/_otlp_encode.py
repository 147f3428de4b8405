"""OTLP protobuf encoding of spans and log records, written straight to bytes.

The OTLP/HTTP exporters build one protobuf object per span, attribute and value
and then serialise them; in a service that is about 70 µs of GIL-holding work per
span and 35 µs per log record, taken from the request threads. This module writes
the same wire format directly, caches the encoding of repeated attributes
(``http.request.method=GET``, ``http.route=…``), the resource and the scopes, and
groups by object identity instead of hashing the resource per record. The result
decodes to the same ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``
(``tests/test_otlp_encode.py`` compares them field by field).

:func:`install` makes the OTLP/HTTP span and log exporters use it; everything else
about them (retries, size limits, their own metrics) stays as it is.

Example:
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> provider = TracerProvider()
    >>> span = provider.get_tracer("doc").start_span("work")
    >>> span.end()
    >>> len(encode_spans([span]).SerializeToString()) > 0
    True
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from otel_correlate import _fastlogs, _fastsdk, _settings
from otel_correlate._native import built as _native  # the C hot path, or None: Python does all the work

_log = logging.getLogger("otel_correlate")

_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack
_pack_d = struct.Struct("<d").pack
_SMALL = [bytes((n,)) for n in range(128)]
#: Encoded attribute pairs: (tag, key, value type) -> value -> the field's bytes.
_KV_CACHE: dict[tuple[bytes, str, type], dict[Any, bytes]] = {}
#: The same dictionaries for string values, reachable without building a key: tag -> key -> them.
_STR_KV_CACHE: dict[bytes, dict[str, dict[Any, bytes]]] = {}
_NO_STRINGS: dict[str, dict[Any, bytes]] = {}
_CACHE_LIMIT = 4096  # (tag, key, type) slots
_VALUES_PER_KEY = 256
#: The SDK's attribute containers, matched by exact type (an ABC isinstance check costs a Python call).
_BOUNDED: frozenset[type] = frozenset({BoundedAttributes, _fastsdk._FastAttributes})
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    return tag + _varint(len(body)) + body


def _string(tag: bytes, value: str) -> bytes:
    data = value.encode("utf-8")
    return tag + _varint(len(data)) + data


def _any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` message."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _string(b"\x0a", value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:  # a varint past 64 bits: the collector refuses the request
            raise ValueError(f"{value} does not fit the 64-bit integer of an OTLP AnyValue")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    if isinstance(value, bytes):
        return b"\x3a" + _varint(len(value)) + value
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join([_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    """The body of a ``KeyValue`` message."""
    return _string(b"\x0a", key) + _field(b"\x12", _any_value(value))


def _cached_pair(tag: bytes, key: str, value: Any, kind: type) -> bytes:
    """One encoded ``KeyValue`` field, from the cache of its (tag, key, type) or encoded into it."""
    slot = (tag, key, kind)  # keyed by type too: True == 1 == 1.0, but they encode differently
    by_value = _KV_CACHE.get(slot)
    if by_value is None:
        if len(_KV_CACHE) >= _CACHE_LIMIT:
            _KV_CACHE.clear()
            _STR_KV_CACHE.clear()
        by_value = _KV_CACHE[slot] = {}
        if kind is str:
            _STR_KV_CACHE.setdefault(tag, {})[key] = by_value
    body = _key_value(key, value)
    encoded = tag + _varint(len(body)) + body
    if kind is float and value == 0.0:  # 0.0 == -0.0 with one hash, but they encode differently
        return encoded
    if len(by_value) >= _VALUES_PER_KEY:  # a key with ever-new values (ids) only churns its own slot
        by_value.clear()
    by_value[value] = encoded
    return encoded


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` fields under ``tag``; scalar pairs come from a bounded cache.

    String values, the common case, are found with two dictionary lookups and no
    allocation: tag -> key -> value.
    """
    if not attributes:
        return b""
    if type(attributes) in _BOUNDED:
        attributes = attributes._dict  # type: ignore[attr-defined]  # its items, without the Mapping protocol
    strings = _STR_KV_CACHE.get(tag, _NO_STRINGS)
    parts = []
    for key, value in attributes.items():
        kind = type(value)
        try:
            if kind is str:
                by_value = strings.get(key)
                encoded = by_value.get(value) if by_value is not None else None
                parts.append(encoded if encoded is not None else _cached_pair(tag, key, value, kind))
            elif kind is int or kind is bool or kind is float:
                by_value = _KV_CACHE.get((tag, key, kind))
                encoded = by_value.get(value) if by_value is not None else None
                parts.append(encoded if encoded is not None else _cached_pair(tag, key, value, kind))
            else:
                parts.append(_field(tag, _key_value(key, value)))
        except Exception as error:  # an int past 64 bits, a lone surrogate: the SDK's encoder skips these too
            # The message, not the error: a handler keeping the record would keep its frames.
            _log.warning("otel-correlate: could not encode attribute %s: %s", key, str(error))
    return b"".join(parts)


class _Memo:
    """Encodings of resources and scopes, keyed by identity and checked against the object."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[object, bytes]] = {}

    def get(self, obj: object, encode: Any) -> bytes:
        hit = self._items.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        encoded: bytes = encode(obj)
        if len(self._items) >= 256:
            self._items.clear()
        self._items[id(obj)] = (obj, encoded)
        return encoded


_RESOURCES = _Memo()
_SCOPES = _Memo()


def _resource(resource: Any) -> bytes:
    body = _attributes(b"\x0a", resource.attributes) if resource is not None else b""
    return _field(b"\x0a", body)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return _field(b"\x0a", b"")
    body = _string(b"\x0a", scope.name) if scope.name else b""
    if scope.version:
        body += _string(b"\x12", scope.version)
    body += _attributes(b"\x1a", scope.attributes)
    return _field(b"\x0a", body)


class Encoded:
    """Serialised OTLP bytes behind the two methods the exporters call."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def SerializeToString(self) -> bytes:  # the protobuf method name the exporters call
        return self._data

    def SerializePartialToString(self) -> bytes:
        return self._data


#: No resource or scope yet (``None`` is a scope).
_NOTHING = object()


def _group(items: Sequence[Any]) -> dict[int, tuple[Any, dict[int, tuple[Any, list[Any]]]]]:
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[Any]]]]] = {}
    queued = _fastlogs.QueuedLogRecord
    last_owner: Any = None
    last_resource: Any = _NOTHING
    last_scope: Any = _NOTHING
    members: list[Any] = []
    for item in items:
        kind = type(item)
        owner = item[-1] if kind is queued else item  # a queued record's logger has them
        if owner is last_owner:  # a batch of queued records mostly shares one logger
            members.append(item)
            continue
        if kind is ReadableSpan:  # the properties' fields, read directly
            resource = item._resource
            scope = item._instrumentation_scope or None
        else:
            resource = owner.resource
            scope = owner.instrumentation_scope or None
        last_owner = owner
        if resource is last_resource and scope is last_scope:  # a batch of spans mostly shares both
            members.append(item)
            continue
        last_resource, last_scope = resource, scope
        by_scope = groups.get(id(resource))
        if by_scope is None:
            by_scope = groups[id(resource)] = (resource, {})
        entry = by_scope[1].get(id(scope))
        if entry is None:
            entry = by_scope[1][id(scope)] = (scope, [])
        members = entry[1]
        members.append(item)
    return groups


def _python_items(members: Sequence[Any], tag: int, encode_item: Any) -> bytes:
    """Each member as the length-delimited field ``tag``: what ``_otlp_native`` does for the common shapes."""
    prefix = _SMALL[tag]
    return b"".join([_field(prefix, encode_item(member)) for member in members])


def _envelope(items: Sequence[Any], encode_item: Any, encode_items: Any, item_tag: int) -> bytes:
    """Resource{Spans,Logs} -> Scope{Spans,Logs} -> items, as the request body.

    ``encode_items(members, item_tag, encode_item)`` writes the items; the native one
    hands each item it does not handle to ``encode_item``.
    """
    # The parts of each message stay in one flat list, with its length prefix computed from
    # theirs: the request (hundreds of kB) is copied once, by the final join.
    out: list[bytes] = []
    for resource, scopes in _group(items).values():
        body = [_RESOURCES.get(resource, _resource)]
        for scope, members in scopes.values():
            scoped = [_SCOPES.get(scope, _scope), encode_items(members, item_tag, encode_item)]
            if scope is not None and scope.schema_url:
                scoped.append(_string(b"\x1a", scope.schema_url))
            body.append(b"\x12" + _varint(sum(map(len, scoped))))
            body.extend(scoped)
        if resource is not None and resource.schema_url:
            body.append(_string(b"\x1a", resource.schema_url))
        out.append(b"\x0a" + _varint(sum(map(len, body))))
        out.extend(body)
    return b"".join(out)


# Span flags: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE (0x100), plus IS_REMOTE (0x200) for a remote parent.
_LOCAL_PARENT = b"\x85\x01" + _pack_i(0x100)
_REMOTE_PARENT = b"\x85\x01" + _pack_i(0x300)
#: Span.kind field by SpanKind (the OTLP enum is the API's value + 1).
_KINDS = {kind: b"\x30" + _SMALL[kind.value + 1] for kind in SpanKind}


def _events_and_links(span: Any, parts: list[bytes]) -> None:
    for event in span.events:
        body = b"\x09" + _pack_q(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _string(b"\x12", event.name)
        body += _attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        parts.append(_field(b"\x5a", body))
    if span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    for link in span.links:
        body = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big")
        body += b"\x12\x08" + link.context.span_id.to_bytes(8, "big")
        body += _attributes(b"\x22", link.attributes)
        if link.dropped_attributes:
            body += b"\x28" + _varint(link.dropped_attributes)
        body += b"\x35" + _pack_i(0x300 if link.context.is_remote else 0x100)
        parts.append(_field(b"\x6a", body))
    if span.dropped_links:
        parts.append(b"\x70" + _varint(span.dropped_links))


def _span(span: Any) -> bytes:
    ctx = span.get_span_context()
    parts = [b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big") + b"\x12\x08" + ctx.span_id.to_bytes(8, "big")]
    trace_state = ctx.trace_state
    if trace_state:
        parts.append(_string(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items())))
    parent = span.parent
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_string(b"\x2a", span.name))
    parts.append(_KINDS[span.kind])
    if span.start_time:
        parts.append(b"\x39" + _pack_q(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _pack_q(span.end_time))
    # An SDK span's properties copy or wrap its fields; read them directly when they are there.
    attributes = getattr(span, "_attributes", None)
    if attributes is None:
        attributes = span.attributes
    parts.append(_attributes(b"\x4a", attributes))
    dropped = attributes.dropped if type(attributes) in _BOUNDED else span.dropped_attributes
    if dropped:
        parts.append(b"\x50" + _varint(dropped))
    if getattr(span, "_events", True) or getattr(span, "_links", True):
        _events_and_links(span, parts)
    status = span.status
    if status is not None:
        code = status.status_code.value
        if status.description or code:
            body = _string(b"\x12", status.description) if status.description else b""
            if code:
                body += b"\x18" + _SMALL[code]
            parts.append(_field(b"\x7a", body))
        else:
            parts.append(b"\x7a\x00")
    parts.append(_REMOTE_PARENT if parent is not None and parent.is_remote else _LOCAL_PARENT)
    return b"".join(parts)


def encode_spans(spans: Sequence[Any]) -> Encoded:
    """An ``ExportTraceServiceRequest`` for ``spans`` (SDK ``ReadableSpan`` objects)."""
    return Encoded(_envelope(spans, _span, _ENCODE_SPANS, 0x12))


_SEVERITY_FIELDS: dict[tuple[Any, str], bytes] = {}


def _severity_fields(number: Any, text: str) -> bytes:
    """``severity_number`` and ``severity_text``, encoded once per pair."""
    fields = _SEVERITY_FIELDS.get((number, text))
    if fields is None:
        value = getattr(number, "value", None)
        fields = (b"\x10" + _varint(value) if value else b"") + (_string(b"\x1a", text) if text else b"")
        if len(_SEVERITY_FIELDS) < 256:
            _SEVERITY_FIELDS[number, text] = fields
    return fields


def _queued_log_record(item: _fastlogs.QueuedLogRecord) -> bytes:
    """``_log_record`` for a compact queued record (plain attributes, nothing dropped, no event name).

    Kept apart from ``_log_record`` on purpose: one writer for both shapes measured
    0.1-0.5 µs slower per record on this, the log path's hot path.
    """
    timestamp, observed, trace_id, span_id, flags, severity_text, severity, body, attributes, _ = item
    if type(body) is str:
        data = body.encode("utf-8")
        size = len(data)
        if size < 126:  # both lengths fit one byte
            body_field = b"\x2a" + _SMALL[size + 2] + b"\x0a" + _SMALL[size] + data
        else:
            body_field = _field(b"\x2a", b"\x0a" + _varint(size) + data)
    else:
        body_field = _field(b"\x2a", _any_value(body))
    return b"".join(
        (
            b"\x09" + _pack_q(timestamp) if timestamp else b"",
            _severity_fields(severity, severity_text),
            body_field,
            _attributes(b"\x32", attributes),
            b"\x45" + _pack_i(flags) if flags else b"",
            b"\x4a\x10" + trace_id.to_bytes(16, "big") if trace_id else b"",
            b"\x52\x08" + span_id.to_bytes(8, "big") if span_id else b"",
            b"\x59" + _pack_q(observed) if observed else b"",
        )
    )


def _log_record(readable: Any) -> bytes:
    if type(readable) is _fastlogs.QueuedLogRecord:
        return _queued_log_record(readable)
    record = readable.log_record
    parts = []
    if record.timestamp:
        parts.append(b"\x09" + _pack_q(record.timestamp))
    severity = getattr(record.severity_number, "value", None)
    if severity:
        parts.append(b"\x10" + _varint(severity))
    if record.severity_text:
        parts.append(_string(b"\x1a", record.severity_text))
    parts.append(_field(b"\x2a", _any_value(record.body)))
    attributes = record.attributes
    parts.append(_attributes(b"\x32", attributes))
    dropped = attributes.dropped if type(attributes) in _BOUNDED else readable.dropped_attributes
    if dropped:
        parts.append(b"\x38" + _varint(dropped))
    flags = int(record.trace_flags) if record.trace_flags is not None else 0
    if flags:
        parts.append(b"\x45" + _pack_i(flags))
    if record.trace_id:
        parts.append(b"\x4a\x10" + record.trace_id.to_bytes(16, "big"))
    if record.span_id:
        parts.append(b"\x52\x08" + record.span_id.to_bytes(8, "big"))
    if record.observed_timestamp:
        parts.append(b"\x59" + _pack_q(record.observed_timestamp))
    if record.event_name:
        parts.append(_string(b"\x62", record.event_name))
    return b"".join(parts)


def encode_logs(records: Sequence[Any]) -> Encoded:
    """An ``ExportLogsServiceRequest`` for ``records`` (SDK ``ReadableLogRecord`` or ``QueuedLogRecord`` objects)."""
    return Encoded(_envelope(records, _log_record, _ENCODE_LOGS, 0x12))


def _configure_native() -> tuple[Any, Any]:
    """The item writers: the C ones, told which SDK types they may read directly, or the Python one."""
    if _native is None or not _settings.NATIVE_ENCODER.get():
        return _python_items, _python_items
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode

    try:
        _native.configure(
            ReadableSpan,
            SpanContext,
            Status,
            _fastlogs.QueuedLogRecord,
            dict(_KINDS),
            {code: code.value for code in StatusCode},
            {number: number.value for number in SeverityNumber},
        )
    except Exception as error:  # a stale build of another version: the Python encoder works alone
        _log.warning("otel-correlate: the C encoder is not used (%s); encoding in Python", error)
        return _python_items, _python_items
    return _native.spans, _native.logs


_ENCODE_SPANS, _ENCODE_LOGS = _configure_native()


def takes_queued_log_records(exporter: object) -> bool:
    """True when ``exporter`` encodes with :func:`encode_logs` (the OTLP/HTTP one, with :func:`install` in effect)."""
    if not _INSTALLED:
        return False
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return type(exporter) is OTLPLogExporter


_INSTALLED: dict[str, Any] = {}


def install() -> None:
    """Make the OTLP/HTTP span and log exporters encode with this module (idempotent)."""
    if _INSTALLED:
        return
    from opentelemetry.exporter.otlp.proto.http import _log_exporter, trace_exporter

    _INSTALLED["spans"] = getattr(trace_exporter, "encode_spans")  # noqa: B009
    _INSTALLED["logs"] = getattr(_log_exporter, "encode_logs")  # noqa: B009
    setattr(trace_exporter, "encode_spans", encode_spans)  # noqa: B010
    setattr(_log_exporter, "encode_logs", encode_logs)  # noqa: B010


def uninstall() -> None:
    """Restore the exporters' own encoders (tests use this)."""
    if not _INSTALLED:
        return
    from opentelemetry.exporter.otlp.proto.http import _log_exporter, trace_exporter

    setattr(trace_exporter, "encode_spans", _INSTALLED.pop("spans"))  # noqa: B010
    setattr(_log_exporter, "encode_logs", _INSTALLED.pop("logs"))  # noqa: B010
