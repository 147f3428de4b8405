"""The SDK pipeline: tracer, meter and logger providers with our processors.

One function, :func:`build_providers`, builds all three providers; the
configurator uses it with the exporters named by ``OTEL_*_EXPORTER`` and the
pytest plugin with in-memory exporters, so tests exercise the same pipeline the
services run.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_correlate import _context, _fastlogs, _fastsdk, _otlp_encode, _scrub, _settings, _telemetry


class BusinessKeySpanProcessor(SpanProcessor):
    """Copies the business keys of the parent context onto every span as it starts.

    Keys promoted by our middleware or :func:`business_context` are read with one
    context lookup. Keys that only arrived as baggage (a span started straight from
    an extracted context) are validated first: inbound baggage is untrusted.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        ctx = parent_context if parent_context is not None else _context.current_context()
        keys: Any = ctx.get(_context.KEYS_CONTEXT)  # current_business_keys(ctx), read in place
        if keys:
            span.set_attributes(keys)
            return
        entries = ctx.get(_BAGGAGE_KEY)  # baggage.get_all(ctx), read in place
        if entries and isinstance(entries, dict):
            promoted, _ = _context.promote_inbound(ctx)
            if promoted:
                span.set_attributes(promoted)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_fastsdk.own_span_processors(BusinessKeySpanProcessor)  # it keeps no span it sees
_fastsdk.ignore_empty_span_methods(BusinessKeySpanProcessor.on_end)  # its on_end does nothing


class _AllKeysExcept(Set[str]):
    """A set of attribute keys that contains every key but the denied ones.

    A metric ``View`` keeps only attribute keys that are ``in`` its
    ``attribute_keys``; this set turns that allowlist into a denylist, so one
    wildcard view strips business keys from every instrument, whatever its
    other attributes. The dropped values stay on exemplars as filtered
    attributes, which is where a metric links to its trace.
    """

    def __init__(self, denied: Set[str]) -> None:
        self.denied = frozenset(denied)

    def __contains__(self, key: object) -> bool:
        return key not in self.denied

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"AllKeysExcept({sorted(self.denied)})"


def metric_guard_view() -> View:
    """A view that drops business keys (and ``OTEL_CORRELATE_METRIC_DENY_KEYS``) from all metrics."""
    denied = set(_settings.CORRELATION_KEYS.get()) | set(_settings.METRIC_DENY_KEYS.get())
    return View(instrument_name="*", attribute_keys=_AllKeysExcept(denied))  # type: ignore[arg-type]


class _CountingSpanExporter(SpanExporter):
    """Counts failed exports (and exceptions) instead of letting them pass silently."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        spans = _scrub.spans(spans)
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            _telemetry.count_export_failure("traces", repr(exc))
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            _telemetry.count_export_failure("traces", f"{len(spans)} spans not accepted")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingLogExporter(LogRecordExporter):
    """Counts failed log exports.

    It takes the compact records the fast batch processor queues
    (``_fastlogs.QueuedLogRecord``): the scrubber reads them, and they reach the
    exporter as they are when it is the OTLP/HTTP one encoding with ``_otlp_encode``,
    as the SDK's records otherwise.
    """

    takes_queued_log_records = True

    def __init__(self, inner: LogRecordExporter) -> None:
        self._inner = inner

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        batch = _scrub.log_records(batch)
        if not _otlp_encode.takes_queued_log_records(self._inner):
            batch = _fastlogs.readable_log_records(batch)
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            _telemetry.count_export_failure("logs", repr(exc))
            return LogRecordExportResult.FAILURE
        if result is not LogRecordExportResult.SUCCESS:
            _telemetry.count_export_failure("logs", f"{len(batch)} log records not accepted")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


class _CountingMetricExporter(MetricExporter):
    """Counts failed metric exports; keeps the wrapped exporter's temporality and aggregation."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        metrics_data = _scrub.metrics(metrics_data)
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _telemetry.count_export_failure("metrics", repr(exc))
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            _telemetry.count_export_failure("metrics", "batch not accepted")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


#: Queue sizes of the batch processors unless ``OTEL_BSP_MAX_QUEUE_SIZE`` /
#: ``OTEL_BLRP_MAX_QUEUE_SIZE`` say otherwise. The SDK's 2048 drops spans and log
#: records whenever the export thread falls a few batches behind (measured: 3-7 %
#: of spans at 1,500 req/s with other load on the machine, and a third of a burst
#: of log lines); 16384 absorbs bursts, and stays bounded (about 30 MB of records
#: at most) while the collector is down.
QUEUE_SIZE = 16384


def _queue_size(env: str) -> int | None:
    return None if os.environ.get(env, "").strip() else QUEUE_SIZE


@dataclass
class Providers:
    """The three SDK providers otel-correlate installs."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    metric_readers: list[MetricReader] = field(default_factory=list)

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export everything buffered, in every signal."""
        self.tracer_provider.force_flush(timeout_millis)
        self.logger_provider.force_flush(timeout_millis)
        self.meter_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop all three providers."""
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()


def build_providers(
    *,
    resource: Resource,
    span_exporters: Sequence[SpanExporter] = (),
    log_exporters: Sequence[LogRecordExporter] = (),
    metric_exporters: Sequence[MetricExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    span_processors: Sequence[SpanProcessor] = (),
    log_processors: Sequence[LogRecordProcessor] = (),
    batch: bool = True,
) -> Providers:
    """Tracer, meter and logger providers wired with otel-correlate's processors.

    Args:
        resource: The resource of every signal.
        span_exporters: Exporters behind a batch (or, with ``batch=False``, simple) processor.
        log_exporters: Same for log records.
        metric_exporters: Exporters behind a periodic reader (``OTEL_METRIC_EXPORT_INTERVAL``).
        metric_readers: Readers used as they are (e.g. an in-memory reader in tests).
        span_processors: Extra span processors, after the business-key processor.
        log_processors: Extra log record processors.
        batch: Export in background batches (services) or synchronously (tests).

    Example:
        >>> from opentelemetry.sdk.resources import Resource
        >>> providers = build_providers(resource=Resource.create({"service.name": "doc"}))
        >>> providers.shutdown()
    """
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tracer_provider = _fastsdk.FastTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BusinessKeySpanProcessor())
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)
    for span_exporter in span_exporters:
        counted = _CountingSpanExporter(span_exporter)
        tracer_provider.add_span_processor(
            _fastsdk.FastBatchSpanProcessor(counted, max_queue_size=_queue_size("OTEL_BSP_MAX_QUEUE_SIZE"))
            if batch
            else SimpleSpanProcessor(counted)
        )

    readers: list[MetricReader] = list(metric_readers)
    for metric_exporter in metric_exporters:
        readers.append(PeriodicExportingMetricReader(_CountingMetricExporter(metric_exporter)))
    meter_provider = _fastsdk.FastMeterProvider(
        resource=resource, metric_readers=readers, views=[metric_guard_view()]
    )

    logger_provider = LoggerProvider(resource=resource)
    for log_processor in log_processors:
        logger_provider.add_log_record_processor(log_processor)
    for log_exporter in log_exporters:
        counted_logs = _CountingLogExporter(log_exporter)
        logger_provider.add_log_record_processor(
            _fastlogs.FastBatchLogRecordProcessor(
                counted_logs, max_queue_size=_queue_size("OTEL_BLRP_MAX_QUEUE_SIZE")
            )
            if batch
            else SimpleLogRecordProcessor(counted_logs)
        )
    return Providers(tracer_provider, meter_provider, logger_provider, readers)


class _RateLimitedHandler(logging.Handler):
    """Writes OpenTelemetry's own log lines to stderr, each kind at most once per interval.

    The SDK and exporters log every failed export; with the collector down that
    is a line every few seconds per signal, forever. This handler keeps the
    first of each kind per interval and says how many it held back. Records
    never reach the OTLP log pipeline, so a failing exporter cannot feed itself.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._last: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}
        self._lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.msg)
        now = time.monotonic()
        interval = _settings.EXPORT_ERROR_INTERVAL.get()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < interval:
                self._held[key] = self._held.get(key, 0) + 1
                return
            held = self._held.pop(key, 0)
            self._last[key] = now
        try:
            line = self.format(record)
            if held:
                line += f" ({held} more like this in the last {interval:g}s)"
            sys.stderr.write(line + "\n")
        except Exception:
            self.handleError(record)


_GUARD_INSTALLED = False


def guard_internal_logs() -> None:
    """Route OpenTelemetry's and otel-correlate's own log lines through a rate-limited stderr handler."""
    global _GUARD_INSTALLED
    if _GUARD_INSTALLED:
        return
    _GUARD_INSTALLED = True
    handler = _RateLimitedHandler()
    for name in ("opentelemetry", "otel_correlate"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
