"""Fast paths through the OpenTelemetry SDK for log records (see :mod:`otel_correlate._fastsdk`).

A plain log record reaches the batch queue in one step, as a :class:`QueuedLogRecord`
tuple instead of the SDK's four objects; a record from ``Logger.emit`` is copied by its
``__dict__`` instead of ``copy.copy``; an exporter that does not read queued records
gets the SDK's. The clock, the current span and the queue hand-off are
:mod:`otel_correlate._fastsdk`'s, looked up there at each use as the C code does, so a
test that replaces one reaches both paths.

Example:
    >>> from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    >>> processor = FastBatchLogRecordProcessor(InMemoryLogRecordExporter())
    >>> processor.shutdown()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from opentelemetry import trace as trace_api
from opentelemetry._logs import LogRecord
from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource

from otel_correlate import _fastsdk, _native
from otel_correlate._fastsdk import _NO_CONTEXT, _SPAN_TYPES, _attributes, _plain, _queued


class _FastLogRecord(ReadWriteLogRecord):
    """The SDK's ``ReadWriteLogRecord`` with attributes in :class:`_FastAttributes`."""

    def __post_init__(self) -> None:
        record = self.log_record
        given = record.attributes
        limits = self.limits
        maxlen = limits.max_log_record_attributes
        if limits.max_log_record_attribute_length is not None or (
            given and ((maxlen is not None and len(given) > maxlen) or not _plain(given))
        ):
            super().__post_init__()  # the SDK cleans, drops, counts and warns
            return
        record.attributes = _attributes(maxlen, given, None, plain=True)


def log_record(record: LogRecord, logger: Any) -> ReadWriteLogRecord:
    """The SDK record ``Logger.emit`` would build from ``record``, built with fast attributes.

    ``logger`` is an SDK ``Logger``; records with an exception attached go through
    the SDK's conversion (it adds the ``exception.*`` attributes).
    """
    if record.exception is not None:
        return record  # type: ignore[return-value]
    return _FastLogRecord(
        log_record=record,
        resource=logger.resource,
        instrumentation_scope=logger.instrumentation_scope,
        limits=logger._log_record_limits,
    )


class QueuedLogRecord(NamedTuple):
    """A plain log record waiting in the export queue: the fields an exporter reads, in one tuple.

    What :meth:`FastBatchLogRecordProcessor.emit_plain` queues instead of the SDK's
    ``ReadableLogRecord`` around an API ``LogRecord``: one allocation instead of four,
    no frozen-dataclass ``__init__``, nothing for the garbage collector but the tuple
    and its attributes dict. otel-correlate's OTLP encoder and scrubber read it as it
    is; any other exporter gets the SDK's record, built by :meth:`readable` the way
    the SDK would have built it (``tests/test_fastsdk.py`` compares them whole).
    """

    timestamp: int | None
    observed_timestamp: int
    trace_id: int
    span_id: int
    trace_flags: Any
    severity_text: str
    severity_number: Any
    body: Any
    attributes: dict[str, Any]
    logger: Any  # the SDK Logger: resource, instrumentation scope, limits

    @property
    def resource(self) -> Resource:
        resource: Resource = self.logger.resource
        return resource

    @property
    def instrumentation_scope(self) -> Any:
        return self.logger.instrumentation_scope

    def readable(self) -> ReadableLogRecord:
        """The SDK's queued record for this one: the API record, its context dropped, in a ``ReadableLogRecord``."""
        record = object.__new__(LogRecord)
        record.timestamp = self.timestamp
        record.observed_timestamp = self.observed_timestamp
        record.context = _NO_CONTEXT
        record.trace_id = self.trace_id
        record.span_id = self.span_id
        record.trace_flags = self.trace_flags
        record.severity_text = self.severity_text
        record.severity_number = self.severity_number
        record.body = self.body
        record.attributes = self.attributes
        record.event_name = None
        record.exception = None
        logger = self.logger
        return ReadableLogRecord(
            log_record=record,
            resource=logger.resource,
            instrumentation_scope=logger.instrumentation_scope,
            limits=logger._log_record_limits,
        )


def readable_log_records(batch: Sequence[Any]) -> list[Any]:
    """``batch`` with every :class:`QueuedLogRecord` replaced by the SDK's record."""
    return [item.readable() if type(item) is QueuedLogRecord else item for item in batch]


class _ReadableLogExporter(LogRecordExporter):
    """Hands an exporter that only knows the SDK's records what it knows."""

    takes_queued_log_records = True

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner

    def export(self, batch: Sequence[Any]) -> Any:
        return self.inner.export(readable_log_records(batch))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class FastBatchLogRecordProcessor(BatchLogRecordProcessor):
    """``BatchLogRecordProcessor`` with a one-step hand-off for plain records.

    :meth:`emit_plain` queues a :class:`QueuedLogRecord`; an exporter receives those
    only when it says it reads them (``takes_queued_log_records``, otel-correlate's
    counting exporter), every other exporter gets the SDK's records. Records from
    ``Logger.emit`` (:meth:`on_emit`) are copied by their ``__dict__`` instead of the
    SDK's ``copy.copy`` (the generic reduce protocol): the same copy in a fraction of
    the time.
    """

    def __init__(self, exporter: LogRecordExporter, *args: Any, **kwargs: Any) -> None:
        if not getattr(exporter, "takes_queued_log_records", False):
            exporter = _ReadableLogExporter(exporter)
        super().__init__(exporter, *args, **kwargs)

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            # What is queued now is never exported: the export thread has stopped, or gave up at
            # the timeout. A queued record refers to its logger, which leads back to this queue,
            # and the C hand-off keeps such records from the garbage collector: let them go.
            self._batch_processor._queue.clear()

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        original = log_record.log_record
        if log_record.resource is None or not hasattr(original, "__dict__"):
            super().on_emit(log_record)
            return
        copied = object.__new__(type(original))
        copied.__dict__.update(original.__dict__)
        copied.context = _NO_CONTEXT
        copied.attributes = _queued(copied.attributes)
        _fastsdk._make_room(self._batch_processor)
        self._batch_processor.emit(
            ReadableLogRecord(
                log_record=copied,
                resource=log_record.resource,
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
        )

    def emit_plain(
        self,
        logger: Any,
        *,
        timestamp: int,
        severity_number: Any,
        severity_text: str,
        body: Any,
        attributes: dict[str, Any],
        context: Context,
        plain: bool = False,
    ) -> bool:
        """Queue the record ``logger.emit`` would hand this processor, built directly; False if it can't.

        For an SDK logger whose only processor is this one (see :func:`sole_log_processor`)
        and plain attributes within the limits, the record the SDK would build, wrap,
        dispatch and copy holds the same data as the :class:`QueuedLogRecord` built here
        in one step: the current span's ids, no context. ``attributes`` must be the
        caller's own dict, ``context`` the current context; ``plain=True`` says the caller
        built it from ``str``/``int`` values only, so the per-value check is skipped.
        Anything else returns False, and the caller goes through ``logger.emit``.

        The record is queued by :func:`_enqueue`, without ``BatchProcessor.emit``'s
        per-record ``os.getpid()`` system call.
        """
        limits = logger._log_record_limits
        maxlen = limits.max_log_record_attributes
        if (
            limits.max_log_record_attribute_length is not None
            or (maxlen is not None and len(attributes) > maxlen)
            or not (plain or _plain(attributes))
        ):
            return False
        if not logger._is_enabled():
            return True  # a disabled logger emits nothing, as in Logger.emit
        span = _fastsdk._span_in(context)
        span_context = span._context if type(span) in _SPAN_TYPES else span.get_span_context()
        if type(span_context) is trace_api.SpanContext:  # its trace_id, span_id and trace_flags properties
            trace_id, span_id, trace_flags = span_context[0], span_context[1], span_context[3]
        else:
            trace_id, span_id, trace_flags = (
                span_context.trace_id,
                span_context.span_id,
                span_context.trace_flags,
            )
        logger._logger_metrics.emit_log()
        item = tuple.__new__(
            QueuedLogRecord,
            (
                timestamp,
                _fastsdk.time_ns(),
                trace_id,
                span_id,
                trace_flags,
                severity_text,
                severity_number,
                body,
                attributes,
                logger,
            ),
        )
        _fastsdk._enqueue(self._batch_processor, item)  # the exporter (see __init__) reads queued records
        return True


def sole_log_processor(logger: Any) -> FastBatchLogRecordProcessor | None:
    """The logger's :class:`FastBatchLogRecordProcessor` when it is its only processor, else None.

    Checked at every record: a processor added later (``otel_capture``, a user's
    own) sends records through ``Logger.emit`` again from its first record on.
    """
    processors: Sequence[Any] = getattr(logger._multi_log_record_processor, "_log_record_processors", ())
    if len(processors) == 1 and type(processors[0]) is FastBatchLogRecordProcessor:
        sole: FastBatchLogRecordProcessor = processors[0]
        return sole
    return None


def _native_emit() -> Any:
    """The C ``emit_log`` (:func:`sole_log_processor` + :meth:`FastBatchLogRecordProcessor.emit_plain`), or None.

    Called as ``emit_log(logger, timestamp, severity_number, severity_text, body, attributes,
    context, plain)``; it answers False whenever those Python functions must decide.
    """
    configure = _native.helper("configure_logs")
    emit = _native.helper("emit_log")
    if configure is None or emit is None or _fastsdk._NATIVE_RECORD is None:
        return None
    configure(FastBatchLogRecordProcessor, QueuedLogRecord)
    return emit


_NATIVE_EMIT: Any = _native_emit()
