"""Our direct OTLP encoder decodes to exactly what the SDK's protobuf encoder builds."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from otel_correlate import _otlp_encode

RESOURCE = Resource.create({"service.name": "orders", "service.instance.id": "i-1"}, schema_url="https://x/1")
ATTRIBUTES = {
    "http.request.method": "GET",
    "http.response.status_code": 200,
    "orderId": "ORD-ü-1",
    "ratio": 0.25,
    "negative": -42,
    "flag": False,
    "empty": "",
    "tags": ("a", "b"),
    "codes": (1, 2, 3),
}


def _spans() -> list[object]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.encode", "1.2", schema_url="https://scope/1")
    other = provider.get_tracer("tests.other")
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1"), ("x", "y")]),
    )
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "GET /orders/{order_id}", context=parent, kind=SpanKind.SERVER
    ) as server:
        server.set_attributes(ATTRIBUTES)
        server.add_event("retry", {"attempt": 2, "delay": 0.5})
        server.add_event("bare")
        with other.start_as_current_span("charge", links=[Link(remote, {"why": "batch"})]) as child:
            child.set_status(Status(StatusCode.ERROR, "card declined"))
            child.record_exception(ValueError("declined"))
        with tracer.start_as_current_span("ok", kind=SpanKind.CLIENT) as ok:
            ok.set_status(Status(StatusCode.OK))
    tracer.start_span("internal", kind=SpanKind.CONSUMER).end()
    return list(exporter.get_finished_spans())


def test_spans_decode_to_what_the_sdk_encoder_builds() -> None:
    spans = _spans()
    ours = ExportTraceServiceRequest.FromString(_otlp_encode.encode_spans(spans).SerializeToString())
    assert ours == sdk_encode_spans(spans)
    # A second pass answers from the attribute, resource and scope caches: same bytes.
    assert (
        _otlp_encode.encode_spans(spans).SerializeToString()
        == _otlp_encode.encode_spans(spans).SerializeToString()
    )


def test_spans_of_interleaved_resources_and_scopes_are_grouped_as_the_sdk_groups_them() -> None:
    exporter = InMemorySpanExporter()
    providers = [
        TracerProvider(resource=RESOURCE),
        TracerProvider(resource=Resource.create({"service.name": "b"})),
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracers = [provider.get_tracer(name, "1") for provider in providers for name in ("a", "b")]
    for n, index in enumerate([0, 1, 0, 2, 3, 2, 1, 0, 0, 3]):  # each scope's spans apart from each other
        tracers[index].start_span(f"s{n}").end()
    spans = list(exporter.get_finished_spans())
    ours = ExportTraceServiceRequest.FromString(_otlp_encode.encode_spans(spans).SerializeToString())
    assert ours == sdk_encode_spans(spans)
    assert [[len(scoped.spans) for scoped in r.scope_spans] for r in ours.resource_spans] == [[4, 2], [2, 2]]
    # one scope object under both resources: the resource alone tells the groups apart
    for span in spans:
        span._instrumentation_scope = spans[0].instrumentation_scope
    ours = ExportTraceServiceRequest.FromString(_otlp_encode.encode_spans(spans).SerializeToString())
    assert ours == sdk_encode_spans(spans)
    assert [[len(scoped.spans) for scoped in r.scope_spans] for r in ours.resource_spans] == [[6], [4]]


def test_log_records_decode_to_what_the_sdk_encoder_builds() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests.encode.logs", "0.1")
    tracer = TracerProvider(resource=RESOURCE).get_tracer("t")
    with tracer.start_as_current_span("s"):
        logger.emit(
            LogRecord(
                timestamp=1_700_000_000_000_000_000,
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body="order ORD-1 looked up",
                attributes={**ATTRIBUTES, "code.line.number": 12},
            )
        )
    logger.emit(LogRecord(severity_number=SeverityNumber.ERROR, body={"nested": {"k": [1, "x"]}}))
    logger.emit(LogRecord(body=None, event_name="app.started"))
    records = list(exporter.get_finished_logs())
    ours = ExportLogsServiceRequest.FromString(_otlp_encode.encode_logs(records).SerializeToString())
    assert ours == sdk_encode_logs(records)


class _Queued(InMemoryLogRecordExporter):
    """Keeps what the fast batch processor queued, as it queued it (it says it reads queued records)."""

    takes_queued_log_records = True


def _emitted_through(processor_class: type, exporter: InMemoryLogRecordExporter) -> list[object]:
    """Log lines through otel-correlate's emitter (what the loguru/stdlib bridges call) into ``exporter``."""
    from opentelemetry import context

    from otel_correlate import _logs

    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(processor_class(exporter))
    emitter = _logs._Emitter()
    original = _logs.get_logger_provider
    _logs.get_logger_provider = lambda: provider  # type: ignore[assignment]
    span = trace.NonRecordingSpan(
        SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))
    )
    token = context.attach(trace.set_span_in_context(span))
    try:
        for level, body in ((20, "order ORD-1 looked up"), (40, "ü" * 200), (25, "")):
            scalars = {k: v for k, v in ATTRIBUTES.items() if not isinstance(v, tuple)}
            emitter.emit(
                scope="orders.api",
                level_no=level,
                body=body,
                attributes=scalars,
                timestamp_ns=1_700_000_000_123_456_000,
            )
    finally:
        context.detach(token)
    emitter.emit(scope="other", level_no=10, body="outside any span", attributes={"n": 1}, timestamp_ns=0)
    provider.force_flush()
    records = list(exporter.get_finished_logs())
    provider.shutdown()
    _logs.get_logger_provider = original  # type: ignore[assignment]
    return records


def test_queued_log_records_encode_as_the_sdks_records() -> None:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from otel_correlate import _fastlogs

    queued = _emitted_through(_fastlogs.FastBatchLogRecordProcessor, _Queued())
    assert {type(r) for r in queued} == {_fastlogs.QueuedLogRecord}  # the compact path was taken
    sdk = _emitted_through(BatchLogRecordProcessor, InMemoryLogRecordExporter())

    def decoded(data: bytes) -> ExportLogsServiceRequest:
        request = ExportLogsServiceRequest.FromString(data)
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    assert record.observed_time_unix_nano > 0
                    record.observed_time_unix_nano = 0  # the one field that differs: when it was observed
        return request

    ours = decoded(_otlp_encode.encode_logs(queued).SerializeToString())
    assert ours == decoded(sdk_encode_logs(sdk).SerializeToString())  # the SDK's records, the SDK's encoder
    assert (
        len(ours.resource_logs[0].scope_logs) == 2
        and len(ours.resource_logs[0].scope_logs[0].log_records) == 3
    )
    # the same records as the SDK's types, through the SDK's encoder: same bytes as ours
    readable = _fastlogs.readable_log_records(queued)
    assert (
        _otlp_encode.encode_logs(queued).SerializeToString() == sdk_encode_logs(readable).SerializeToString()
    )
    # records of two loggers interleaved still group by scope, each in its own order
    mixed = [queued[0], queued[3], queued[1], queued[3], queued[2]]
    assert (
        _otlp_encode.encode_logs(mixed).SerializeToString()
        == sdk_encode_logs(_fastlogs.readable_log_records(mixed)).SerializeToString()
    )


def test_only_the_otlp_http_exporter_with_this_encoder_takes_queued_records() -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    exporter = OTLPLogExporter(endpoint="http://127.0.0.1:9/v1/logs")
    was_installed = bool(_otlp_encode._INSTALLED)
    try:
        _otlp_encode.install()
        assert _otlp_encode.takes_queued_log_records(exporter)
        assert not _otlp_encode.takes_queued_log_records(InMemoryLogRecordExporter())
        _otlp_encode.uninstall()
        assert not _otlp_encode.takes_queued_log_records(exporter)  # the SDK's encoder would not read them
    finally:
        (_otlp_encode.install if was_installed else _otlp_encode.uninstall)()
        exporter.shutdown()


def test_attribute_values_equal_in_python_keep_their_own_type() -> None:
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PBLogRecord

    for value, field in (
        (True, "bool_value"),
        (1, "int_value"),
        (1.0, "double_value"),
        ("1", "string_value"),
    ):
        record = PBLogRecord.FromString(_otlp_encode._attributes(b"\x32", {"a": value}))
        assert record.attributes[0].value.WhichOneof("value") == field  # True == 1 == 1.0, cached apart
        assert getattr(record.attributes[0].value, field) == value


def test_ever_new_values_do_not_evict_the_repeated_ones() -> None:
    for n in range(2000):  # a request id per record
        encoded = _otlp_encode._attributes(b"\x32", {"http.request.method": "GET", "requestId": f"{n:032x}"})
    methods = _otlp_encode._KV_CACHE[(b"\x32", "http.request.method", str)]
    assert list(methods) == ["GET"]  # still cached: the ids churned only their own slot
    assert len(_otlp_encode._KV_CACHE[(b"\x32", "requestId", str)]) <= _otlp_encode._VALUES_PER_KEY
    assert encoded == b"".join(
        _otlp_encode._field(b"\x32", _otlp_encode._key_value(k, v))
        for k, v in {"http.request.method": "GET", "requestId": f"{1999:032x}"}.items()
    )


def test_attributes_the_wire_cannot_carry_are_skipped_as_the_sdk_skips_them() -> None:
    # An OTLP int is 64 bits: a longer varint makes the collector refuse the whole request.
    # Each such attribute is dropped alone, never the span or the batch.
    provider = TracerProvider(resource=RESOURCE)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attributes(
            {
                "ok": 1,
                "too.big": 2**64 + 5,
                "too.small": -(2**63) - 1,
                "edge.max": 2**63 - 1,
                "edge.min": -(2**63),
                "lone.surrogate": "\ud800",  # not encodable as UTF-8
            }
        )
    spans = list(exporter.get_finished_spans())
    for _ in range(2):  # the second time from the caches
        ours = ExportTraceServiceRequest.FromString(_otlp_encode.encode_spans(spans).SerializeToString())
        assert ours == sdk_encode_spans(spans)
        [encoded] = ours.resource_spans[0].scope_spans[0].spans
        assert [a.key for a in encoded.attributes] == ["ok", "edge.max", "edge.min"]
