"""The fast SDK paths export exactly what the SDK's own code exports, for plain and unusual input.

Each test runs one script of API calls twice, through the SDK's providers and
through :mod:`otel_correlate._fastsdk`'s, and compares the exported records
whole (ids made deterministic, timestamps zeroed).
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import enum
import functools
import gc
import itertools
import json
import logging
import math
import os
import random
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import context, trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk._logs import Logger as SDKLogger
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics._internal import _MeterConfig
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlignedHistogramBucketExemplarReservoir,
    SimpleFixedSizeExemplarReservoir,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    TracerProvider,
    _TracerConfig,
    sampling,
)
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY

from otel_correlate import _fastlogs, _fastsdk, _logs, _pipeline
from otel_correlate._asgi_server import end_server_span
from tests.forks import exit_code_of

RESOURCE = Resource.create({"service.name": "fastsdk-test"})


def _in_sampled_span() -> context.Context:
    """A context whose current span is sampled (trace 0xFEED, span 0xBEEF): what records and exemplars link to."""
    span_context = SpanContext(0xFEED, 0xBEEF, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def test_the_sdk_is_the_line_the_fast_paths_were_written_for() -> None:
    assert sdk_version.startswith(_fastsdk.SDK_LINE), (
        f"opentelemetry-sdk {sdk_version}: re-check otel_correlate/_fastsdk.py against this SDK "
        f"(it mirrors Tracer.start_span and _ViewInstrumentMatch.consume_measurement) and update SDK_LINE"
    )


class _Counting(IdGenerator):
    def __init__(self) -> None:
        self._next = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._next)

    def generate_trace_id(self) -> int:
        return 0xABC000 + next(self._next)


def _record(value: Any) -> Any:
    """A comparable form of an exported record: timestamps zeroed, every scalar tagged with its type.

    Tagging keeps ``True``, ``1`` and ``1.0`` apart (they are equal in Python) and
    tuples apart from lists.
    """
    if isinstance(value, dict):
        return {
            k: (0 if ("time" in k or "timestamp" in k) and v not in (None, "") else _record(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_record(v) for v in value])
    return (type(value).__name__, value)


def _span_record(span: Any) -> dict[str, Any]:
    return _record(
        {
            "name": span.name,
            "trace_id": span.context.trace_id,
            "span_id": span.context.span_id,
            "flags": int(span.context.trace_flags),
            "parent": None if span.parent is None else (span.parent.span_id, span.parent.is_remote),
            "kind": span.kind.name,
            "attributes": list(span.attributes.items()),  # in order: a re-set key moves to the end
            "dropped_attributes": span.dropped_attributes,
            "dropped_events": span.dropped_events,
            "dropped_links": span.dropped_links,
            "events": [(e.name, dict(e.attributes or {})) for e in span.events],
            "links": [(link.context.span_id, dict(link.attributes or {})) for link in span.links],
            "status": (span.status.status_code.name, span.status.description),
            "scope": (span.instrumentation_scope.name, span.instrumentation_scope.version),
            "resource": dict(span.resource.attributes),
            "start_time": span.start_time,
            "end_time": span.end_time,
        }
    )


# --------------------------------------------------------------------------- spans

WEIRD_VALUES: dict[Any, Any] = {
    "str": "v",
    "int": 7,
    "float": 0.5,
    "bool": True,
    "list": ["a", "b"],
    "tuple": (1, 2),
    "bytes": b"\x00\x01",
    "none": None,
    "object": object.__new__(type("Custom", (), {"__str__": lambda self: "custom"})),
    "": "empty key",
    3: "int key",
}


def _span_script(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("script", "1.0")
    remote = SpanContext(0xFEED, 0xBEEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    parent_ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    server = tracer.start_span(
        "GET", context=parent_ctx, kind=SpanKind.SERVER, attributes={"a": "1", "b": 2, "c": 2.5, "d": False}
    )
    server.set_attributes({"a": "moved to the end", "e": ["x", "y"]})
    server.set_attribute("f", {"nested": 1})
    server.set_attribute("g", 3)
    server.set_attributes({"b": 3})  # plain re-sets: the key moves to the end, as in the SDK
    server.set_attribute("c", 1.5)
    server.set_attributes(WEIRD_VALUES)
    server.add_event("retry", {"attempt": 2})
    server.add_event("retry", {"attempt": 3})  # over max_events=1: dropped and counted
    server.add_link(SpanContext(0xFEED, 0xCAFE, is_remote=True), {"why": "added later"})
    server.add_link(SpanContext(0xFEED, 0xCAFF, is_remote=True))
    token = context.attach(trace.set_span_in_context(server))
    try:
        with tracer.start_as_current_span("child", links=[Link(remote, {"why": "batch"})]) as child:
            child.set_status(Status(StatusCode.ERROR, "declined"))
            child.record_exception(ValueError("declined"))
        root = tracer.start_span("root", context=context.Context(), attributes=None)
        root.end()
    finally:
        context.detach(token)
    quiet = tracer.start_span("quiet")  # no events, no links: the fast span's lists are never made
    quiet.end()
    server.end()
    server.set_attribute("after", "end")  # ignored, with the SDK's warning
    server.add_event("after end")  # ignored, with the SDK's warning
    server.add_link(SpanContext(0xFEED, 0xD00D, is_remote=True))


def _unsampled_script(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("script")
    for flags in (TraceFlags.DEFAULT, TraceFlags.SAMPLED):
        remote = SpanContext(0xFEED, 0xBEEF, is_remote=True, trace_flags=TraceFlags(flags))
        span = tracer.start_span("in", context=trace.set_span_in_context(trace.NonRecordingSpan(remote)))
        with trace.use_span(span, end_on_exit=True):
            tracer.start_span("child", attributes={"k": "v"}).end()
    tracer.start_span("root", attributes={"k": "v"}).end()
    # parents the fast tracer does not read itself: a span type it does not know, the
    # invalid span, and something that is not a span at all under the span key
    foreign = _ForeignSpan(
        SpanContext(0xFEED, 0xF00D, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
    for parent in (foreign, trace.INVALID_SPAN):
        tracer.start_span("under", context=trace.set_span_in_context(parent)).end()
    tracer.start_span("odd", context=context.set_value(_SPAN_KEY, "not a span")).end()


class _ForeignSpan(trace.NonRecordingSpan):
    pass


def _spans(
    provider_class: type[TracerProvider],
    limits: SpanLimits | None = None,
    sampler: sampling.Sampler | None = None,
    script: Callable[[TracerProvider], None] = _span_script,
    ids: str = "counting",
) -> list[dict[str, Any]]:
    """The spans ``script`` exports; ``ids="random"``: the SDK's RandomIdGenerator, seeded (the C path's case)."""
    exporter = InMemorySpanExporter()
    state = random.getstate()
    random.seed(11)
    try:
        provider = provider_class(
            resource=RESOURCE,
            id_generator=_Counting() if ids == "counting" else RandomIdGenerator(),
            span_limits=limits,
            sampler=sampler,
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        script(provider)
    finally:
        random.setstate(state)
    spans = [_span_record(span) for span in exporter.get_finished_spans()]
    provider.shutdown()
    return spans


@pytest.fixture(params=["c", "python"], ids=["c-emit", "python-emit"])
def emit_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each log hand-off test twice: through the C ``emit_log`` (built in this venv) and through Python alone."""
    if request.param == "c":
        assert _fastlogs._NATIVE_EMIT is not None, "the C extension is built in this venv"
    else:
        monkeypatch.setattr(_fastlogs, "_NATIVE_EMIT", None)
    return str(request.param)


@pytest.fixture(params=["c", "python"], ids=["c-start", "python-start"])
def span_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each span test twice: through the C ``start_span`` and ``end_span`` (built in this venv) and through Python alone."""
    if request.param == "c":
        assert _fastsdk._NATIVE_START is not None, "the C extension is built in this venv"
    else:
        monkeypatch.setattr(_fastsdk, "_NATIVE_START", None)
        monkeypatch.setattr(_fastsdk, "_NATIVE_END", None)
    return str(request.param)


@pytest.mark.parametrize(
    "limits",
    [
        None,
        SpanLimits(max_span_attributes=4),
        SpanLimits(max_span_attribute_length=3),
        SpanLimits(max_span_attributes=0),
        SpanLimits(max_events=1, max_links=1),
        SpanLimits(max_events=0, max_links=0),
    ],
    ids=["default", "few-attributes", "short-values", "no-attributes", "one-event-one-link", "no-events"],
)
@pytest.mark.parametrize("ids", ["counting", "random"])
def test_spans_are_the_sdks_spans(
    limits: SpanLimits | None, ids: str, span_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        expected = _spans(TracerProvider, limits, ids=ids)
        sdk_warnings = [r.getMessage() for r in caplog.records]
        caplog.clear()
        assert _spans(_fastsdk.FastTracerProvider, limits, ids=ids) == expected
        assert [r.getMessage() for r in caplog.records] == sdk_warnings
    assert len(expected) == 4


@pytest.mark.parametrize(
    "sampler",
    [
        None,
        sampling.ALWAYS_OFF,
        sampling.ALWAYS_ON,
        sampling.ParentBased(sampling.TraceIdRatioBased(0.5)),
        sampling.ParentBasedTraceIdRatio(0.5),
        sampling.TraceIdRatioBased(0.5),
        sampling.DEFAULT_OFF,
    ],
    ids=[
        "default",
        "always-off",
        "always-on",
        "parent-ratio",
        "parentbased-traceidratio",
        "ratio",
        "default-off",
    ],
)
@pytest.mark.parametrize("ids", ["counting", "random"])
def test_sampling_decisions_are_the_sdks(sampler: sampling.Sampler | None, ids: str, span_path: str) -> None:
    expected = _spans(TracerProvider, sampler=sampler, script=_unsampled_script, ids=ids)
    assert _spans(_fastsdk.FastTracerProvider, sampler=sampler, script=_unsampled_script, ids=ids) == expected


class _RecordOnly(sampling.Sampler):
    """Records every span but samples none (no built-in sampler decides RECORD_ONLY)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> sampling.SamplingResult:
        return sampling.SamplingResult(sampling.Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_a_record_only_decision_makes_a_recording_unsampled_span_as_in_the_sdk() -> None:
    made = []
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        span = cls(sampler=_RecordOnly()).get_tracer("t").start_span("s")
        made.append(
            (
                type(span).__name__ != "NonRecordingSpan",
                span.is_recording(),
                span.get_span_context().trace_flags,
            )
        )
    assert made[0] == made[1] == (True, True, trace.TraceFlags(trace.TraceFlags.DEFAULT | 0x02))


@pytest.mark.parametrize("sampler", [_RecordOnly(), sampling.ALWAYS_ON], ids=["record-only", "sampled"])
def test_the_batch_processor_queues_only_sampled_spans(sampler: sampling.Sampler) -> None:
    exported = []
    for processor_class in (BatchSpanProcessor, _fastsdk.FastBatchSpanProcessor):
        exporter = InMemorySpanExporter()
        provider = _fastsdk.FastTracerProvider(sampler=sampler)
        provider.add_span_processor(processor_class(exporter))
        provider.get_tracer("t").start_span("s").end()
        provider.force_flush()
        exported.append([span.name for span in exporter.get_finished_spans()])
        provider.shutdown()
    assert exported[0] == exported[1] == ([] if isinstance(sampler, _RecordOnly) else ["s"])


def _random_id_script(provider: TracerProvider) -> list[tuple[int, int, int | None]]:
    tracer = provider.get_tracer("t")
    root = tracer.start_span("root")
    child = tracer.start_span("child", context=trace.set_span_in_context(root))
    other = tracer.start_span("other")
    return [
        (s.get_span_context().trace_id, s.get_span_context().span_id, s.parent.span_id if s.parent else None)  # type: ignore[attr-defined]
        for s in (root, child, other)
    ]


def test_the_default_id_generator_draws_the_sdks_ids(span_path: str) -> None:
    """With the SDK's RandomIdGenerator the fast tracer draws the same random numbers in the same order."""
    state = random.getstate()
    try:
        made = []
        for cls in (TracerProvider, _fastsdk.FastTracerProvider):
            random.seed(5)
            made.append(_random_id_script(cls()))
    finally:
        random.setstate(state)
    assert made[0] == made[1]
    assert len({span_id for _, span_id, _ in made[1]}) == 3


def test_a_zero_draw_falls_back_to_the_id_generator(span_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _fastsdk, "_getrandbits", lambda bits: 0
    )  # an id of 0 is invalid: the generator draws again
    span = _fastsdk.FastTracerProvider().get_tracer("t").start_span("s")
    assert span.get_span_context().is_valid


def _end_as_script(provider: TracerProvider) -> None:
    """Server spans ended the way the middleware ends them: end_as where the span has it."""
    tracer = provider.get_tracer("script")

    finish = end_server_span

    server = tracer.start_span("GET", kind=SpanKind.SERVER, attributes={"a": "1", "b": 2})
    finish(server, "GET /orders/{id}", {"http.route": "/orders/{id}", "a": "moved", "s": 200, **WEIRD_VALUES})
    finish(tracer.start_span("POST"), None, {"n": 1})
    ended = tracer.start_span("ended")
    ended.end()
    finish(ended, "renamed", {"late": True})  # changes nothing, with the SDK's warnings


@pytest.mark.parametrize(
    "limits",
    [None, SpanLimits(max_span_attributes=3), SpanLimits(max_span_attribute_length=2)],
    ids=["default", "few-attributes", "short-values"],
)
def test_ending_with_the_last_attributes_is_the_sdks_three_calls(
    limits: SpanLimits | None, span_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        expected = _spans(TracerProvider, limits, script=_end_as_script, ids="random")
        sdk_warnings = [r.getMessage() for r in caplog.records]
        caplog.clear()
        assert _spans(_fastsdk.FastTracerProvider, limits, script=_end_as_script, ids="random") == expected
        assert [r.getMessage() for r in caplog.records] == sdk_warnings
    assert [span["name"][1] for span in expected] == ["GET /orders/{id}", "POST", "ended"]
    assert any("ended span" in warning for warning in sdk_warnings)
    assert hasattr(_fastsdk.FastTracerProvider().get_tracer("t").start_span("s"), "end_as")


class _ZeroIds(IdGenerator):
    """An id generator that breaks the rules: the span contexts it makes are invalid."""

    def generate_span_id(self) -> int:
        return 0

    def generate_trace_id(self) -> int:
        return 0


def test_invalid_generated_ids_make_the_same_span_context(span_path: str) -> None:
    made = [
        cls(id_generator=_ZeroIds()).get_tracer("t").start_span("s").get_span_context()
        for cls in (TracerProvider, _fastsdk.FastTracerProvider)
    ]
    assert made[0] == made[1]
    assert not made[1].is_valid


def test_a_disabled_tracer_gives_the_sdks_non_recording_span(span_path: str) -> None:
    # no span in the context: the SDK's non-recording span carries the invalid span context, not None
    made = [
        cls(_tracer_configurator=lambda scope: _TracerConfig(is_enabled=False))
        .get_tracer("t")
        .start_span("s", context=context.Context())
        .get_span_context()
        for cls in (TracerProvider, _fastsdk.FastTracerProvider)
    ]
    assert made[0] == made[1] == trace.INVALID_SPAN_CONTEXT


def test_a_fast_span_has_exactly_the_sdk_spans_fields(span_path: str) -> None:
    sdk = (
        TracerProvider(resource=RESOURCE)
        .get_tracer("t")
        .start_span("s", links=[Link(SpanContext(1, 2, True))])
    )
    fast = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t").start_span("s")
    assert sorted(vars(fast)) == sorted(vars(sdk))
    lazy = {"_attributes", "_events", "_links"}
    assert {k: type(v) for k, v in vars(fast).items() if k not in lazy} == {
        k: type(v) for k, v in vars(sdk).items() if k not in lazy
    }
    # Events and links are empty tuples until the first one is added, then the SDK's lists.
    assert (fast._events, fast._links) == ((), ())  # type: ignore[attr-defined]
    fast.add_event("e")
    fast.add_link(SpanContext(1, 2, True))
    assert type(fast._events) is type(sdk._events)  # type: ignore[attr-defined]
    assert type(fast._links) is type(sdk._links)  # type: ignore[attr-defined]
    # The ended span's snapshot and the attribute container: the SDK constructors' fields, in their order.
    fast.end()
    readable = fast._readable_span()  # type: ignore[attr-defined]
    assert list(vars(readable)) == list(vars(ReadableSpan("s")))
    assert list(vars(fast._attributes)) == list(vars(BoundedAttributes(3, {"k": "v"}, immutable=False)))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="maxlen must be valid int"):
        _fastsdk._attributes(-1, {"k": "v"}, None)


def test_a_queued_span_or_log_record_leaves_little_for_the_garbage_collector() -> None:
    """An ended span's snapshot and a queued log record hold plain containers (untracked by gc)."""
    span = (
        _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t").start_span("s", attributes={"k": "v"})
    )
    span.end()
    readable = span._readable_span()  # type: ignore[attr-defined]
    assert type(readable._attributes) is dict and not gc.is_tracked(readable._attributes)
    assert readable._events == () and readable._links == ()
    assert dict(readable.attributes) == {"k": "v"} and readable.dropped_attributes == 0


def _queue_one_span_and_one_log_line(
    *user_processors: SpanProcessor, body: Any = "line"
) -> tuple[ReadableSpan, Any, Callable[[], None]]:
    """A span ended and a log line emitted through the C paths; their queued items, and a shutdown."""
    assert _fastsdk._NATIVE_END is not None and _fastlogs._NATIVE_EMIT is not None, "the C extension is built"
    tracer_provider = _fastsdk.FastTracerProvider(resource=RESOURCE)
    spans = _fastsdk.FastBatchSpanProcessor(InMemorySpanExporter(), schedule_delay_millis=60_000)
    tracer_provider.add_span_processor(_pipeline.BusinessKeySpanProcessor())
    tracer_provider.add_span_processor(spans)
    for processor in user_processors:
        tracer_provider.add_span_processor(processor)
    logger_provider = LoggerProvider(resource=RESOURCE)
    logs = _fastlogs.FastBatchLogRecordProcessor(InMemoryLogRecordExporter(), schedule_delay_millis=60_000)
    logger_provider.add_log_record_processor(logs)
    span = tracer_provider.get_tracer("t").start_span("s", attributes={"k": "v"})
    ctx = trace.set_span_in_context(span)
    logged = _fastlogs._NATIVE_EMIT(
        logger_provider.get_logger("l"), 5, SeverityNumber.INFO, "INFO", body, {}, ctx, False
    )
    assert logged is True and _fastsdk._NATIVE_END(span, "renamed", {"n": 1}) is True
    (snapshot,) = spans._batch_processor._queue
    (record,) = logs._batch_processor._queue
    assert (snapshot.name, dict(snapshot.attributes), record.body) == ("renamed", {"k": "v", "n": 1}, body)

    def shutdown() -> None:
        tracer_provider.shutdown()
        logger_provider.shutdown()

    return snapshot, record, shutdown


def test_what_waits_in_the_export_queues_is_freed_by_reference_counting_alone() -> None:
    """The C paths take the queued snapshot, its span context and log record off the garbage collector's lists.

    Left tracked, they reach the oldest generation while they wait for their batch
    and trigger a full collection every few thousand requests.
    """
    snapshot, record, shutdown = _queue_one_span_and_one_log_line()
    tracked = {
        "snapshot": gc.is_tracked(snapshot),
        "its span context": gc.is_tracked(snapshot.context),
        "the log record": gc.is_tracked(record),
    }
    assert tracked == {"snapshot": False, "its span context": False, "the log record": False}
    # what they refer to stays tracked: the collector still sees through them
    assert gc.is_tracked(snapshot.resource) and gc.is_tracked(record.logger)
    shutdown()


class _Keeping(SpanProcessor):
    """A user's processor that hangs a reference cycle on every snapshot it sees."""

    def on_end(self, span: ReadableSpan) -> None:
        span.kept = [span]  # type: ignore[attr-defined]


def test_a_snapshot_a_users_processor_sees_and_a_record_of_another_body_stay_collectable() -> None:
    """Only what no code but ours can put in a cycle is untracked: a cycle through it would never be freed."""
    snapshot, record, shutdown = _queue_one_span_and_one_log_line(_Keeping(), body={"k": ["v"]})
    assert (gc.is_tracked(snapshot), gc.is_tracked(snapshot.context), gc.is_tracked(record)) == (
        True,
        False,
        True,
    )
    gone = weakref.ref(snapshot)
    shutdown()  # exported: only the in-memory exporter (dropped with the providers) and the user's cycle hold it
    del snapshot, record, shutdown
    gc.collect()
    assert gone() is None


class _Stuck(LogRecordExporter):
    """Blocks its first export until it is shut down."""

    takes_queued_log_records = True

    def __init__(self) -> None:
        self.released = threading.Event()
        self.exporting = threading.Event()

    def export(self, batch: Any) -> LogRecordExportResult:
        self.exporting.set()
        self.released.wait(10)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self.released.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_log_records_a_shutdown_leaves_queued_do_not_keep_the_provider_alive() -> None:
    """A queued record leads back to its queue through its logger: the shutdown lets go of what it could not export."""
    provider = LoggerProvider(resource=RESOURCE)
    exporter = _Stuck()
    processor = _fastlogs.FastBatchLogRecordProcessor(
        exporter, schedule_delay_millis=60_000, max_export_batch_size=4
    )
    batch = processor._batch_processor
    batch.shutdown = functools.partial(type(batch).shutdown, batch, 200)  # type: ignore[method-assign]
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("l")
    for n in range(10):
        assert (
            _fastlogs._NATIVE_EMIT(logger, n, SeverityNumber.INFO, "INFO", "line", {}, Context(), False)
            is True
        )
    assert exporter.exporting.wait(5)  # the export thread holds the first 4, stuck; 6 wait in the queue
    assert all(not gc.is_tracked(item) for item in batch._queue)
    provider.shutdown()  # gives up after 200 ms
    assert len(batch._queue) == 0
    worker = batch._worker_thread
    worker.join(5)
    gone = weakref.ref(provider)
    del provider, processor, batch, logger
    gc.collect()
    assert (worker.is_alive(), gone()) == (False, None)


def test_fast_spans_take_the_fast_path() -> None:
    provider = _fastsdk.FastTracerProvider(resource=RESOURCE)
    span = provider.get_tracer("t").start_span("s", attributes={"k": "v"})
    assert type(span).__name__ == "_FastSpan"
    assert type(span._attributes).__name__ == "_FastAttributes"  # type: ignore[attr-defined]
    span.end()
    provider.shutdown()


class _Ratio(sampling.TraceIdRatioBased):
    """The SDK's ratio sampler under another name: its decisions are its own, so the C start leaves them."""


def _patched(sampler: sampling.Sampler) -> sampling.Sampler:
    sampler.should_sample = functools.partial(sampling.ALWAYS_OFF.should_sample)  # type: ignore[method-assign]
    return sampler


def _start_cases() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Span starts the C code leaves to the Python method: (provider keywords, start_span keywords)."""
    remote = SpanContext(0xFEED, 0xBEEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    return {
        "a link": ({}, {"links": [Link(SpanContext(1, 2, True))]}),
        "a sampler of another type": ({"sampler": _RecordOnly()}, {}),
        "a subclass of the ratio sampler": ({"sampler": _Ratio(0.5)}, {}),
        "a should_sample set on the sampler": ({"sampler": _patched(sampling.TraceIdRatioBased(0.5))}, {}),
        "a static record-only sampler": (
            {"sampler": sampling.StaticSampler(sampling.Decision.RECORD_ONLY)},
            {},
        ),
        "a parent-based root of a parent-based": ({"sampler": sampling.ParentBased(sampling.DEFAULT_ON)}, {}),
        "another id generator": ({"id_generator": _Counting()}, {}),
        "a value-length limit": ({"span_limits": SpanLimits(max_span_attribute_length=8)}, {}),
        "more attributes than the limit": (
            {"span_limits": SpanLimits(max_span_attributes=1)},
            {"attributes": {"a": 1, "b": 2}},
        ),
        "a value to clean": ({}, {"attributes": {"a": ["x"]}}),
        "a key that is not a str": ({}, {"attributes": {1: "x"}}),
        "attributes that are not a dict": ({}, {"attributes": collections.OrderedDict(a=1)}),
        "an unsampled parent of another sampler": (
            {"sampler": _RecordOnly()},
            {"context": trace.set_span_in_context(trace.NonRecordingSpan(remote))},
        ),
        "a disabled tracer": ({"_tracer_configurator": lambda scope: _TracerConfig(is_enabled=False)}, {}),
        "no resource": ({}, {}),  # resource=None is set on the tracer below
    }


@pytest.mark.parametrize("case", list(_start_cases()))
def test_the_c_start_leaves_anything_unusual_to_python_before_drawing_an_id(case: str) -> None:
    provider_kwargs, start_kwargs = _start_cases()[case]
    tracer = _fastsdk.FastTracerProvider(**{"resource": RESOURCE, **provider_kwargs}).get_tracer("t")
    if case == "no resource":
        tracer.resource = None  # type: ignore[attr-defined]
    arguments = {"context": None, "kind": SpanKind.INTERNAL, "attributes": None, "links": (), **start_kwargs}
    drawn = random.getstate()
    made = _fastsdk._NATIVE_START(
        tracer,
        "s",
        arguments["context"],
        arguments["kind"],
        arguments["attributes"],
        arguments["links"],
        None,
        True,
        True,
    )
    assert made is None
    assert random.getstate() == drawn  # nothing drawn: the Python method draws the same ids the SDK would
    # and the usual case, with the same tracer type and a plain provider, is the C code's
    usual = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t")
    span = _fastsdk._NATIVE_START(
        usual, "s", None, SpanKind.SERVER, {"a": 1, "b": "x"}, None, None, True, True
    )
    assert type(span) is _fastsdk._FastSpan and dict(span.attributes) == {"a": 1, "b": "x"}


_SDK_SAMPLERS = {
    "parentbased_always_on": sampling.DEFAULT_ON,
    "parentbased_always_off": sampling.DEFAULT_OFF,
    "always_on": sampling.ALWAYS_ON,
    "always_off": sampling.ALWAYS_OFF,
    "traceidratio": sampling.TraceIdRatioBased(0.5),
    "parentbased_traceidratio": sampling.ParentBasedTraceIdRatio(0.5),
    # what the SDK's entry points make of OTEL_TRACES_SAMPLER under opentelemetry-instrument
    "entry point always_on": sampling._AlwaysOn(None),
    "entry point parentbased_always_off": sampling._ParentBasedAlwaysOff(None),
    "ratio 1.0": sampling.ParentBasedTraceIdRatio(1.0),
    "ratio 0.0": sampling.TraceIdRatioBased(0.0),
    "every delegate swapped": sampling.ParentBased(
        sampling.TraceIdRatioBased(0.25),
        remote_parent_sampled=sampling.ALWAYS_OFF,
        remote_parent_not_sampled=sampling.TraceIdRatioBased(0.75),
        local_parent_sampled=sampling.TraceIdRatioBased(0.5),
        local_parent_not_sampled=sampling.ALWAYS_ON,
    ),
}


def _parents() -> list[Context | None]:
    """No parent, and parents remote and local, sampled and not, with and without the random bit and a state."""
    state = trace.TraceState([("vendor", "x")])
    made: list[Context | None] = [None, trace.set_span_in_context(trace.INVALID_SPAN)]
    for remote, flags, trace_state in itertools.product(
        (True, False), (0, 1, 2, 3), (trace.DEFAULT_TRACE_STATE, state)
    ):
        for trace_id in (0xFEED, 0xFFFF_FFFF_FFFF_FFFF_0000_0000_0000_0001, 0x1234_8000_0000_0000_0000):
            parent = SpanContext(
                trace_id, 0xBEEF, is_remote=remote, trace_flags=TraceFlags(flags), trace_state=trace_state
            )
            made.append(trace.set_span_in_context(trace.NonRecordingSpan(parent)))
    return made


def _started(span: trace.Span) -> tuple[Any, ...]:
    c = span.get_span_context()
    kind = (
        "not recorded" if type(span) is trace.NonRecordingSpan else "recorded" if span.is_recording() else "?"
    )
    return (
        kind,
        c.trace_id,
        c.span_id,
        int(c.trace_flags),
        c.trace_state,
        c.is_remote,
    )


@pytest.mark.parametrize("name", list(_SDK_SAMPLERS))
def test_the_c_start_decides_for_the_sdks_samplers_as_they_do(name: str) -> None:
    """Every parent kind and 200 random roots: C and the SDK start the same span, sampled or not, with the same ids."""
    sampler = _SDK_SAMPLERS[name]
    parents = _parents() + [None] * 200
    made: dict[str, list[tuple[Any, ...]]] = {}
    for path in ("sdk", "c"):
        tracer = (TracerProvider if path == "sdk" else _fastsdk.FastTracerProvider)(
            resource=RESOURCE, sampler=sampler
        ).get_tracer("t")
        state = random.getstate()
        random.seed(23)
        try:
            spans = []
            for parent in parents:
                if path == "sdk":
                    span = tracer.start_span("s", context=parent, kind=SpanKind.SERVER, attributes={"k": "v"})
                else:
                    span = _fastsdk._NATIVE_START(
                        tracer, "s", parent, SpanKind.SERVER, {"k": "v"}, (), None, True, True
                    )
                    assert span is not None, "the C start decides for the SDK's own samplers"
                spans.append(span)
        finally:
            random.setstate(state)
        made[path] = [_started(span) for span in spans]
        assert [dict(span.attributes) for span in spans if span.is_recording()] == [{"k": "v"}] * sum(
            1 for span in spans if span.is_recording()
        )
    assert made["c"] == made["sdk"]
    sampled = sum(1 for started in made["sdk"] if started[0] == "recorded")
    assert 0 < sampled < len(parents) or name in {
        "always_on",
        "always_off",
        "ratio 0.0",
        "entry point always_on",
    }


def test_spans_the_c_code_starts_have_the_python_methods_fields_in_its_order() -> None:
    made = []
    for native in (_fastsdk._NATIVE_START, None):
        tracer = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t")
        original = _fastsdk._NATIVE_START
        _fastsdk._NATIVE_START = native
        try:
            span = tracer.start_span("s", kind=SpanKind.SERVER, attributes={"k": "v"})
        finally:
            _fastsdk._NATIVE_START = original
        made.append(span)
    c_made, python_made = made
    assert list(vars(c_made)) == list(vars(python_made))
    assert {k: type(v) for k, v in vars(c_made).items()} == {k: type(v) for k, v in vars(python_made).items()}
    assert list(vars(c_made._attributes)) == list(vars(python_made._attributes))  # type: ignore[attr-defined]
    assert vars(c_made._attributes)["_dict"] is not None and c_made._lock is not c_made._attributes._lock  # type: ignore[attr-defined]
    assert c_made._attributes._dict == {"k": "v"} and not c_made._attributes._immutable  # type: ignore[attr-defined]


def test_a_patched_clock_starts_spans_on_both_paths(span_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import opentelemetry.sdk.trace as sdk_trace

    monkeypatch.setattr(sdk_trace, "time_ns", lambda: 42)
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        assert cls().get_tracer("t").start_span("s").start_time == 42
        assert cls().get_tracer("t").start_span("s", start_time=7).start_time == 7


class _StartRecorder(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[tuple[str, Any, int | None]] = []

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.started.append((span.name, parent_context, span.start_time))


def test_span_processors_see_each_start_with_its_context_on_both_paths(span_path: str) -> None:
    made = []
    ctx = context.Context()
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        provider = cls()
        recorder = _StartRecorder()
        provider.add_span_processor(recorder)
        tracer = provider.get_tracer("t")
        tracer.start_span("given", context=ctx)
        tracer.start_span("current", start_time=5)
        made.append([(name, parent, start is not None) for name, parent, start in recorder.started])
        assert recorder.started[1][2] == 5
    assert made[0] == made[1] == [("given", ctx, True), ("current", None, True)]


def _random_starts(provider: TracerProvider, seed: int) -> None:
    """Spans started from seeded random input: parents, kinds, start times and attributes, plain or not."""
    draw = random.Random(seed)  # the input; the global random draws the ids
    tracer = provider.get_tracer("random", "1.0")
    values: list[Any] = ["v", "", 0, -3, 2**70, 1.5, -0.0, True, False, None, ["a"], (1, 2), b"x", object()]
    keys: list[Any] = ["a", "b", "c", "requestId", "", 7]
    started: list[Any] = []
    for i in range(60):
        attributes: Any = None
        if draw.random() < 0.8:
            attributes = {draw.choice(keys): draw.choice(values) for _ in range(draw.randrange(0, 5))}
        roll = draw.random()
        if roll < 0.3 or not started:
            parent_ctx = None
        elif roll < 0.5:
            parent_ctx = context.Context()
        elif roll < 0.7:
            flags = TraceFlags(draw.choice([0, 1, 2, 3, 0x81]))
            remote = SpanContext(draw.randrange(1, 2**128), draw.randrange(1, 2**64), True, flags)
            parent_ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        else:
            parent_ctx = trace.set_span_in_context(draw.choice(started))
        span = tracer.start_span(
            f"span-{i}",
            context=parent_ctx,
            kind=draw.choice(list(SpanKind)),
            attributes=attributes,
            start_time=draw.choice([None, 1_000 + i]),
        )
        started.append(span)
    for i, span in enumerate(reversed(started)):
        if i % 3 == 0:
            span.end()
            continue
        ended: dict[Any, Any] = {draw.choice(keys): draw.choice(values) for _ in range(draw.randrange(0, 4))}
        if draw.random() < 0.5:
            ended = {k: v for k, v in ended.items() if type(v) in (str, int, float, bool) and k}
        end_server_span(span, draw.choice([None, f"renamed-{i}"]), ended)  # end_as where the span has it


@pytest.mark.parametrize("seed", range(4))
def test_randomly_started_spans_are_the_sdks_on_both_paths(seed: int, span_path: str) -> None:
    def script(provider: TracerProvider) -> None:
        _random_starts(provider, seed)

    for limits in (None, SpanLimits(max_span_attributes=2)):
        expected = _spans(TracerProvider, limits, script=script, ids="random")
        assert _spans(_fastsdk.FastTracerProvider, limits, script=script, ids="random") == expected
        assert 30 < len(expected) <= 60  # the unsampled ones are not exported


def _references(span: Any) -> list[int]:
    """How many references hold the span's lock, attribute container and its lock."""
    return [
        sys.getrefcount(span._lock),
        sys.getrefcount(span._attributes),
        sys.getrefcount(span._attributes._lock),
    ]


class _EndRecorder(SpanProcessor):
    def __init__(self) -> None:
        self.ending: Any = None
        self.ended: list[tuple[Any, Any]] = []

    def _on_ending(self, span: Any) -> None:
        self.ending = span

    def on_end(self, span: Any) -> None:
        self.ended.append((self.ending, span))
        self.ending = None


def test_the_c_end_ends_live_spans_with_plain_attributes_and_leaves_the_rest_to_end_as() -> None:
    provider = _fastsdk.FastTracerProvider(resource=RESOURCE)
    recorder = _EndRecorder()
    provider.add_span_processor(recorder)
    tracer = provider.get_tracer("t")
    span = tracer.start_span("s", attributes={"a": 1, "b": "x"})
    assert _fastsdk._NATIVE_END(span, "renamed", {"a": 2, "c": True}) is True
    assert (span.name, list(span.attributes.items())) == ("renamed", [("b", "x"), ("a", 2), ("c", True)])
    assert span.end_time is not None and not span.is_recording()
    assert span._attributes._immutable  # type: ignore[attr-defined]
    # _on_ending saw the span, on_end its snapshot, holding a plain dict (untracked by gc)
    ((ending, snapshot),) = recorder.ended
    assert ending is span and type(snapshot) is ReadableSpan and type(snapshot._attributes) is dict
    assert (snapshot.name, dict(snapshot.attributes), snapshot.end_time) == (
        "renamed",
        dict(span.attributes),
        span.end_time,
    )
    recorder.ended.clear()
    del ending, snapshot
    # nothing kept but the span's own references: as many as a span the Python method ended
    python_ended = tracer.start_span("s", attributes={"a": 1, "b": "x"})
    original, _fastsdk._NATIVE_END = _fastsdk._NATIVE_END, None
    try:
        end_server_span(python_ended, "renamed", {"a": 2, "c": True})
    finally:
        _fastsdk._NATIVE_END = original
    recorder.ended.clear()
    assert _references(span) == _references(python_ended)
    ended_at = span.end_time
    limited = _fastsdk.FastTracerProvider(resource=RESOURCE, span_limits=SpanLimits(max_span_attributes=2))
    cases = {
        "ended": span,
        "not plain": tracer.start_span("s"),
        "over the limit": limited.get_tracer("t").start_span("s", attributes={"a": 1, "b": 2}),
        "not a fast span": TracerProvider().get_tracer("t").start_span("s"),
    }
    for case, target in cases.items():
        before = (target.name, dict(target.attributes), target.end_time)  # type: ignore[attr-defined]
        ending = {"v": ["list"]} if case == "not plain" else {"c": 3}
        assert _fastsdk._NATIVE_END(target, "other", ending) is False, case
        assert (target.name, dict(target.attributes), target.end_time) == before, case  # type: ignore[attr-defined]
    assert span.end_time == ended_at


class _Meddling(trace.NonRecordingSpan):
    """A parent span type the fast tracer does not know: asked for its context, it changes the new span's attributes."""

    def __init__(self, attributes: dict[str, Any]) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.attributes = attributes

    def get_span_context(self) -> SpanContext:
        self.attributes["list"] = ["not", "plain"]
        self.attributes["extra"] = 1
        return super().get_span_context()


class _MeddlingLock:
    """A span lock whose acquire changes the attributes the span is about to end with."""

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.lock, self.attributes = threading.Lock(), attributes

    def acquire(self) -> bool:
        self.attributes["list"] = ["not", "plain"]
        return self.lock.acquire()

    def release(self) -> None:
        self.lock.release()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_attributes_changed_while_a_span_starts_or_ends_are_checked_when_stored(span_path: str) -> None:
    """Python code runs between the C code's first look at the attributes and their store; the store decides."""
    made = []
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        tracer = cls(resource=RESOURCE, span_limits=SpanLimits(max_span_attributes=3)).get_tracer("t")
        attributes = {"a": 1, "b": 2}
        span = tracer.start_span(
            "s", context=trace.set_span_in_context(_Meddling(attributes)), attributes=attributes
        )
        started = (list(span.attributes.items()), span.dropped_attributes)  # type: ignore[attr-defined]
        span = tracer.start_span("e", attributes={"a": 1})
        ending: dict[str, Any] = {"c": 3}
        span._lock = _MeddlingLock(ending)  # type: ignore[attr-defined]
        end_server_span(span, "ended", ending)
        made.append((started, list(span.attributes.items()), span.dropped_attributes))  # type: ignore[attr-defined]
    assert made[0] == made[1]
    assert made[1][0][1] == 1  # four attributes for three places when the span started
    assert made[1][1] == [("a", 1), ("c", 3), ("list", ("not", "plain"))]  # cleaned: the list became a tuple


def test_ending_attributes_changed_by_a_stored_keys_comparison_raise_as_in_python(span_path: str) -> None:
    """A str-subclass key on the span runs Python code when compared: the ending dict may change under the walk."""

    class Emptying(str):
        __hash__ = str.__hash__

        def __eq__(self, other: object) -> bool:
            ending.clear()
            return str.__eq__(self, other)

    span = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t").start_span("s")
    span.set_attribute(Emptying("k"), 1)
    ending = {"k": float("".join(["1.", "5"])) * 3, "z": 7}  # the float lives only in the dict
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        span.end_as(None, ending)  # type: ignore[attr-defined]
    assert list(span.attributes.items()) == [("k", 4.5)] and span.end_time is None  # type: ignore[attr-defined]


def test_ending_with_the_spans_own_attributes_raises_as_in_python(span_path: str) -> None:
    span = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t").start_span("s", attributes={"a": 1})
    with pytest.raises(RuntimeError, match="changed during iteration"):
        span.end_as("renamed", span._attributes._dict)  # type: ignore[attr-defined]
    assert span.end_time is None  # type: ignore[attr-defined]


def test_on_end_goes_to_the_processor_the_span_has_after_on_ending(span_path: str) -> None:
    calls: list[tuple[str, str]] = []

    class Swapping(SpanProcessor):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def _on_ending(self, span: Any) -> None:
            calls.append(("_on_ending", self.tag))
            span._span_processor = Swapping("replacement")

        def on_end(self, span: Any) -> None:
            calls.append(("on_end", self.tag))

    tracer = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t")
    tracer.span_processor = Swapping("original")  # type: ignore[attr-defined]
    end_server_span(tracer.start_span("s"), None, {})
    assert calls == [("_on_ending", "original"), ("on_end", "replacement")]


def test_only_methods_that_do_nothing_are_skipped_by_the_span_processor_dispatch() -> None:
    def documented(self: Any, span: Any) -> None:
        """Only a docstring."""

    def bare(self: Any, span: Any, parent_context: Any = None) -> None:
        pass

    def returns_none(self: Any) -> None:
        return None

    def works(self: Any, span: Any) -> None:
        span.touched = True

    def generator(self: Any) -> Any:
        yield

    async def coroutine(self: Any) -> None:
        pass

    checked = [documented, bare, returns_none, works, generator, coroutine, print, lambda: None]
    assert [_fastsdk.does_nothing(f) for f in checked] == [True, True, True, False, False, False, False, True]
    registered = _fastsdk._EMPTY_SPAN_METHODS
    assert (SpanProcessor.on_start, SpanProcessor.on_start.__code__) in registered["on_start"]
    assert [f for f, _ in registered["on_end"]] == [
        SpanProcessor.on_end,
        _pipeline.BusinessKeySpanProcessor.on_end,
    ]
    assert all(
        _fastsdk.does_nothing(f) and code is f.__code__ for pairs in registered.values() for f, code in pairs
    )

    # registered under its own name, only when empty and when the SDK's call binds to it
    def on_start(self: Any, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self: Any) -> None:  # the SDK's call passes the span: it would raise
        pass

    works.__name__ = "_on_ending"
    before = {name: list(pairs) for name, pairs in registered.items()}
    try:
        _fastsdk.ignore_empty_span_methods(on_start, on_end, works, bare)
        assert {name: len(pairs) - len(before[name]) for name, pairs in registered.items()} == {
            "on_start": 1,
            "_on_ending": 0,
            "on_end": 0,
        }
    finally:
        registered.update(before)
        _fastsdk.ignore_empty_span_methods()


class _CallRecorder(SpanProcessor):
    def __init__(self, tag: str, calls: list[tuple[str, ...]]) -> None:
        self.tag, self.calls = tag, calls

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.calls.append((self.tag, "on_start", span.name, parent_context))

    def _on_ending(self, span: Any) -> None:
        self.calls.append((self.tag, "_on_ending", span.name, span.end_time is not None))

    def on_end(self, span: Any) -> None:
        self.calls.append((self.tag, "on_end", span.name, type(span).__name__))


def test_every_span_processor_is_called_in_order_around_ours_on_both_paths(span_path: str) -> None:
    made = []
    parent = _pipeline._context.with_keys({"orderId": "A-1"}, context.Context())
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        calls: list[tuple[str, ...]] = []
        exporter = InMemorySpanExporter()
        provider = cls(resource=RESOURCE)
        provider.add_span_processor(_CallRecorder("first", calls))
        provider.add_span_processor(_pipeline.BusinessKeySpanProcessor())
        provider.add_span_processor(_fastsdk.FastBatchSpanProcessor(exporter))
        provider.add_span_processor(_CallRecorder("last", calls))
        end_server_span(provider.get_tracer("t").start_span("s", context=parent), "renamed", {"a": 1})
        provider.force_flush()
        made.append((calls, [(s.name, dict(s.attributes)) for s in exporter.get_finished_spans()]))
        provider.shutdown()
    assert (
        made[0]
        == made[1]
        == (
            [
                ("first", "on_start", "s", parent),
                ("last", "on_start", "s", parent),
                ("first", "_on_ending", "renamed", True),
                ("last", "_on_ending", "renamed", True),
                ("first", "on_end", "renamed", "ReadableSpan"),
                ("last", "on_end", "renamed", "ReadableSpan"),
            ],
            [("renamed", {"orderId": "A-1", "a": 1})],
        )
    )


def test_a_span_processor_method_replaced_on_a_class_or_an_instance_is_called(
    span_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []

    class OwnEnd(_fastsdk.FastBatchSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            calls.append(("subclass on_end", span.name))
            super().on_end(span)

    exporter = InMemorySpanExporter()
    keys, batch = _pipeline.BusinessKeySpanProcessor(), OwnEnd(exporter)
    provider = _fastsdk.FastTracerProvider(resource=RESOURCE)
    provider.add_span_processor(keys)
    provider.add_span_processor(batch)
    monkeypatch.setattr(
        BatchSpanProcessor,
        "on_start",
        lambda self, span, parent_context=None: calls.append(("class on_start", span.name)),
    )
    monkeypatch.setattr(
        batch, "_on_ending", lambda span: calls.append(("instance _on_ending", span.name)), raising=False
    )
    monkeypatch.setattr(
        keys, "on_end", lambda span: calls.append(("instance on_end", span.name)), raising=False
    )
    end_server_span(provider.get_tracer("t").start_span("s"), None, {})
    provider.force_flush()
    assert calls == [
        ("class on_start", "s"),
        ("instance _on_ending", "s"),
        ("instance on_end", "s"),
        ("subclass on_end", "s"),
    ]
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]
    provider.shutdown()


def test_an_empty_method_the_sdks_call_does_not_fit_still_raises_on_both_paths(span_path: str) -> None:
    class Misfit(SpanProcessor):
        on_start = _pipeline.BusinessKeySpanProcessor.on_end  # empty, but takes no parent_context

    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        provider = cls(resource=RESOURCE)
        provider.add_span_processor(Misfit())
        with pytest.raises(TypeError, match="parent_context"):
            provider.get_tracer("t").start_span("s")


def test_an_empty_method_given_other_code_is_called_on_both_paths(
    span_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def on_start(self: Any, span: Any, parent_context: Any = None) -> None:
        span.set_attribute("seen", True)

    monkeypatch.setattr(BatchSpanProcessor.on_start, "__code__", on_start.__code__)
    provider = _fastsdk.FastTracerProvider(resource=RESOURCE)
    provider.add_span_processor(_fastsdk.FastBatchSpanProcessor(InMemorySpanExporter()))
    assert provider.get_tracer("t").start_span("s").attributes == {"seen": True}
    provider.shutdown()


@pytest.mark.parametrize("method", ["on_start", "_on_ending", "on_end"])
def test_a_raising_span_processor_stops_the_later_ones_on_both_paths(
    method: str, span_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = []
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        calls: list[tuple[str, ...]] = []
        first, last = _CallRecorder("first", calls), _CallRecorder("last", calls)

        def fail(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"{method} failed")

        monkeypatch.setattr(first, method, fail)
        provider = cls(resource=RESOURCE)
        provider.add_span_processor(first)
        provider.add_span_processor(_fastsdk.FastBatchSpanProcessor(InMemorySpanExporter()))
        provider.add_span_processor(last)
        with pytest.raises(RuntimeError, match=f"{method} failed"):
            end_server_span(provider.get_tracer("t").start_span("s"), None, {"a": 1})
        made.append([call[:2] for call in calls])
    assert made[0] == made[1]
    assert ("last", method) not in made[1]


def test_unsampled_spans_ended_by_a_server_are_not_queued_on_both_paths(span_path: str) -> None:
    exported = []
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        exporter = InMemorySpanExporter()
        provider = cls(resource=RESOURCE, sampler=_RecordOnly())
        provider.add_span_processor(_fastsdk.FastBatchSpanProcessor(exporter))
        span = provider.get_tracer("t").start_span("s")
        assert span.is_recording()
        end_server_span(span, "renamed", {"a": 1})
        provider.force_flush()
        exported.append(exporter.get_finished_spans())
        provider.shutdown()
    assert exported == [(), ()]


def test_a_tracers_own_enabled_check_is_asked_on_both_paths(span_path: str) -> None:
    tracer = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t")
    tracer._is_enabled = lambda: False  # type: ignore[method-assign]
    assert not tracer.start_span("s").is_recording()
    del tracer._is_enabled
    assert tracer.start_span("s").is_recording()


def test_the_sdks_own_span_metrics_are_recorded_on_both_paths(
    span_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    made = []
    for cls in (TracerProvider, _fastsdk.FastTracerProvider):
        reader = InMemoryMetricReader()
        provider = cls(resource=RESOURCE, meter_provider=MeterProvider(metric_readers=[reader]))
        tracer = provider.get_tracer("t")
        ended = tracer.start_span("ended")
        end_server_span(ended, None, {"a": 1})
        tracer.start_span("live")
        made.append(
            sorted(
                (metric.name, dict(point.attributes), point.value)
                for resource_metrics in reader.get_metrics_data().resource_metrics
                for scope_metrics in resource_metrics.scope_metrics
                for metric in scope_metrics.metrics
                for point in metric.data.data_points
            )
        )
    assert made[0] == made[1]
    assert [(name, value) for name, _, value in made[1]] == [
        ("otel.sdk.span.live", 1),
        ("otel.sdk.span.started", 2),
    ]


def test_the_default_span_processors_cost_no_python_call_but_the_key_lookup() -> None:
    """The C start and end run the SDK's multi processor, the no-op methods and the batch queueing themselves."""
    exporter = InMemorySpanExporter()
    provider = _fastsdk.FastTracerProvider(resource=RESOURCE)
    provider.add_span_processor(_pipeline.BusinessKeySpanProcessor())
    provider.add_span_processor(_fastsdk.FastBatchSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    called: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            called.append(frame.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        end_server_span(tracer.start_span("s", context=context.Context()), None, {"a": 1})
    finally:
        sys.setprofile(None)
    # end_server_span calls the C end itself, without end_as's frame
    assert called[:3] == ["_FastTracer.start_span", "BusinessKeySpanProcessor.on_start", "end_server_span"]
    assert called[3:] in (["profile"], [])  # setprofile(None) itself, on some versions
    provider.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]
    provider.shutdown()


def test_a_failing_read_is_raised_by_the_c_start_as_by_python(span_path: str) -> None:
    tracer = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t")
    del tracer.instrumentation_info  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="instrumentation_info"):
        tracer.start_span("s")


def test_the_c_start_and_end_keep_no_reference_they_do_not_own() -> None:
    tracer = _fastsdk.FastTracerProvider(resource=RESOURCE).get_tracer("t")
    declining = _fastsdk.FastTracerProvider(resource=RESOURCE, sampler=_RecordOnly()).get_tracer("t")
    ratio = sampling.ParentBasedTraceIdRatio(0.5)
    by_ratio = _fastsdk.FastTracerProvider(resource=RESOURCE, sampler=ratio).get_tracer("t")
    name, attributes = "counted-name", {"k": "v"}
    remote = trace.NonRecordingSpan(SpanContext(5, 6, True, TraceFlags(1)))
    parent = trace.set_span_in_context(remote)
    unsampled = trace.set_span_in_context(trace.NonRecordingSpan(SpanContext(5, 6, True, TraceFlags(0))))
    watched = [
        *(name, attributes, parent, remote, remote.get_span_context(), SpanKind.SERVER, RESOURCE),
        tracer.span_processor,
        *(sampling.ALWAYS_ON, _fastsdk._FLAGS[True, False], _fastsdk._DEFAULT_TRACE_STATE, _fastsdk._UNSET),
        *(
            ratio,
            ratio._root,
            sampling.ALWAYS_OFF,
            sampling.Decision.DROP,
            _fastsdk._FLAGS[False, False],
            unsampled,
        ),
    ]
    ending, renamed = {"e": 1}, "counted-end"
    watched += [ending, renamed]

    def start_and_end() -> None:
        span = _fastsdk._NATIVE_START(tracer, name, parent, SpanKind.SERVER, attributes, (), None, True, True)
        assert _fastsdk._NATIVE_END(span, renamed, ending) is True
        assert _fastsdk._NATIVE_END(span, renamed, ending) is False  # ended: end_as decides

    for _ in range(50):  # warm: first-use caches
        start_and_end()
    gc.collect()
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(2000):
        start_and_end()
        assert (
            _fastsdk._NATIVE_START(declining, name, parent, SpanKind.SERVER, attributes, (), None, True, True)
            is None
        )
        for context_ in (None, unsampled):  # the ratio's roots, sampled or not, and a dropped child
            made = _fastsdk._NATIVE_START(
                by_ratio, name, context_, SpanKind.SERVER, attributes, (), None, True, True
            )
            if made.is_recording():
                made.end()
        del made, context_
    gc.collect()
    assert [sys.getrefcount(obj) for obj in watched] == before


# --------------------------------------------------------------------------- metrics


@pytest.fixture(params=["c", "python"], ids=["c-record", "python-record"])
def record_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each metric test twice: through the C ``record`` (built in this venv) and through ``_record`` alone."""
    if request.param == "c":
        assert _fastsdk._NATIVE_RECORD is not None, "the C extension is built in this venv"
    else:
        monkeypatch.setattr(_fastsdk, "_NATIVE_RECORD", None)
    return str(request.param)


def _data_points(reader: InMemoryMetricReader) -> list[Any]:
    """The data points of the one metric the reader collects now."""
    data = reader.get_metrics_data()
    assert data is not None
    return list(data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points)  # type: ignore[union-attr]


def _metric_script(provider: MeterProvider) -> None:
    meter = provider.get_meter("script", "1.0")
    counter = meter.create_counter("orders", unit="{order}")
    updown = meter.create_up_down_counter("in_flight")
    histogram = meter.create_histogram("latency", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0])
    gauge = meter.create_gauge("temperature")
    ctx = _in_sampled_span()
    for value in (1, 2, 3):
        counter.add(value, {"result": "hit", "orderId": f"ORD-{value}", "requestId": "r1"}, context=ctx)
    counter.add(1, {"flag": True})
    counter.add(1, {"flag": 1})
    counter.add(1, {"flag": 1.0})
    counter.add(1, {"list": ["a", "b"]})
    counter.add(1, {"b": "2", "a": "1"})
    counter.add(1, {"a": "1", "b": "2"})  # the same series, keys in another order
    counter.add(1)
    counter.add(1, {})
    counter.add(-1, {"result": "hit"})  # ignored, with the SDK's warning
    counter.add(math.nan)
    counter.add(True)  # type: ignore[arg-type]
    updown.add(-3, {"queue": "a"})
    updown.add(5, {"queue": "a"})
    updown.add(math.inf, {"queue": "a"})
    histogram.record(0.05, {"route": "/orders/{id}", "status": 200, "orderId": "ORD-9"}, context=ctx)
    histogram.record(0.5, {"route": "/orders/{id}", "status": 200}, context=ctx)
    histogram.record(5.0, {"route": "/orders/{id}", "status": 500})
    unsampled = trace.set_span_in_context(
        trace.NonRecordingSpan(SpanContext(0xFEED, 0xD00D, is_remote=False))
    )
    histogram.record(7.0, {"route": "/orders/{id}", "status": 500}, context=unsampled)  # no exemplar
    counter.add(1, {"result": "miss"}, context=unsampled)
    histogram.record(-1.0)
    gauge.set(-4.5, {"room": "a"})
    gauge.set(21, {"room": "a"})


def _metrics(provider_class: type[MeterProvider]) -> list[dict[str, Any]]:
    """The script's metrics as two readers see them: cumulative, and delta collected twice."""
    cumulative = InMemoryMetricReader()
    delta = InMemoryMetricReader(
        preferred_temporality={
            instrument: AggregationTemporality.DELTA
            for instrument in (Counter, UpDownCounter, Histogram, ObservableCounter)
        }
    )
    provider = provider_class(
        resource=RESOURCE, metric_readers=[cumulative, delta], views=[_pipeline.metric_guard_view()]
    )
    _metric_script(provider)
    first_delta = delta.get_metrics_data()
    _metric_script(provider)  # every attribute set again: now through what the first run remembered
    metrics = [
        dict(json.loads(metric.to_json()), reader=name)
        for name, data in (
            ("delta-1", first_delta),
            ("delta-2", delta.get_metrics_data()),
            ("cumulative", cumulative.get_metrics_data()),
        )
        if data is not None
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    ]
    assert {metric["reader"] for metric in metrics} == {"delta-1", "delta-2", "cumulative"}
    provider.shutdown()
    for metric in metrics:  # data point order is the order series first appeared: compare as sets
        metric["data"]["data_points"].sort(key=lambda point: json.dumps(point["attributes"], sort_keys=True))
    return metrics


def _without_sampled_exemplars(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sums keep one randomly chosen exemplar (the SDK's reservoir); histograms keep the last per bucket."""
    for metric in metrics:
        if "bucket_counts" not in json.dumps(metric):
            for point in metric["data"]["data_points"]:
                point["exemplars"] = len(point["exemplars"])
    return metrics


def test_a_remembered_series_sums_like_the_sdk() -> None:
    """The inline sum starts a fresh delta period at 0 as the SDK does: 0 + -0.0 is 0.0, not -0.0."""
    signs = []
    for provider_class in (MeterProvider, _fastsdk.FastMeterProvider):
        reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
        provider = provider_class(metric_readers=[reader])
        counter = provider.get_meter("m").create_counter("c")
        period = []
        for _ in range(2):  # the second period goes through the remembered aggregation
            counter.add(-0.0, {"zero": "signed"})
            [point] = _data_points(reader)
            period.append(math.copysign(1.0, point.value))
        signs.append(period)
        provider.shutdown()
    assert signs[1] == signs[0] == [1.0, 1.0]


@pytest.mark.parametrize("routes", [2048, 1, 0], ids=["remembered", "one-remembered", "none-remembered"])
def test_metrics_are_the_sdks_metrics(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, routes: int, record_path: str
) -> None:
    monkeypatch.setattr(_fastsdk, "_ROUTES_PER_INSTRUMENT", routes)
    with caplog.at_level(logging.WARNING):
        expected = _metrics(MeterProvider)
        sdk_warnings = sorted(r.getMessage() for r in caplog.records)
        caplog.clear()
        got = _metrics(_fastsdk.FastMeterProvider)
        assert sorted(r.getMessage() for r in caplog.records) == sdk_warnings
    assert _record(_without_sampled_exemplars(json.loads(json.dumps(got)))) == _record(
        _without_sampled_exemplars(expected)
    )
    by_name = {m["name"]: m for m in got if m["reader"] == "cumulative"}
    orders = by_name["orders"]["data"]["data_points"]
    # The business keys are on no series and on the exemplars of the first series.
    assert not any("orderId" in point["attributes"] for point in orders)
    hit = next(point for point in orders if point["attributes"] == {"result": "hit"})
    assert hit["value"] == 12  # 1 + 2 + 3, twice: three orderIds, one series
    assert {e["filtered_attributes"]["orderId"] for e in hit["exemplars"]} <= {"ORD-1", "ORD-2", "ORD-3"}
    flags = [point["attributes"]["flag"] for point in orders if "flag" in point["attributes"]]
    assert sorted(map(repr, flags)) == ["1", "1.0", "True"]  # three series, as in the SDK


def test_a_remembered_series_is_recorded_by_the_c_code() -> None:
    """The first measurement of a series is the Python path's; the next ones the C record's."""
    record = _fastsdk._NATIVE_RECORD
    assert record is not None
    reader = InMemoryMetricReader()
    provider = _fastsdk.FastMeterProvider(metric_readers=[reader])
    meter = provider.get_meter("m")
    counter, histogram = meter.create_counter("c"), meter.create_histogram("h")
    ctx = _in_sampled_span()
    assert record(counter, 1, 1, {"k": "v"}, ctx) is False  # a new series
    counter.add(1, {"k": "v"}, context=ctx)
    assert record(counter, 2, 2, {"k": "v"}, ctx) is True
    assert record(counter, 2, 2, {"k": 1.5}, ctx) is False  # a float value never keys a remembered series
    assert record(counter, True, True, {"k": "v"}, ctx) is False  # a bool amount: the SDK's method decides
    assert record(counter, -1, -1, {"k": "v"}, ctx) is False
    assert record(counter, 10**400, 10**400, {"k": "v"}, ctx) is False  # no float holds it: Python raises
    histogram.record(0.5, None, context=ctx)
    assert record(histogram, 7.0, 7.0, None, ctx) is True
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: metric.data.data_points[0]  # type: ignore[union-attr]
        for metric in data.resource_metrics[0].scope_metrics[0].metrics
    }
    assert points["c"].value == 3
    assert (points["h"].count, points["h"].sum, points["h"].min, points["h"].max) == (2, 7.5, 0.5, 7.0)
    span_context = trace.get_current_span(ctx).get_span_context()
    assert [(e.value, e.trace_id, e.span_id) for e in points["h"].exemplars] == [
        (0.5, span_context.trace_id, span_context.span_id),
        (7.0, span_context.trace_id, span_context.span_id),
    ]
    provider.shutdown()


def test_a_meter_disabled_by_its_configurator_records_nothing(record_path: str) -> None:
    reader = InMemoryMetricReader()
    provider = _fastsdk.FastMeterProvider(metric_readers=[reader])
    meter = provider.get_meter("m")
    counter = meter.create_counter("c")
    counter.add(1, {"k": "v"})  # the series is remembered
    meter._set_meter_config(_MeterConfig(is_enabled=False))
    counter.add(10, {"k": "v"})
    meter._set_meter_config(_MeterConfig(is_enabled=True))
    counter.add(100, {"k": "v"})
    assert [point.value for point in _data_points(reader)] == [101]
    provider.shutdown()


def _remembered_histogram_exemplars(ctx: Context, record_twice: Callable[[Any], None]) -> list[Any]:
    reader = InMemoryMetricReader()
    provider = _fastsdk.FastMeterProvider(metric_readers=[reader])
    histogram = provider.get_meter("m").create_histogram("h")
    histogram.record(0.5, {"k": "v"}, context=ctx)  # the series is remembered
    record_twice(histogram)
    [point] = _data_points(reader)
    provider.shutdown()
    return list(point.exemplars)


def test_a_patched_clock_stamps_the_exemplars_of_both_paths(
    monkeypatch: pytest.MonkeyPatch, record_path: str
) -> None:
    """A test's frozen clock (freezegun, monkeypatch) reaches a remembered series' exemplars too."""
    ctx = _in_sampled_span()

    def frozen(histogram: Any) -> None:
        monkeypatch.setattr(_fastsdk, "time_ns", lambda: 1_234)
        histogram.record(0.5, {"k": "v"}, context=ctx)

    assert [e.time_unix_nano for e in _remembered_histogram_exemplars(ctx, frozen)] == [1_234]


def test_trace_flags_wider_than_a_machine_word_are_read_as_python_reads_them(record_path: str) -> None:
    wide = SpanContext(
        0xFEED, 0xD00D, is_remote=False, trace_flags=trace.TraceFlags(2**64 + 1)
    )  # sampled bit set
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(wide))
    exemplars = _remembered_histogram_exemplars(ctx, lambda h: h.record(0.7, {"k": "v"}, context=ctx))
    assert [(e.value, e.span_id) for e in exemplars] == [(0.7, 0xD00D)]


class _HidingContext(Context):
    """A context type whose get() hides the span: only _span_in's own lookup may read it."""

    def get(self, key: str, default: Any = None) -> Any:
        return None if key == _SPAN_KEY else super().get(key, default)


def test_a_context_subclass_is_read_through_its_own_get(record_path: str) -> None:
    hiding = _HidingContext(dict(_in_sampled_span()))
    exemplars = _remembered_histogram_exemplars(
        context.Context(), lambda h: h.record(0.7, {"k": "v"}, context=hiding)
    )
    assert exemplars == []  # no span found: not sampled, as the trace-based filter decides in Python


def test_the_c_record_keeps_a_uniform_exemplar_like_the_sdk() -> None:
    """Which of four measurements of one remembered series a sum keeps as its exemplar (fixed seed: no flakes)."""
    assert _fastsdk._NATIVE_RECORD is not None
    reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    provider = _fastsdk.FastMeterProvider(metric_readers=[reader])
    counter = provider.get_meter("m").create_counter("c")
    ctx = _in_sampled_span()
    counter.add(0, {"k": "v"}, context=ctx)
    reader.get_metrics_data()  # the series is remembered; each period below starts an empty reservoir
    state = random.getstate()
    random.seed(11)
    kept: collections.Counter[int] = collections.Counter()
    try:
        for _ in range(2000):
            for value in range(4):
                counter.add(value, {"k": "v"}, context=ctx)
            [point] = _data_points(reader)
            [exemplar] = point.exemplars
            kept[int(exemplar.value)] += 1
    finally:
        random.setstate(state)
        provider.shutdown()
    assert sorted(kept) == [0, 1, 2, 3]
    assert all(400 < n < 600 for n in kept.values()), kept  # 500 each expected


def test_fast_instruments_take_the_fast_path() -> None:
    provider = _fastsdk.FastMeterProvider(resource=RESOURCE)
    meter = provider.get_meter("m")
    assert meter.create_counter("c").add.__func__ is _fastsdk._fast_add  # type: ignore[attr-defined]
    assert meter.create_histogram("h").record.__func__ is _fastsdk._fast_add  # type: ignore[attr-defined]
    assert meter.create_up_down_counter("u").add.__func__ is _fastsdk._fast_signed  # type: ignore[attr-defined]
    assert meter.create_gauge("g").set.__func__ is _fastsdk._fast_signed  # type: ignore[attr-defined]
    assert type(provider._measurement_consumer).__name__ == "_FastMeasurementConsumer"
    provider.shutdown()


# --------------------------------------------------------------------------- logs


def _log_records(
    emit: Callable[[Any, LogRecord], None], limits: LogRecordLimits | None
) -> list[dict[str, Any]]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE, log_record_limits=limits)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("script", "1.0")
    token = context.attach(_in_sampled_span())
    try:
        for attributes in (
            {"orderId": "ORD-1", "code.line.number": 12, "ok": True, "ratio": 0.5},
            {"tags": ["a", "b"], "obj": {"k": "v"}},
            {"": "empty key", "none": None},
            None,
            {f"k{i}": i for i in range(6)},
        ):
            record = LogRecord(
                timestamp=1,
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body="order created",
                attributes=attributes,
            )
            emit(logger, record)
    finally:
        context.detach(token)
    records = [_log_record(r) for r in exporter.get_finished_logs()]
    provider.shutdown()
    return records


def _log_record(readable: Any) -> dict[str, Any]:
    record = readable.log_record
    return _record(
        {
            "body": record.body,
            "severity": (record.severity_text, record.severity_number),
            "attributes": list((record.attributes or {}).items()),
            "dropped_attributes": readable.dropped_attributes,
            "ids": (record.trace_id, record.span_id, record.trace_flags),
            "scope": (readable.instrumentation_scope.name, readable.instrumentation_scope.version),
            "resource": dict(readable.resource.attributes),
            "timestamp": record.timestamp,
        }
    )


@pytest.mark.parametrize(
    "limits",
    [None, LogRecordLimits(max_attributes=3), LogRecordLimits(max_attribute_length=2)],
    ids=["default", "few-attributes", "short-values"],
)
def test_log_records_are_the_sdks_records(limits: LogRecordLimits | None) -> None:
    with warnings.catch_warnings(record=True) as sdk_warnings:
        warnings.simplefilter("always")
        expected = _log_records(lambda logger, record: logger.emit(record), limits)
    with warnings.catch_warnings(record=True) as fast_warnings:
        warnings.simplefilter("always")
        got = _log_records(lambda logger, record: logger.emit(_fastlogs.log_record(record, logger)), limits)
    assert got == expected
    assert len(got) == 5
    # records over the limits warn as in the SDK (LogRecordDroppedAttributesWarning), the same number of times
    assert [type(w.message) for w in fast_warnings] == [type(w.message) for w in sdk_warnings]


@pytest.mark.parametrize(
    "limits", [None, LogRecordLimits(max_attributes=1)], ids=["default", "one-attribute"]
)
@pytest.mark.parametrize("fast_records", [False, True], ids=["sdk-records", "fast-records"])
def test_the_fast_batch_processor_hands_over_the_same_records(
    limits: LogRecordLimits | None, fast_records: bool
) -> None:
    def run(processor_class: type[BatchLogRecordProcessor]) -> list[dict[str, Any]]:
        exporter = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=RESOURCE)
        provider._log_record_limits = limits or LogRecordLimits()
        processor = processor_class(exporter)
        provider.add_log_record_processor(processor)
        logger = provider.get_logger("script")
        for n in range(3):
            record = LogRecord(timestamp=n + 1, body=f"line {n}", attributes={"n": n, "k": "v"})
            logger.emit(_fastlogs.log_record(record, logger) if fast_records else record)
        queued = list(processor._batch_processor._queue)
        if processor_class is _fastlogs.FastBatchLogRecordProcessor and limits is None:
            # Waiting for export, a record's attributes are a plain dict the garbage collector ignores.
            assert all(not gc.is_tracked(q.log_record.attributes) for q in queued)
        provider.force_flush()
        records = [_log_record(r) for r in exporter.get_finished_logs()]
        provider.shutdown()
        return records

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropped-attribute warning; its parity is tested above
        expected = run(BatchLogRecordProcessor)
        assert run(_fastlogs.FastBatchLogRecordProcessor) == expected
    assert [r["dropped_attributes"] for r in expected] == [("int", 0 if limits is None else 1)] * 3


def _emitted(
    monkeypatch: pytest.MonkeyPatch,
    processor_class: type[BatchLogRecordProcessor],
    extra_processor: bool = False,
) -> tuple[list[Any], int]:
    """Log lines through otel-correlate's emitter (the loguru/stdlib bridge); records exported, SDK emits."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(processor_class(exporter))
    if extra_processor:
        provider.add_log_record_processor(SimpleLogRecordProcessor(InMemoryLogRecordExporter()))
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: provider)
    sdk_emits = []
    original = SDKLogger.emit
    monkeypatch.setattr(
        SDKLogger, "emit", lambda self, *a, **k: (sdk_emits.append(1), original(self, *a, **k))
    )
    emitter = _logs._Emitter()
    token = context.attach(_in_sampled_span())
    try:
        for attributes in (
            {"orderId": "ORD-1", "code.line.number": 12, "ok": True, "ratio": 0.5},
            {"tags": ["a", "b"]},  # not plain: the SDK builds this one
            {},
        ):
            emitter.emit(scope="script", level_no=30, body="order", attributes=attributes, timestamp_ns=5)
    finally:
        context.detach(token)
    emitter.emit(scope="script", level_no=20, body="no span", attributes={"k": "v"}, timestamp_ns=6)
    provider.force_flush()
    records = [
        (
            _log_record(r),
            # the attributes' container differs on purpose: queued records hold a plain dict
            [
                (k, "mapping" if k == "attributes" else type(v).__name__)
                for k, v in vars(r.log_record).items()
            ],
            len(r.log_record.context),
        )
        for r in exporter.get_finished_logs()
    ]
    assert all(r.log_record.observed_timestamp for r in exporter.get_finished_logs())
    provider.shutdown()
    return records, len(sdk_emits)


def test_the_emitter_queues_plain_records_directly_and_exactly_as_the_sdk(
    monkeypatch: pytest.MonkeyPatch, emit_path: str
) -> None:
    expected, sdk_emits = _emitted(monkeypatch, BatchLogRecordProcessor)
    assert sdk_emits == 4
    got, sdk_emits = _emitted(monkeypatch, _fastlogs.FastBatchLogRecordProcessor)
    assert got == expected  # same records, same fields in the same order, contexts dropped
    assert sdk_emits == 1  # only the record with a list value went through Logger.emit
    assert [r[0]["ids"][1][0] for r in got] == [("int", 0xFEED)] * 3 + [
        ("int", 0)
    ]  # the current span's trace


def test_a_second_log_processor_gets_every_record(monkeypatch: pytest.MonkeyPatch, emit_path: str) -> None:
    got, sdk_emits = _emitted(monkeypatch, _fastlogs.FastBatchLogRecordProcessor, extra_processor=True)
    assert sdk_emits == 4 and len(got) == 4


class _SlowSpanExporter(SpanExporter):
    """Exports at 50 µs of CPU per span, holding the GIL, like an encoder does."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.exported = 0
        self._gate = gate

    def export(self, spans: Any) -> SpanExportResult:
        if self._gate is not None:
            self._gate.wait()  # a collector that does not answer
        # its own CPU time, not the wall clock: descheduled on a loaded machine, it makes no progress,
        # as an encoder would not, so the burst outruns it however busy the machine is
        deadline = time.thread_time() + 0.00005 * len(spans)
        while time.thread_time() < deadline:
            pass
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def _burst(
    processor_class: type[BatchSpanProcessor],
    exporter: SpanExporter,
    spans: int = 4000,
    provider: TracerProvider | None = None,
) -> None:
    """Ends ``spans`` spans as fast as possible, then shuts the provider down (unless one is given)."""
    own = provider is None
    provider = provider or TracerProvider(resource=RESOURCE)
    provider.add_span_processor(
        processor_class(exporter, max_queue_size=256, max_export_batch_size=64, schedule_delay_millis=60_000)
    )
    tracer = provider.get_tracer("burst")
    for _ in range(spans):
        tracer.start_span("s").end()
    if own:
        provider.shutdown()


def test_a_burst_is_delivered_instead_of_dropped() -> None:
    sdk, fast = _SlowSpanExporter(), _SlowSpanExporter()
    _burst(BatchSpanProcessor, sdk)
    _burst(_fastsdk.FastBatchSpanProcessor, fast)
    assert sdk.exported < 4000  # the SDK's processor drops what outruns its export thread
    assert fast.exported == 4000  # ours lets the export thread catch up


def test_a_hung_collector_never_blocks_the_service() -> None:
    gate = threading.Event()
    exporter = _SlowSpanExporter(gate)
    provider = TracerProvider(resource=RESOURCE)
    producer = threading.Thread(
        target=_burst, args=(_fastsdk.FastBatchSpanProcessor, exporter, 4000, provider), daemon=True
    )
    producer.start()
    producer.join(60)  # generous: a producer waiting for the exporter would never finish
    finished = not producer.is_alive()
    gate.set()
    producer.join()
    provider.shutdown()
    assert finished
    assert exporter.exported < 4000  # what did not fit was dropped (and counted), not waited for


def _emit_plain_line(sole: _fastlogs.FastBatchLogRecordProcessor, logger: Any, n: int) -> None:
    """One plain INFO line ``b`` at timestamp ``n`` through the direct hand-off (in C when it is on)."""
    native = _fastlogs._NATIVE_EMIT
    if native is not None:
        assert native(logger, n, SeverityNumber.INFO, "INFO", "b", {}, context.get_current(), False)
        return
    sole.emit_plain(
        logger,
        timestamp=n,
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body="b",
        attributes={},
        context=context.get_current(),
    )


def test_a_log_burst_is_delivered_instead_of_dropped(emit_path: str) -> None:
    class SlowLogs(InMemoryLogRecordExporter):
        def export(self, batch: Any) -> Any:
            deadline = time.thread_time() + 0.00005 * len(batch)  # CPU time, as _SlowSpanExporter
            while time.thread_time() < deadline:
                pass
            return super().export(batch)

    def run(processor_class: type[BatchLogRecordProcessor], via_emitter: bool) -> int:
        exporter = SlowLogs()
        provider = LoggerProvider(resource=RESOURCE)
        provider.add_log_record_processor(
            processor_class(
                exporter, max_queue_size=256, max_export_batch_size=64, schedule_delay_millis=60_000
            )
        )
        logger = provider.get_logger("burst")
        for n in range(4000):
            if via_emitter:
                sole = _fastlogs.sole_log_processor(logger)
                assert sole is not None
                _emit_plain_line(sole, logger, n)
            else:
                logger.emit(LogRecord(timestamp=n, body="b"))
        provider.shutdown()
        return len(exporter.get_finished_logs())

    assert run(BatchLogRecordProcessor, via_emitter=False) < 4000
    assert run(_fastlogs.FastBatchLogRecordProcessor, via_emitter=False) == 4000
    assert run(_fastlogs.FastBatchLogRecordProcessor, via_emitter=True) == 4000


def _sole_logger(
    exporter: Any, name: str, *, max_queue_size: int, schedule_delay_millis: int
) -> tuple[LoggerProvider, Any, _fastlogs.FastBatchLogRecordProcessor]:
    """A logger whose only processor is a fast batch processor exporting in batches of 64."""
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(
        _fastlogs.FastBatchLogRecordProcessor(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=64,
            schedule_delay_millis=schedule_delay_millis,
        )
    )
    logger = provider.get_logger(name)
    sole = _fastlogs.sole_log_processor(logger)
    assert sole is not None
    return provider, logger, sole


def test_a_full_batch_wakes_the_export_thread(emit_path: str) -> None:
    """Below the three-quarter mark too: a batch's worth of queued lines is exported before the schedule delay."""
    exporter = InMemoryLogRecordExporter()
    provider, logger, sole = _sole_logger(
        exporter, "wake", max_queue_size=2048, schedule_delay_millis=600_000
    )
    for n in range(64):
        _emit_plain_line(sole, logger, n)
    deadline = time.monotonic() + 10
    while len(exporter.get_finished_logs()) < 64 and time.monotonic() < deadline:
        time.sleep(0.01)
    exported = len(exporter.get_finished_logs())
    provider.shutdown()
    assert exported == 64


def test_a_full_queue_is_not_waited_for(monkeypatch: pytest.MonkeyPatch, emit_path: str) -> None:
    """A collector that is down keeps the queue full: the producer drops there instead of yielding per record."""
    yields: list[float] = []
    monkeypatch.setattr(_fastsdk, "_yield_gil", yields.append)
    gate = threading.Event()

    class Hung(InMemoryLogRecordExporter):
        def export(self, batch: Any) -> Any:
            gate.wait()  # a collector that never answers
            return super().export(batch)

    provider, logger, sole = _sole_logger(Hung(), "down", max_queue_size=256, schedule_delay_millis=60_000)
    for n in range(4000):
        _emit_plain_line(sole, logger, n)
    queued = len(sole._batch_processor._queue)
    gate.set()
    provider.shutdown()
    assert queued == 256  # full: the rest was dropped, as in the SDK
    # it yielded while the queue filled from three quarters (at most 64 + the one batch taken out), not per record
    assert 0 < len(yields) <= 2 * 64, len(yields)


class _ForeignContextSpan(trace.NonRecordingSpan):
    """A span type the fast paths do not know, whose context is a SpanContext subclass."""

    def get_span_context(self) -> SpanContext:
        return _OddSpanContext(0xFEED, 0xF00D, False, TraceFlags(TraceFlags.SAMPLED))


class _OddSpanContext(SpanContext):
    pass


def _queued_lines(seed: int, limits: LogRecordLimits | None, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Random log lines through the emitter; what reached the export queue (records, or the SDK's wrappers)."""
    draw = random.Random(seed)
    ticks = itertools.count(1000)
    monkeypatch.setattr(_fastsdk, "time_ns", lambda: next(ticks))  # the observed timestamp, on both paths
    provider = LoggerProvider(resource=RESOURCE, log_record_limits=limits)
    processor = _fastlogs.FastBatchLogRecordProcessor(
        InMemoryLogRecordExporter(), schedule_delay_millis=60_000
    )
    provider.add_log_record_processor(processor)
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: provider)
    emitter = _logs._Emitter()
    values: list[Any] = ["v", 3, 2.5, True, ["x"], None, b"b"]
    contexts = [
        context.Context(),
        _in_sampled_span(),
        trace.set_span_in_context(_ForeignContextSpan(trace.INVALID_SPAN_CONTEXT)),
        trace.set_span_in_context(trace.NonRecordingSpan(SpanContext(1, 2, False, TraceFlags(0)))),
    ]
    for n in range(200):
        attributes = {
            draw.choice(["a", "b", "orderId", ""]): draw.choice(values) for _ in range(draw.randrange(4))
        }
        plain = draw.random() < 0.3 and all(type(v) in (str, int) for v in attributes.values())
        token = context.attach(draw.choice(contexts))
        try:
            emitter.emit(
                scope=draw.choice(["a", "b"]),
                level_no=draw.choice([10, 20, 30, 40]),
                body=draw.choice(["line", 7, {"k": "v"}]),
                attributes=attributes,
                timestamp_ns=n,
                plain=plain,
            )
        finally:
            context.detach(token)
    queued = list(processor._batch_processor._queue)
    provider.shutdown()
    return [
        (
            type(item).__name__,
            [(type(v).__name__, v) for v in item[:8]],
            item[8],
            item[9]._instrumentation_scope.name,
        )
        if type(item) is _fastlogs.QueuedLogRecord
        else (type(item).__name__, _log_record(item))
        for item in queued
    ]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "limits",
    [None, LogRecordLimits(max_attributes=2), LogRecordLimits(max_attribute_length=1)],
    ids=["default", "two", "short"],
)
def test_random_log_lines_reach_the_queue_alike_on_both_paths(
    seed: int, limits: LogRecordLimits | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = _fastlogs._NATIVE_EMIT
    assert native is not None, "the C extension is built in this venv"
    made = _queued_lines(seed, limits, monkeypatch)
    monkeypatch.setattr(_fastlogs, "_NATIVE_EMIT", None)
    assert _queued_lines(seed, limits, monkeypatch) == made
    kinds = collections.Counter(item[0] for item in made)
    # a value-length limit: every record is the SDK's; otherwise most take the direct hand-off
    direct = kinds["QueuedLogRecord"]
    assert direct == 0 if limits is not None and limits.max_attribute_length else direct > 50, kinds


class _CountingLoggerMetrics:
    def __init__(self) -> None:
        self.emitted = 0

    def emit_log(self) -> None:
        self.emitted += 1


def test_a_disabled_logger_emits_nothing_and_the_logger_metrics_count_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, emit_path: str
) -> None:
    from opentelemetry.sdk._logs._internal import _LoggerConfig

    counted = []
    for enabled in (True, False):
        provider = LoggerProvider(
            resource=RESOURCE, _logger_configurator=lambda scope, on=enabled: _LoggerConfig(is_enabled=on)
        )  # type: ignore[call-arg]
        exporter = InMemoryLogRecordExporter()
        provider.add_log_record_processor(_fastlogs.FastBatchLogRecordProcessor(exporter))
        monkeypatch.setattr(_logs, "get_logger_provider", lambda provider=provider: provider)
        emitter = _logs._Emitter()
        emitter.emit(scope="s", level_no=20, body="first", attributes={}, timestamp_ns=1)  # makes the logger
        logger = emitter._loggers["s"][0]
        logger._logger_metrics = metrics = _CountingLoggerMetrics()
        emitter.emit(scope="s", level_no=20, body="second", attributes={"k": "v"}, timestamp_ns=2)
        provider.force_flush()
        counted.append((metrics.emitted, [r.log_record.body for r in exporter.get_finished_logs()]))
        provider.shutdown()
    assert counted == [(1, ["first", "second"]), (0, [])]


def test_a_log_line_under_a_foreign_span_asks_the_logger_once(
    emit_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A span context that is not the SDK's exact type is read through its properties, not handed back to Python."""
    provider = LoggerProvider(resource=RESOURCE)
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(_fastlogs.FastBatchLogRecordProcessor(exporter))
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: provider)
    emitter = _logs._Emitter()
    emitter.emit(scope="s", level_no=20, body="first", attributes={}, timestamp_ns=1)  # makes the logger
    logger = emitter._loggers["s"][0]
    asked = []
    enabled = logger._is_enabled
    logger._is_enabled = lambda: (asked.append(1), enabled())[1]
    token = context.attach(trace.set_span_in_context(_ForeignContextSpan(trace.INVALID_SPAN_CONTEXT)))
    try:
        emitter.emit(scope="s", level_no=20, body="second", attributes={"k": "v"}, timestamp_ns=2)
    finally:
        context.detach(token)
    provider.force_flush()
    records = exporter.get_finished_logs()
    provider.shutdown()
    assert len(asked) == 1
    assert (records[1].log_record.trace_id, records[1].log_record.span_id) == (0xFEED, 0xF00D)


def test_the_c_emit_keeps_no_reference_it_does_not_own() -> None:
    provider = LoggerProvider(resource=RESOURCE)
    processor = _fastlogs.FastBatchLogRecordProcessor(
        InMemoryLogRecordExporter(), schedule_delay_millis=60_000
    )
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("counted")
    other = LoggerProvider(resource=RESOURCE).get_logger("declined")  # no processor: emit_log declines
    body, text, ctx = "counted-body", "COUNTED", _in_sampled_span()
    span_context = trace.get_current_span(ctx).get_span_context()
    watched = [logger, other, body, text, ctx, span_context, SeverityNumber.INFO, processor]
    native = _fastlogs._NATIVE_EMIT
    queue = processor._batch_processor._queue

    def emit() -> None:
        assert native(logger, 5, SeverityNumber.INFO, text, body, {"k": "v"}, ctx, False) is True
        assert native(other, 5, SeverityNumber.INFO, text, body, {"k": "v"}, ctx, False) is False
        queue.clear()

    emit()
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(2000):
        emit()
    assert [sys.getrefcount(obj) for obj in watched] == before
    provider.shutdown()


def test_exporters_that_do_not_read_queued_records_get_the_sdks_records() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(_fastlogs.FastBatchLogRecordProcessor(exporter))
    emitter = _logs._Emitter()
    original = _logs.get_logger_provider
    _logs.get_logger_provider = lambda: provider  # type: ignore[assignment]
    try:
        emitter.emit(scope="s", level_no=20, body="line", attributes={"k": "v"}, timestamp_ns=1)
    finally:
        _logs.get_logger_provider = original  # type: ignore[assignment]
    queued = list(provider._multi_log_record_processor._log_record_processors[0]._batch_processor._queue)
    assert [type(q) for q in queued] == [_fastlogs.QueuedLogRecord]
    provider.force_flush()
    [record] = exporter.get_finished_logs()
    assert type(record) is ReadableLogRecord and type(record.log_record) is LogRecord
    assert (record.log_record.body, record.log_record.attributes, record.resource) == (
        "line",
        {"k": "v"},
        RESOURCE,
    )
    provider.shutdown()


def test_the_fast_reservoirs_sample_like_the_sdks() -> None:
    """Which of n measurements a one-slot reservoir keeps is uniform, as in the SDK (fixed seed: no flakes)."""
    state = random.getstate()
    random.seed(7)
    try:
        kept = {
            name: collections.Counter(_kept_of_four(reservoir) for _ in range(4000))
            for name, reservoir in (
                ("sdk", SimpleFixedSizeExemplarReservoir),
                ("fast", _fastsdk._FastSimpleReservoir),
            )
        }
    finally:
        random.setstate(state)
    for counts in kept.values():
        assert sorted(counts) == [0, 1, 2, 3]
        assert all(850 < n < 1150 for n in counts.values()), counts  # 1000 each expected
    # the histogram reservoir keeps the last measurement per bucket; boundaries are inclusive upper bounds
    fast = _fastsdk._FastAlignedReservoir(boundaries=(1.0, 5.0))
    sdk = AlignedHistogramBucketExemplarReservoir(boundaries=(1.0, 5.0))
    for reservoir in (fast, sdk):
        for value in (0.5, 1.0, 3.0, 5.0, 9.0, 0.7):
            reservoir.offer(value, 1, {"v": value}, context.Context())
    assert [(e.value, e.filtered_attributes) for e in fast.collect({})] == [
        (e.value, e.filtered_attributes) for e in sdk.collect({})
    ]


def _kept_of_four(reservoir_class: Any) -> int:
    reservoir = reservoir_class(size=1)
    for index in range(4):
        reservoir.offer(index, 1, None, context.Context())
    (exemplar,) = reservoir.collect({})
    return int(exemplar.value)


def test_the_fast_meter_provider_uses_the_fast_reservoirs() -> None:
    provider = _fastsdk.FastMeterProvider(resource=RESOURCE, metric_readers=[InMemoryMetricReader()])
    meter = provider.get_meter("m")
    meter.create_counter("c").add(1, {"k": "v"})
    meter.create_histogram("h").record(1.0, {"k": "v"})
    storage = next(iter(provider._measurement_consumer._reader_storages.values()))
    reservoirs = sorted(
        type(aggregation._reservoir).__name__
        for matches in storage._instrument_view_instrument_matches.values()
        for match in matches
        for aggregation in match._attributes_aggregation.values()
    )
    assert reservoirs == ["_FastAlignedReservoir", "_FastSimpleReservoir"]
    provider.shutdown()


class _Tier(enum.IntEnum):
    GOLD = 1


def _loguru_lines(processor_class: type[BatchLogRecordProcessor]) -> list[dict[str, Any]]:
    """loguru lines (plain, with bound extra of every kind, with an exception) through our sink."""
    from loguru import logger as loguru_logger

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(processor_class(exporter))
    original = _logs.get_logger_provider
    _logs.get_logger_provider = lambda: provider  # type: ignore[assignment]
    _logs.EMITTER.reset()
    # the session's own sink when otel-correlate's plugin installed one, else one for this test
    handler = None
    if _logs._LOGURU_STATE["otel"] is None:
        handler = loguru_logger.add(_logs._loguru_sink, format="{message}", catch=False)
    token = context.attach(_in_sampled_span())
    try:
        loguru_logger.info("plain {}", 1)
        loguru_logger.bind(tags=["a", "b"], tier=_Tier.GOLD, name=b"raw", customer={"id": 7}).info("bound")
        try:
            raise KeyError("missing")
        except KeyError:
            loguru_logger.exception("failed")
    finally:
        context.detach(token)
        if handler is not None:
            loguru_logger.remove(handler)
        _logs.get_logger_provider = original  # type: ignore[assignment]
        _logs.EMITTER.reset()
    provider.force_flush()
    records = [_log_record(r) for r in exporter.get_finished_logs()]
    provider.shutdown()
    return records


def test_loguru_lines_through_the_direct_hand_off_are_the_sdks_records() -> None:
    """Lines the sink knows are plain skip the attribute check; the others are checked and cleaned as in the SDK."""
    got = _loguru_lines(_fastlogs.FastBatchLogRecordProcessor)
    assert got == _loguru_lines(BatchLogRecordProcessor)
    _, bound = got[1]["attributes"]  # (name, value) pairs, each tagged with its type
    assert ("tuple", [("str", "tags"), ("tuple", [("str", "a"), ("str", "b")])]) in bound
    assert ("tuple", [("str", "tier"), ("_Tier", _Tier.GOLD)]) in bound  # kept as the SDK keeps it
    assert len(got) == 3


def _loguru_script(native: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], list[bool]]:
    """Lines of every kind through the loguru sink, the C hand-off on or off: the records, and the C answers."""
    from loguru import logger as loguru_logger

    real = _logs._native_loguru()
    assert real is not None, "the C extension is built in this venv"
    answers: list[bool] = []

    def counted(record: Any, emitter: Any) -> bool:
        answers.append(real(record, emitter))
        return answers[-1]

    monkeypatch.setattr(_logs, "_NATIVE_LOGURU", counted if native else None)
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(_fastlogs.FastBatchLogRecordProcessor(exporter))
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: provider)
    severities = dict(_logs._SEVERITY_BY_LEVEL)
    _logs._SEVERITY_BY_LEVEL.clear()  # the C code reads this dict: each level's first line goes to Python
    _logs.EMITTER.reset()
    stamps: dict[str, int] = {}

    def stamp(message: Any) -> None:
        since = message.record["time"] - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        stamps[message.record["message"]] = (
            since.days * 86400 + since.seconds
        ) * 10**9 + since.microseconds * 1000

    handlers = [loguru_logger.add(stamp, level=0)]
    if (
        _logs._LOGURU_STATE["otel"] is None
    ):  # else the session's own sink (at INFO), as otel-correlate installs it
        handlers.append(loguru_logger.add(_logs._loguru_sink, level=0, catch=False))
    keyed = _pipeline._context.with_keys({"orderId": "A-1"}, _in_sampled_span())
    unnamed = loguru_logger.patch(lambda record: record.update(name=None))  # type: ignore[call-arg]
    try:
        with _pipeline._context.attached(keyed):
            loguru_logger.info("a: makes the logger and the level's severity")
            loguru_logger.info("b: plain, keyed, in a span")
        loguru_logger.info("c: no span, no keys")
        loguru_logger.log(23, "d: a new level number")
        loguru_logger.log(23, "e: a known level number")
        loguru_logger.bind(k="v").info("f: bound extra")
        try:
            raise KeyError("missing")
        except KeyError:
            loguru_logger.exception("g: an exception")
        with _pipeline._context.attached(_HidingContext(dict(keyed))):
            loguru_logger.info("h: a context subclass")
        _logs.EMITTER._local.busy = True
        try:
            loguru_logger.info("i: logged while exporting: dropped")
        finally:
            _logs.EMITTER._local.busy = False
        unnamed.info("j: no module name, a new scope")
        unnamed.info("k: no module name")
    finally:
        for handler in handlers:
            loguru_logger.remove(handler)
        _logs._SEVERITY_BY_LEVEL.update(severities)
        _logs.EMITTER.reset()
    provider.force_flush()
    records = []
    for readable in exporter.get_finished_logs():
        body = readable.log_record.body
        assert readable.log_record.timestamp == stamps[body], body  # loguru's time, to the nanosecond
        records.append(_log_record(readable))
    provider.shutdown()
    return records, answers


def test_loguru_lines_handed_off_in_c_are_the_python_sinks_records(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, _ = _loguru_script(False, monkeypatch)
    got, answers = _loguru_script(True, monkeypatch)
    assert got == expected
    assert [r["body"][1].split(":")[0] for r in got] == list("abcdefghjk")  # i was dropped on both paths
    # a, d, j make a logger or a severity; f, g, h are not plain or not the API's context: Python decides
    assert answers == [False, True, True, False, True, False, False, False, True, False, True]
    keyed, unkeyed = got[1]["attributes"][1], got[2]["attributes"][1]
    assert ("tuple", [("str", "orderId"), ("str", "A-1")]) in keyed
    assert [name for _, [(_, name), _] in unkeyed] == [
        "code.function.name",
        "code.file.path",
        "code.line.number",
    ]


@contextlib.contextmanager
def _loguru_export(native: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """loguru lines through our sink into a fresh provider, the C hand-off on or off: yields what it exported."""
    from loguru import logger as loguru_logger

    if not native:
        monkeypatch.setattr(_logs, "_NATIVE_LOGURU", None)
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(_fastlogs.FastBatchLogRecordProcessor(exporter))
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: provider)
    _logs.EMITTER.reset()
    handler = None
    if _logs._LOGURU_STATE["otel"] is None:
        handler = loguru_logger.add(_logs._loguru_sink, level="INFO", catch=False)

    def exported() -> list[Any]:
        provider.force_flush()
        return [r.log_record for r in exporter.get_finished_logs()]

    try:
        loguru_logger.info("makes the logger")
        yield exported
    finally:
        if handler is not None:
            loguru_logger.remove(handler)
        _logs.EMITTER.reset()
        provider.force_flush()
        provider.shutdown()


class _LoggingMetrics:
    """A logger's own metrics that log through stdlib logging, or raise, when a record is emitted."""

    def __init__(self, action: str) -> None:
        self.action = action

    def emit_log(self) -> None:
        if self.action == "log":
            logging.getLogger("tests.inner").warning("logged while exporting")
        elif self.action == "raise":
            self.action = "done"
            raise RuntimeError("metrics failed")


@pytest.mark.parametrize("native", [True, False], ids=["c-loguru", "python-loguru"])
def test_a_line_logged_while_a_loguru_line_is_exported_is_dropped_on_both_paths(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loguru import logger as loguru_logger

    inner = logging.getLogger("tests.inner")
    stdlib_handler = _logs.OTelLoggingHandler()
    inner.addHandler(stdlib_handler)
    monkeypatch.setattr(inner, "propagate", False)  # the session's root handler would export it a second time
    try:
        with _loguru_export(native, monkeypatch) as exported:
            logger_ = next(iter(_logs.EMITTER._loggers.values()))[0]
            monkeypatch.setattr(logger_, "_logger_metrics", _LoggingMetrics("log"))
            loguru_logger.info("outer line")
            logger_._logger_metrics = _LoggingMetrics("none")
            inner.warning("logged on its own")  # the stdlib bridge works when nothing is being exported
            bodies = [r.body for r in exported()]
    finally:
        inner.removeHandler(stdlib_handler)
    assert bodies == ["makes the logger", "outer line", "logged on its own"]


@pytest.mark.parametrize("native", [True, False], ids=["c-loguru", "python-loguru"])
def test_a_failing_hand_off_leaves_the_next_line_exported_on_both_paths(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loguru import logger as loguru_logger

    with _loguru_export(native, monkeypatch) as exported:
        logger_ = next(iter(_logs.EMITTER._loggers.values()))[0]
        monkeypatch.setattr(logger_, "_logger_metrics", _LoggingMetrics("raise"))
        with contextlib.suppress(RuntimeError):  # a session sink catches it; ours here raises it
            loguru_logger.info("lost with the failure")
        loguru_logger.info("exported after it")
        bodies = [r.body for r in exported()]
    assert bodies == ["makes the logger", "exported after it"]


def test_the_c_hand_off_reads_days_of_elapsed_time_and_declines_without_a_clock_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loguru import logger as loguru_logger

    records: list[dict[str, Any]] = []
    with _loguru_export(True, monkeypatch) as exported:
        handler = loguru_logger.add(lambda message: records.append(message.record), level="INFO")
        try:
            loguru_logger.info("a record to copy")
        finally:
            loguru_logger.remove(handler)
        native = _logs._NATIVE_LOGURU
        late = dict(records[0], extra={}, elapsed=datetime.timedelta(days=3, seconds=5, microseconds=7))
        assert native(late, _logs.EMITTER) is True
        started = list(_logs._LOGURU_START_NS)
        _logs._LOGURU_START_NS.clear()  # the Python code converts loguru's clock start first
        try:
            assert native(late, _logs.EMITTER) is False
        finally:
            _logs._LOGURU_START_NS[:] = started
        stamps = [r.timestamp for r in exported()]
    assert stamps[-1] == _logs._loguru_time_ns(late) == started[0] + (3 * 86400 + 5) * 10**9 + 7000


def test_loguru_lines_from_many_threads_each_carry_their_own_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four threads log at once through the C hand-off: every line exported once, with its own thread's key."""
    from loguru import logger as loguru_logger

    real = _logs._native_loguru()
    assert real is not None, "the C extension is built in this venv"
    taken = collections.Counter()

    def counted(record: Any, emitter: Any) -> bool:
        answer = real(record, emitter)
        taken[answer] += 1
        return answer

    monkeypatch.setattr(_logs, "_NATIVE_LOGURU", counted)
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(_fastlogs.FastBatchLogRecordProcessor(exporter, max_queue_size=8192))
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: provider)
    _logs.EMITTER.reset()
    handler = None
    if _logs._LOGURU_STATE["otel"] is None:
        handler = loguru_logger.add(_logs._loguru_sink, level="INFO", catch=False)
    start = threading.Barrier(4)

    def lines(n: int) -> None:
        with _pipeline._context.attached(
            _pipeline._context.with_keys({"orderId": f"T-{n}"}, context.Context())
        ):
            start.wait()
            for i in range(500):
                loguru_logger.info("thread {} line {}", n, i)

    try:
        loguru_logger.info("makes the logger")
        threads = [threading.Thread(target=lines, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        if handler is not None:
            loguru_logger.remove(handler)
        _logs.EMITTER.reset()
    provider.force_flush()
    exported = [r.log_record for r in exporter.get_finished_logs()][1:]
    provider.shutdown()
    assert len(exported) == 2000 and taken[True] == 2000
    assert all(str(r.body).startswith(f"thread {r.attributes['orderId'][2:]} ") for r in exported)
    assert collections.Counter(r.attributes["orderId"] for r in exported) == {f"T-{n}": 500 for n in range(4)}


def test_a_forked_child_exports_its_own_spans_and_log_records() -> None:
    """The direct queue hand-off skips the SDK's per-item getpid check: the at-fork reset must do it."""
    spans = InMemorySpanExporter()
    logs = InMemoryLogRecordExporter()
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(_fastsdk.FastBatchSpanProcessor(spans, schedule_delay_millis=60_000))
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(
        _fastlogs.FastBatchLogRecordProcessor(logs, schedule_delay_millis=60_000)
    )
    logger = logger_provider.get_logger("fork")
    sole = _fastlogs.sole_log_processor(logger)
    assert sole is not None
    tracer_provider.get_tracer("t").start_span("parent-before-fork").end()  # queued, not yet exported
    pid = os.fork()
    if pid == 0:  # the child: its queue starts empty, and what it produces is exported by its own thread
        code = 1
        try:
            tracer_provider.get_tracer("t").start_span("child").end()
            _emit_plain_line(sole, logger, 7)
            tracer_provider.force_flush()
            logger_provider.force_flush()
            names = [span.name for span in spans.get_finished_spans()]
            bodies = [record.log_record.body for record in logs.get_finished_logs()]
            code = 0 if (names, bodies) == (["child"], ["b"]) else 2
        finally:
            os._exit(code)
    try:
        code = exit_code_of(pid)
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()
    assert code == 0
    assert [span.name for span in spans.get_finished_spans()] == ["parent-before-fork"]
