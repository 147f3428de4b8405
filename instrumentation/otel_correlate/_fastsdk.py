"""Fast paths through the OpenTelemetry SDK for the common case; the SDK's own code for the rest.

Profiling a FastAPI service under load (``benchmarks/README.md``) put a third of
otel-correlate's per-request cost in three SDK paths that do generic work for
values that almost never need it:

* attribute cleaning: every span, log record and measurement runs each
  attribute through ``_clean_attribute_value`` (recursive ``isinstance`` checks
  against ``Sequence``/``Mapping`` ABCs), although nearly all values are plain
  ``str``/``int``/``float``/``bool``;
* measurement aggregation keys: every measurement hashes its attributes with
  ``_hash_attributes`` (a sorted, recursive tuple) and filters them through the
  view's key set one Python call per key;
* measurement construction: a frozen dataclass whose ``__post_init__`` cleans the
  attributes again.

The classes here keep the SDK's types, data and behaviour and take a shorter road
only when the input is plain: :class:`FastTracerProvider` and
:class:`FastMeterProvider` are the SDK providers with fast tracers, spans,
instruments and measurement consumer swapped in; :mod:`otel_correlate._fastlogs`
holds the log records' fast paths. This module also holds what both the Python and
the C paths look up by name at each use (the clock ``time_ns``, ``_getrandbits``,
``_random``, ``_span_in``, ``_aggregate_other`` and the export queue's ``_enqueue``),
so a test that replaces one here reaches both. Anything unusual
(sequences, mappings, odd keys, limits that truncate, disabled meters,
non-finite or negative amounts) goes through the SDK's code unchanged.
``tests/test_fastsdk.py`` runs the same inputs through both and compares the
exported records whole; the SDK version this relies on is checked there too.

Example:
    >>> provider = FastTracerProvider()
    >>> span = provider.get_tracer("doc").start_span("work", attributes={"k": "v"})
    >>> dict(span.attributes)
    {'k': 'v'}
    >>> span.end()
"""

from __future__ import annotations

import dis
import inspect
import logging
import math
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping, Sequence
from random import getrandbits as _getrandbits
from random import random as _random
from time import time_ns as time_ns  # the clock both paths read here at each use (tests replace it)
from types import FunctionType, MethodType
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal import Meter, _ProxyMeterConfig
from opentelemetry.sdk.metrics._internal._view_instrument_match import (
    _hash_attributes,
    _ViewInstrumentMatch,
)
from opentelemetry.sdk.metrics._internal.aggregation import (
    DefaultAggregation,
    _ExplicitBucketHistogramAggregation,
    _SumAggregation,
)
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlignedHistogramBucketExemplarReservoir,
    SimpleFixedSizeExemplarReservoir,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics._internal.exemplar.exemplar_reservoir import ExemplarBucket
from opentelemetry.sdk.metrics._internal.instrument import (
    _Counter,
    _Gauge,
    _Histogram,
    _UpDownCounter,
)
from opentelemetry.sdk.metrics._internal.measurement import Measurement
from opentelemetry.sdk.metrics._internal.measurement_consumer import SynchronousMeasurementConsumer
from opentelemetry.sdk.metrics._internal.view import _default_reservoir_factory
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, Tracer, TracerProvider, sampling
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace._tracer_metrics import noop as _tracer_metrics_noop
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.util import types

from otel_correlate import _context, _native

#: The SDK line these fast paths were written against (``tests/test_fastsdk.py`` checks it).
SDK_LINE = "1.45."

_PLAIN = (str, int, float, bool)
#: The SDK's span module logger: warnings about ended spans come from where they always did.
_sdk_logger = logging.getLogger("opentelemetry.sdk.trace")
#: The context a queued log record keeps (none: the SDK drops it the same way, one per record).
_NO_CONTEXT = Context()


_PLAIN_KINDS = frozenset(_PLAIN)


def _plain_kinds(attributes: Mapping[str, Any]) -> int:
    """0 unless every key is a non-empty ``str`` and every value a plain scalar; then 1 when the
    values are only ``str`` and ``int``, 2 when a ``float`` or ``bool`` is among them."""
    kinds = 1
    for key, value in attributes.items():
        kind = type(value)
        if kind not in _PLAIN_KINDS or type(key) is not str or not key:
            return 0
        if kind is float or kind is bool:
            kinds = 2
    return kinds


#: :func:`_plain_kinds` in C for a ``dict``, when the extension was built.
_NATIVE_PLAIN: Any = _native.helper("plain")


def _plain(attributes: Mapping[str, Any]) -> bool:
    """True when every key is a non-empty ``str`` and every value a plain scalar (no cleaning needed)."""
    if _NATIVE_PLAIN is not None and type(attributes) is dict:
        return _NATIVE_PLAIN(attributes) != 0  # type: ignore[no-any-return]
    return _plain_kinds(attributes) != 0


class _FastAttributes(BoundedAttributes):
    """``BoundedAttributes`` that stores plain scalar values without re-cleaning them.

    Only when there is no value-length limit, the limit on the number of
    attributes is not reached, and every key and value is plain; otherwise the
    SDK's own ``_set_items``/``__setitem__`` run.
    """

    def _set_items(self, attributes: Mapping[str, types.AnyValue]) -> None:
        stored = self._dict
        maxlen = self.maxlen
        if (
            self._immutable
            or self.max_value_len is not None
            or (maxlen is not None and len(stored) + len(attributes) > maxlen)
            or not (
                _NATIVE_PLAIN(attributes)
                if _NATIVE_PLAIN is not None and type(attributes) is dict
                else _plain(attributes)
            )
        ):
            super()._set_items(attributes)
            return
        with self._lock:
            if not stored:
                stored.update(attributes)
                return
            for key, value in attributes.items():
                if key in stored:
                    del stored[key]  # the SDK moves a re-set key to the end, too
                stored[key] = value

    def __setitem__(self, key: str, value: types.AnyValue) -> None:
        kind = type(value)
        maxlen = self.maxlen
        if (
            self._immutable
            or self.max_value_len is not None
            or not (kind is str or kind is int or kind is float or kind is bool)
            or type(key) is not str
            or not key
            or (maxlen is not None and len(self._dict) >= maxlen and key not in self._dict)
        ):
            super().__setitem__(key, value)
            return
        with self._lock:
            stored = self._dict
            if key in stored:
                del stored[key]
            stored[key] = value


def _attributes(
    maxlen: int | None, attributes: types.Attributes, max_value_len: int | None, *, plain: bool = False
) -> BoundedAttributes:
    """Fresh mutable attributes holding ``attributes``; ``plain`` when the caller checked :func:`_plain`."""
    if (maxlen is not None and maxlen < 0) or (max_value_len is not None and max_value_len < 0):
        # the SDK's own constructor, for its error
        return _FastAttributes(maxlen, attributes, immutable=False, max_value_len=max_value_len)
    # BoundedAttributes.__init__'s fields, in its order, without its keyword call
    bounded = object.__new__(_FastAttributes)
    bounded._dict = {}
    bounded.maxlen = maxlen
    bounded.dropped = 0
    bounded.max_value_len = max_value_len
    bounded._lock = threading.Lock()
    bounded._immutable = False
    if attributes:
        if plain and max_value_len is None and (maxlen is None or len(attributes) <= maxlen):
            bounded._dict.update(attributes)
        else:
            bounded._set_items(attributes)
    return bounded


_BOUNDED = (BoundedAttributes, _FastAttributes)


def _queued(attributes: Any) -> Any:
    """What a queued span or log record keeps: a plain ``dict`` (untracked by the GC) unless some were dropped.

    The dropped count lives on the bounded container, so it stays when there is one to report.
    """
    if type(attributes) in _BOUNDED and not attributes.dropped:
        return dict(attributes._dict)
    return attributes


# --------------------------------------------------------------------------- traces


_UNSET = Status(StatusCode.UNSET)


class _FastSpan(Span):
    """The SDK span, built field by field with attributes in :class:`_FastAttributes`.

    Sets exactly the fields ``Span.__init__`` sets (``tests/test_fastsdk.py`` compares
    them), without the SDK's throw-away empty attribute container.
    """

    def __init__(
        self,
        name: str,
        context: trace_api.SpanContext,
        parent: trace_api.SpanContext | None,
        sampler: Any,
        resource: Any,
        attributes: types.Attributes,
        span_processor: Any,
        kind: trace_api.SpanKind,
        links: Sequence[trace_api.Link],
        instrumentation_info: Any,
        record_exception: bool,
        set_status_on_exception: bool,
        limits: Any,
        instrumentation_scope: Any,
        record_end_metrics: Any,
    ) -> None:
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = instrumentation_info
        self._instrumentation_scope = instrumentation_scope
        self._parent = parent
        self._start_time = None
        self._end_time = None
        self._resource = resource if resource is not None else Resource.create({})
        self._status = _UNSET
        self._sampler = sampler
        self._trace_config = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._span_processor = span_processor
        self._limits = limits
        self._lock = threading.Lock()
        self._attributes = _attributes(
            limits.max_span_attributes, attributes, limits.max_span_attribute_length
        )
        # Events and links get their bounded lists at first use: most spans have neither,
        # and an empty tuple is two allocations less per span and nothing for the GC to track.
        self._events = ()
        self._links = self._new_links(links) if links else ()
        self._record_end_metrics = record_end_metrics

    def _add_event(self, event: Any) -> None:  # the SDK's, with the list made on first use
        with self._lock:
            if self._end_time is None:
                events: Any = self._events
                if type(events) is tuple:
                    events = self._events = self._new_events()
                events.append(event)
                return
        _sdk_logger.warning("Tried calling %s on an ended span.", "_add_event")

    def _add_link(self, link: trace_api.Link) -> None:  # the SDK's, with the list made on first use
        with self._lock:
            if self._end_time is None:
                links: Any = self._links
                if type(links) is tuple:
                    links = self._links = self._new_links(())
                links.append(link)
                return
        _sdk_logger.warning("Tried calling %s on an ended span.", "_add_link")

    def end_as(self, name: str | None, attributes: Mapping[str, types.AnyValue]) -> None:
        """``update_name(name)`` (unless ``name`` is None), ``set_attributes(attributes)`` and ``end()``.

        The three SDK calls a server span gets when its request ends, under one lock
        pair instead of three, with the same effects in the same order. A span not
        started or already ended takes the three SDK calls, which raise or warn as they do.
        """
        if _NATIVE_END is not None and _NATIVE_END(self, name, attributes):
            return  # the C code of this method's usual case
        with self._lock:
            live = self._start_time is not None and self._end_time is None
            if live:
                if name is not None:
                    self._name = name
                bounded: Any = self._attributes  # the span's own BoundedAttributes, as in Span.end
                bounded._set_items(attributes)
                self._end_time = time_ns()
                bounded._immutable = True
        if not live:
            if name is not None:
                self.update_name(name)
            self.set_attributes(attributes)
            self.end()
            return
        # Span.end's steps after its lock
        if self._record_end_metrics:
            self._record_end_metrics()
        self._span_processor._on_ending(self)
        self._span_processor.on_end(self._readable_span())

    def _readable_span(self) -> ReadableSpan:
        """The SDK's ended-span snapshot, holding plain containers when nothing was dropped.

        The snapshot waits in the export queue for up to a batch; with its attributes
        in a plain ``dict`` of plain values and no empty bounded lists it is two objects
        the garbage collector tracks instead of ten, which is what made queued spans
        trigger full collections under load.
        """
        # ReadableSpan.__init__'s fields, in its order, without its keyword call
        readable = object.__new__(ReadableSpan)
        readable._name = self._name
        readable._context = self._context
        readable._kind = self._kind
        readable._instrumentation_info = self._instrumentation_info
        readable._instrumentation_scope = self._instrumentation_scope
        readable._parent = self._parent
        readable._start_time = self._start_time
        readable._end_time = self._end_time
        readable._attributes = _queued(self._attributes)
        readable._events = self._events
        readable._links = self._links
        readable._resource = self._resource
        readable._status = self._status
        return readable


_SAMPLED = trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED)
_SAMPLED_BIT = trace_api.TraceFlags.SAMPLED
_RECORD_AND_SAMPLE = sampling.Decision.RECORD_AND_SAMPLE
_RECORD_ONLY = sampling.Decision.RECORD_ONLY
_DEFAULT_TRACE_STATE = trace_api.DEFAULT_TRACE_STATE
_TRACE_ID_MAX = 2**128 - 1
_SPAN_ID_MAX = 2**64 - 1
_FLAGS = {
    (sampled, random_id): trace_api.TraceFlags(
        (trace_api.TraceFlags.SAMPLED if sampled else trace_api.TraceFlags.DEFAULT)
        | (trace_api.TraceFlags.RANDOM_TRACE_ID if random_id else 0)
    )
    for sampled in (False, True)
    for random_id in (False, True)
}


class _FastTracer(Tracer):
    """The SDK tracer, starting :class:`_FastSpan` spans.

    Same decisions in the same order as ``Tracer.start_span``: parent from the
    context, enabled check, trace id, sampler, flags, span id, the tracer's own
    metrics, then a recording span or a ``NonRecordingSpan``. The default sampler
    (``parentbased_always_on``) is decided inline: sampled unless the parent is not.
    """

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        if _NATIVE_START is not None:  # the C code of this method's usual case, or None: this method decides
            made = _NATIVE_START(
                self,
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )
            if made is not None:
                return made  # type: ignore[no-any-return]
        links = links or ()
        current = _span_in(context if context is not None else _context.current_context())
        # get_span_context() of the SDK's span types returns this field
        parent: trace_api.SpanContext | None = (
            current._context if type(current) in _SPAN_TYPES else current.get_span_context()
        )
        if parent is not None and not isinstance(parent, trace_api.SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        if not self._is_enabled():
            return trace_api.NonRecordingSpan(context=parent)  # type: ignore[arg-type]  # as the SDK does
        id_generator = self.id_generator
        random_ids = type(id_generator) is RandomIdGenerator  # its methods, inline: getrandbits, never 0
        if parent is None or not (parent[5] if type(parent) is trace_api.SpanContext else parent.is_valid):
            parent = None
            trace_id = (random_ids and _getrandbits(128)) or id_generator.generate_trace_id()
        else:
            trace_id = parent.trace_id
        sampler = self.sampler
        if sampler is sampling.DEFAULT_ON:
            sampled = parent is None or parent.trace_flags.sampled
            decision = sampling.Decision.RECORD_AND_SAMPLE if sampled else sampling.Decision.DROP
            trace_state = parent.trace_state if parent is not None else None
        else:
            result = sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision, trace_state, attributes = result.decision, result.trace_state, result.attributes
        if parent is not None:
            random_id = parent.trace_flags.random_trace_id
        else:
            random_id = random_ids or id_generator.is_trace_id_random()
        span_id = (random_ids and _getrandbits(64)) or id_generator.generate_span_id()
        # Decision.is_sampled() / is_recording(), without their calls
        is_sampled = decision is _RECORD_AND_SAMPLE
        is_recording = is_sampled or decision is _RECORD_ONLY
        # SpanContext.__new__'s tuple, without its keyword call
        span_context = tuple.__new__(
            trace_api.SpanContext,
            (
                trace_id,
                span_id,
                False,
                _FLAGS[is_sampled, bool(random_id)],
                trace_state if trace_state is not None else _DEFAULT_TRACE_STATE,
                0 < trace_id <= _TRACE_ID_MAX and 0 < span_id <= _SPAN_ID_MAX,
            ),
        )
        record_end_metrics = self._tracer_metrics.start_span(parent, decision)
        if not is_recording:
            return trace_api.NonRecordingSpan(context=span_context)
        span = _FastSpan(
            name,
            span_context,
            parent,
            sampler,
            self.resource,
            attributes,
            self.span_processor,
            kind,
            links,
            self.instrumentation_info,
            record_exception,
            set_status_on_exception,
            self._span_limits,
            self._instrumentation_scope,
            record_end_metrics,
        )
        span.start(start_time=start_time, parent_context=context)
        return span


class FastTracerProvider(TracerProvider):
    """The SDK ``TracerProvider`` whose tracers start fast spans.

    Example:
        >>> FastTracerProvider().get_tracer("doc").__class__.__name__
        '_FastTracer'
    """

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if type(tracer) is Tracer:
            tracer.__class__ = _FastTracer  # same fields, one method more specific
        return tracer


class FastBatchSpanProcessor(BatchSpanProcessor):
    """``BatchSpanProcessor`` that lets the export thread catch up instead of dropping a burst (:func:`_make_room`)."""

    def on_end(self, span: ReadableSpan) -> None:
        context = span._context  # ReadableSpan.context
        if type(context) is trace_api.SpanContext:
            if context[3] & _SAMPLED_BIT:  # context.trace_flags.sampled, without two property calls
                _enqueue(self._batch_processor, span)
        elif context and context.trace_flags.sampled:
            _enqueue(self._batch_processor, span)


# --------------------------------------------------------------------------- the export queue


def _enqueue(batch: Any, item: Any) -> None:
    """``BatchProcessor.emit`` without its per-item ``os.getpid()`` system call.

    A forked child's processor is reset by the SDK's ``os.register_at_fork`` hook
    before it handles anything, so the check finds nothing to do. A full queue or a
    shut-down processor goes through ``emit``, which logs and counts the drop.
    """
    queue = batch._queue
    limit = batch._max_queue_size
    if len(queue) >= limit - (limit >> 2):
        _make_room(batch)
    if batch._shutdown or len(queue) == limit:
        batch.emit(item)
        return
    queue.appendleft(item)
    awaken = batch._worker_awaken
    if len(queue) >= batch._max_export_batch_size and not awaken._flag:  # Event.is_set() reads _flag
        awaken.set()


def _make_room(batch: Any) -> None:
    """Give the export thread the GIL when a burst has filled the queue to three quarters.

    The SDK drops what does not fit. A producer that outruns the export thread
    (a log burst: the queue holds 16,384 records) yields its turn instead, so the
    exporter drains the queue while the producer waits for the GIL. It costs
    nothing below the mark. A full queue means the export thread is not draining
    it (the collector is down or hung, the exporter waits in its retry back-off):
    then there is nothing to wait for, so it does not yield and what does not fit
    is dropped and counted as in the SDK. Yielding there cost about 70 µs of wall
    time per record (a quarter of the logging throughput, measured) for nothing.
    """
    size = len(batch._queue)
    limit = batch._max_queue_size
    if limit - (limit >> 2) <= size < limit:
        _yield_gil(0)


#: ``time.sleep(0)``: releases the GIL so a waiting export thread runs (a name of its own for the tests).
_yield_gil = time.sleep


# --------------------------------------------------------------------------- metrics


def _measurement(
    value: float, time_unix_nano: int, instrument: Any, ctx: Context, attributes: dict[str, Any] | None
) -> Measurement:
    """A ``Measurement`` whose (already copied, plain) attributes skip ``__post_init__``'s cleaning."""
    measurement = object.__new__(Measurement)
    setattr_ = object.__setattr__
    setattr_(measurement, "value", value)
    setattr_(measurement, "time_unix_nano", time_unix_nano)
    setattr_(measurement, "instrument", instrument)
    setattr_(measurement, "context", ctx)
    setattr_(measurement, "attributes", attributes)
    return measurement


def _record(
    self: Any, amount: float, attributes: types.Attributes, context: Context | None, magnitude: Any
) -> None:
    """Record ``amount`` (checked as ``magnitude``) the fast way when the input is plain.

    Anything the SDK would clean, warn about or refuse (a negative or non-finite
    number, a ``bool`` amount, non-scalar values, empty or non-``str`` keys) goes to
    the SDK method itself. A plain measurement is copied once, then handed to the
    aggregations this attribute set reached before (see
    :class:`_FastMeasurementConsumer`), or through the consumer the first time.
    """
    kind = type(amount)
    if not (kind is int or kind is float) or magnitude < 0 or not math.isfinite(magnitude):
        _sdk_method(self, amount, attributes, context)
        return
    key: object = _NO_ATTRIBUTES
    if attributes is not None:
        if type(attributes) is not dict:
            _sdk_method(self, amount, attributes, context)
            return
        kinds = _NATIVE_PLAIN(attributes) if _NATIVE_PLAIN is not None else _plain_kinds(attributes)
        if not kinds:
            _sdk_method(self, amount, attributes, context)
            return
        attributes = dict(attributes)
        # True, 1 and 1.0 are equal in Python but separate series: such sets are never remembered
        key = frozenset(attributes.items()) if kinds == 1 else None
    if not self._is_enabled():
        return
    now = time_ns()
    ctx = context or _context.current_context()
    consumer = self._measurement_consumer
    fast_consumer = type(consumer) is _FastMeasurementConsumer
    routes: dict[object, tuple[Any, ...]] = self._oc_routes
    aggregations = routes.get(key) if key is not None and fast_consumer else None
    if aggregations is None:
        measurement = _measurement(amount, now, self, ctx, attributes)
        if not fast_consumer:
            consumer.consume_measurement(measurement)
            return
        aggregations = consumer.consume_measurement(measurement)
        if key is not None and len(routes) < _ROUTES_PER_INSTRUMENT:
            routes[key] = aggregations
        return
    sample = consumer.sample(amount, now, attributes, ctx)
    for aggregation in aggregations:
        # The SDK's aggregate() of its two common aggregations, inline: no Measurement object
        # and two calls less per aggregation. Any other kind gets the SDK's own method.
        kind = type(aggregation)
        if kind is _SumAggregation:
            with aggregation._lock:
                total = aggregation._value
                aggregation._value = (0 if total is None else total) + amount
        elif kind is _ExplicitBucketHistogramAggregation:
            with aggregation._lock:
                counts = aggregation._value
                if counts is None:
                    counts = aggregation._value = aggregation._get_empty_bucket_counts()
                aggregation._sum += amount
                if aggregation._record_min_max:
                    aggregation._min = min(aggregation._min, amount)
                    aggregation._max = max(aggregation._max, amount)
                counts[bisect_left(aggregation._boundaries, amount)] += 1
        else:
            aggregation.aggregate(_measurement(amount, now, self, ctx, attributes), sample)
            continue
        if sample:
            aggregation._reservoir.offer(amount, now, attributes, ctx)


def _sdk_method(self: Any, amount: float, attributes: types.Attributes, context: Context | None) -> None:
    """The SDK's own ``add``/``record``/``set`` of the instrument: cleans, warns and refuses as it does."""
    getattr(type(self), self._oc_method)(self, amount, attributes, context)


#: The route key of a measurement without attributes (``None`` and ``{}`` are the same series).
_NO_ATTRIBUTES: object = frozenset()
#: Attribute sets per instrument whose aggregations are remembered; others take the full path.
_ROUTES_PER_INSTRUMENT = 2048


def _fast_add(
    self: Any, amount: float, attributes: types.Attributes = None, context: Context | None = None
) -> None:
    """``Counter.add`` / ``Histogram.record`` for plain input; the SDK method otherwise."""
    if _NATIVE_RECORD is None or not _NATIVE_RECORD(self, amount, amount, attributes, context):
        _record(self, amount, attributes, context, amount)


def _fast_signed(
    self: Any, amount: float, attributes: types.Attributes = None, context: Context | None = None
) -> None:
    """``UpDownCounter.add`` / ``Gauge.set`` (negative amounts allowed) for plain input."""
    magnitude = -amount if type(amount) in (int, float) and amount < 0 else amount
    if _NATIVE_RECORD is None or not _NATIVE_RECORD(self, amount, magnitude, attributes, context):
        _record(self, amount, attributes, context, magnitude)


def _aggregate_other(
    aggregation: Any, instrument: Any, amount: float, now: int, ctx: Context, attributes: Any, sample: bool
) -> None:
    """An aggregation kind the C ``record`` does not update itself: the SDK's ``aggregate()``, as in :func:`_record`."""
    aggregation.aggregate(_measurement(amount, now, instrument, ctx, attributes), sample)


#: SDK instrument class -> (the method to replace, its fast version). The instance
#: keeps its class: the SDK looks up temporality and aggregation by exact class.
_FAST_INSTRUMENTS: dict[type, tuple[str, Any]] = {
    _Counter: ("add", _fast_add),
    _UpDownCounter: ("add", _fast_signed),
    _Histogram: ("record", _fast_add),
    _Gauge: ("set", _fast_signed),
}


def _aggregation_key(attributes: dict[str, Any]) -> object:
    """The aggregation key: a frozenset for ``str``/``int`` values, the SDK's hash otherwise.

    ``bool`` and ``float`` values go to the SDK's typed hash so that ``True``, ``1``
    and ``1.0`` stay separate series, as they are in the SDK. Both key kinds are
    deterministic per attribute set, and a frozenset never equals a tuple.
    """
    for value in attributes.values():
        kind = type(value)
        if kind is not str and kind is not int:
            return _hash_attributes(attributes)
    return frozenset(attributes.items())


def _consume(match: _ViewInstrumentMatch, measurement: Measurement, should_sample_exemplar: bool) -> Any:
    """``_ViewInstrumentMatch.consume_measurement`` with a cheaper key and view filter; returns the aggregation.

    ``measurement.attributes`` is always a private dict here (the SDK's cleaning
    or our fast path copied it), so it is not copied again.
    """
    attributes: dict[str, Any] = measurement.attributes or {}  # type: ignore[assignment]
    view = match._view
    keys = view._attribute_keys
    if keys is not None:
        denied = getattr(keys, "denied", None)
        if denied is not None:
            if not denied.isdisjoint(attributes):
                attributes = {k: v for k, v in attributes.items() if k not in denied}
        else:
            attributes = {k: v for k, v in attributes.items() if k in keys}
    key = _aggregation_key(attributes)
    aggregations = match._attributes_aggregation
    aggregation = aggregations.get(key)  # type: ignore[call-overload]
    if aggregation is None:
        with match._lock:
            aggregation = aggregations.get(key)  # type: ignore[call-overload]
            if aggregation is None:
                factory = view._aggregation
                if isinstance(factory, DefaultAggregation):
                    factory = match._instrument_class_aggregation[match._instrument.__class__]
                reservoirs = view._exemplar_reservoir_factory
                if reservoirs is _default_reservoir_factory:
                    reservoirs = _fast_reservoir_factory
                aggregation = factory._create_aggregation(
                    match._instrument, attributes, reservoirs, time_ns()
                )
                aggregations[key] = aggregation  # type: ignore[index]
    aggregation.aggregate(measurement, should_sample_exemplar)
    return aggregation


#: Span classes whose ``get_span_context`` is the plain field read; any other object in the
#: context goes through ``trace.get_current_span`` (its ABC check) as in the SDK.
_SPAN_TYPES = frozenset({_FastSpan, Span, NonRecordingSpan})


def _span_in(ctx: Context | None) -> Any:
    """``trace.get_current_span(ctx)`` without the ABC ``isinstance`` for the SDK's own span types.

    A given context without a span gives ``INVALID_SPAN``, as ``get_current_span`` does.
    """
    if ctx is not None:
        span = ctx.get(_SPAN_KEY)
        if span is None:
            return INVALID_SPAN
        if type(span) in _SPAN_TYPES:
            return span
    return trace_api.get_current_span(ctx)


class _FastBucket(ExemplarBucket):
    """``ExemplarBucket.offer``, finding the span the cheaper way (its fields are name-mangled)."""

    def offer(
        self, value: float, time_unix_nano: int, attributes: types.Attributes, context: Context
    ) -> None:
        self._ExemplarBucket__value = value
        self._ExemplarBucket__time_unix_nano = time_unix_nano
        self._ExemplarBucket__attributes = attributes
        span = _span_in(context)
        if span != INVALID_SPAN:
            span_context = span.get_span_context()
            self._ExemplarBucket__span_id = span_context.span_id
            self._ExemplarBucket__trace_id = span_context.trace_id
        self._ExemplarBucket__offered = True


class _FastBuckets:
    """Mixin for the SDK's fixed-size reservoirs: their buckets are :class:`_FastBucket`."""

    _reservoir_storage: Mapping[int, ExemplarBucket]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reservoir_storage = defaultdict(_FastBucket)


class _FastSimpleReservoir(_FastBuckets, SimpleFixedSizeExemplarReservoir):
    """The SDK's uniformly-weighted reservoir in one call, drawing with ``random()`` instead of ``randrange``."""

    def offer(
        self, value: float, time_unix_nano: int, attributes: types.Attributes, context: Context
    ) -> None:
        with self._lock:
            seen = self._measurements_seen
            self._measurements_seen = seen + 1
            # the first `size` measurements fill the buckets; then each is kept with probability size/seen
            index = seen if seen < self._size else int(_random() * (seen + 1))
            if index < self._size:
                self._reservoir_storage[index].offer(value, time_unix_nano, attributes, context)


class _FastAlignedReservoir(_FastBuckets, AlignedHistogramBucketExemplarReservoir):
    """The SDK's last-measurement-per-histogram-bucket reservoir, the bucket found by bisection."""

    def offer(
        self, value: float, time_unix_nano: int, attributes: types.Attributes, context: Context
    ) -> None:
        with self._lock:
            # the first boundary >= value, as the SDK's linear search and the histogram's own bisect_left
            index = bisect_left(self._boundaries, value)
            self._reservoir_storage[index].offer(value, time_unix_nano, attributes, context)


def _fast_reservoir_factory(aggregation_type: type) -> Any:
    """The SDK's default reservoir choice, with the fast classes above."""
    builder: Any = _default_reservoir_factory(aggregation_type)
    if builder is SimpleFixedSizeExemplarReservoir:
        return _FastSimpleReservoir
    if builder is AlignedHistogramBucketExemplarReservoir:
        return _FastAlignedReservoir
    return builder


class _FastMeasurementConsumer(SynchronousMeasurementConsumer):
    """The SDK's consumer, telling the caller which aggregations took the measurement.

    The SDK never removes an aggregation once created (an attribute set keeps its
    series for the provider's life) and a provider's readers and views are fixed,
    so an instrument may remember them per attribute set (:func:`_record`) and
    hand the next measurement of that set straight to them.
    """

    def should_sample_exemplar(self, measurement: Measurement) -> bool:
        return self.sample(
            measurement.value, measurement.time_unix_nano, measurement.attributes, measurement.context
        )

    def sample(self, value: float, time_unix_nano: int, attributes: types.Attributes, ctx: Context) -> bool:
        """Whether the exemplar filter samples this measurement (``should_sample_exemplar`` without one)."""
        exemplar_filter = self._sdk_config.exemplar_filter
        if type(exemplar_filter) is TraceBasedExemplarFilter and ctx is not None:
            # TraceBasedExemplarFilter.should_sample, without the API's ABC check for our spans
            return bool(_span_in(ctx).get_span_context().trace_flags.sampled)
        return exemplar_filter.should_sample(value, time_unix_nano, attributes, ctx)

    def consume_measurement(self, measurement: Measurement) -> tuple[Any, ...]:  # type: ignore[override]
        sample = self.should_sample_exemplar(measurement)
        return tuple(
            _consume(match, measurement, sample)
            for storage in self._reader_storages.values()
            for match in storage._get_or_init_view_instrument_match(measurement.instrument)
        )


class _FastMeter(Meter):
    def _fast(self, instrument: Any) -> Any:
        fast = _FAST_INSTRUMENTS.get(type(instrument))
        if fast is not None and "_oc_method" not in vars(instrument):
            method, function = fast
            instrument._oc_method = method
            instrument._oc_routes = {}  # attribute set -> its aggregations (see _record)
            setattr(instrument, method, MethodType(function, instrument))
        return instrument

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return self._fast(super().create_counter(name, unit, description))

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return self._fast(super().create_up_down_counter(name, unit, description))

    def create_histogram(self, *args: Any, **kwargs: Any) -> Any:
        return self._fast(super().create_histogram(*args, **kwargs))

    def create_gauge(self, *args: Any, **kwargs: Any) -> Any:
        return self._fast(super().create_gauge(*args, **kwargs))


class FastMeterProvider(MeterProvider):
    """The SDK ``MeterProvider`` with fast instruments and measurement consumer.

    Example:
        >>> provider = FastMeterProvider()
        >>> provider.get_meter("doc").create_counter("c").add.__name__
        '_fast_add'
        >>> provider.shutdown()
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self._measurement_consumer) is SynchronousMeasurementConsumer:
            self._measurement_consumer.__class__ = _FastMeasurementConsumer

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        meter = super().get_meter(*args, **kwargs)
        if type(meter) is Meter:
            meter.__class__ = _FastMeter
        return meter


def _native_record() -> Any:
    """The C ``record`` (the remembered-series case of :func:`_record`), configured, or ``None``.

    ``None`` when the extension was not built or is switched off (see :mod:`otel_correlate._native`):
    every measurement then takes :func:`_record`, which stays the definition of what it does.
    """
    configure = _native.helper("configure_metrics")
    record = _native.helper("record")
    if configure is None or record is None:
        return None
    configure(
        _FastMeasurementConsumer,
        _SumAggregation,
        _ExplicitBucketHistogramAggregation,
        _FastAlignedReservoir,
        _FastSimpleReservoir,
        _FastBucket,
        TraceBasedExemplarFilter,
        _SPAN_TYPES,
        _SPAN_KEY,
        INVALID_SPAN,
        _context.current_context,
        globals(),  # time_ns, _random, _span_in and _aggregate_other: looked up at each use, as here
        time.time_ns,
        _NO_ATTRIBUTES,
        trace_api.SpanContext,
        trace_api.TraceFlags,
        _ProxyMeterConfig,
        Context,
    )
    return record


_NATIVE_RECORD: Any = _native_record()


def _native_start() -> Any:
    """The C ``start_span`` (:meth:`_FastTracer.start_span`'s usual case), configured, or ``None``.

    It needs the types ``configure_metrics`` gave the extension (the context, the span
    context, the span types), so it is on only when the C ``record`` is.
    """
    configure = _native.helper("configure_spans")
    start = _native.helper("start_span")
    if configure is None or start is None or _NATIVE_RECORD is None:
        return None
    configure(
        _FastTracer,
        _FastSpan,
        _FastAttributes,
        RandomIdGenerator,
        sampling.DEFAULT_ON,
        sampling.Decision.RECORD_AND_SAMPLE,
        _FLAGS[True, False],
        _FLAGS[True, True],
        _DEFAULT_TRACE_STATE,
        _UNSET,
        threading.Lock,
        vars(sdk_trace),  # Span.start's clock: the SDK module's time_ns, looked up at each start
        _TRACE_ID_MAX,
        _SPAN_ID_MAX,
        ReadableSpan,
    )
    configure_sampling = _native.helper("configure_sampling")
    if configure_sampling is not None:  # a stale build without it: the default sampler's sampled spans only
        configure_sampling(
            _own_types(
                sampling.ParentBased,
                "ParentBasedTraceIdRatio",
                "_ParentBasedAlwaysOff",
                "_ParentBasedAlwaysOn",
            ),
            sampling.ParentBased.should_sample,
            sampling.TraceIdRatioBased,
            sampling.TraceIdRatioBased.should_sample,
            _own_types(sampling.StaticSampler, "_AlwaysOff", "_AlwaysOn"),
            sampling.StaticSampler.should_sample,
            sampling.Decision.DROP,
            _FLAGS[False, False],
            _FLAGS[False, True],
            trace_api.NonRecordingSpan,
        )
    return start


def _own_types(base: type[sampling.Sampler], *names: str) -> tuple[type, ...]:
    """``base`` and those of the SDK sampling module's ``names`` that subclass it without their own ``should_sample``.

    The environment's samplers are instances of these (``OTEL_TRACES_SAMPLER``), and the C
    ``start_span`` decides for them as ``base.should_sample`` does.
    """
    found = [getattr(sampling, name, None) for name in names]
    return (
        base,
        *(
            t
            for t in found
            if isinstance(t, type)
            and issubclass(t, base)
            and getattr(t, "should_sample", None) is base.should_sample
        ),
    )


_NATIVE_START: Any = _native_start()
#: The C ``end_span`` (:meth:`_FastSpan.end_as` for a live span and plain attributes), on with the C start.
_NATIVE_END: Any = None if _NATIVE_START is None else _native.helper("end_span")


def does_nothing(function: Any) -> bool:
    """True for a plain function whose body only returns ``None`` (``pass``, a docstring, or both).

    The C span processor dispatch skips the calls of such methods, so only functions
    this check passes are ever registered (:func:`ignore_empty_span_methods`): a
    method the SDK fills in later is called again without a change here.

    Example:
        >>> does_nothing(SpanProcessor.on_start), does_nothing(BatchSpanProcessor.on_end)
        (True, False)
    """
    code = getattr(function, "__code__", None)
    if not isinstance(function, FunctionType) or code is None or function.__closure__:
        return False
    if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR):
        return False  # calling it makes an object
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("RESUME", "NOP", "RETURN_VALUE"):
            continue
        if instruction.opname in ("LOAD_CONST", "RETURN_CONST") and instruction.argval is None:
            continue
        return False
    return True


#: The span processor methods the C dispatch may skip, by name: (function, its code) pairs.
_EMPTY_SPAN_METHODS: dict[str, list[tuple[Any, Any]]] = {"on_start": [], "_on_ending": [], "on_end": []}


def _binds(function: Any, name: str) -> bool:
    """Whether the SDK's call of span processor method ``name`` binds to ``function``'s parameters."""
    try:
        signature = inspect.signature(function)
        extra = {"parent_context": None} if name == "on_start" else {}
        signature.bind(None, None, **extra)  # (self, span[, parent_context=...])
    except (TypeError, ValueError):
        return False
    return True


def ignore_empty_span_methods(*methods: Any) -> None:
    """Let the C dispatch skip these span processor methods, those of them that do nothing.

    The span's start and end in C call each processor of the SDK's multi span
    processor themselves (``dispatch`` in ``_otlp_native.c``), as its Python loop
    does; a method registered here and found on a processor under its own name, with
    the code it has now, is not called, which is what calling it would have done.
    :class:`FastBatchSpanProcessor`'s ``on_end`` is done in C as well. Registered are
    only methods that :func:`does_nothing` passes and whose parameters take the SDK's
    call, so a call that would raise is still made.
    """
    for method in methods:
        name = getattr(method, "__name__", None)
        known = _EMPTY_SPAN_METHODS.get(name) if isinstance(name, str) else None
        if known is None or not does_nothing(method) or not _binds(method, name):  # type: ignore[arg-type]
            continue
        if (method, method.__code__) not in known:
            known.append((method, method.__code__))
    configure = _native.helper("configure_span_dispatch")
    if configure is None or _NATIVE_START is None:
        return
    multi = sdk_trace.SynchronousMultiSpanProcessor
    configure(
        multi,
        (multi.on_start, multi._on_ending, multi.on_end),
        tuple(tuple(_EMPTY_SPAN_METHODS[name]) for name in ("on_start", "_on_ending", "on_end")),
        FastBatchSpanProcessor.on_end,
        Tracer._is_enabled,
        NoOpTracerMetrics,
        NoOpTracerMetrics.start_span,
        _tracer_metrics_noop,
    )


ignore_empty_span_methods(
    SpanProcessor.on_start,
    SpanProcessor._on_ending,
    SpanProcessor.on_end,
    BatchSpanProcessor.on_start,
    BatchSpanProcessor._on_ending,
)


def own_span_processors(*processors: type) -> None:
    """Name the span processors that keep an ended span's snapshot nowhere but in our export queue.

    The C span end takes the snapshot off the garbage collector's lists only when every
    processor of the provider is :class:`FastBatchSpanProcessor` or one of these: a
    user's processor might keep it in a reference cycle, which the collector could then
    not free.
    """
    configure = _native.helper("configure_span_owners")
    if configure is not None:
        configure(sdk_trace.SynchronousMultiSpanProcessor, (FastBatchSpanProcessor, *processors))
