"""Telemetry captured in memory through otel-correlate's real pipeline.

The pytest plugin's ``otel_capture`` fixture is built on :func:`install_capture`;
it lives here, free of pytest, so its types can be imported anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_correlate._pipeline import Providers


@dataclass(frozen=True)
class MetricPoint:
    """One data point of one metric, flattened for assertions.

    Attributes:
        name: The instrument name (``orders.created``).
        unit: The instrument unit.
        attributes: The point's attributes (business keys never appear here).
        value: The sum or gauge value; for histograms the sum of recorded values.
        count: For histograms, how many values were recorded; else ``None``.
        exemplars: ``filtered_attributes`` and ``trace_id`` of each exemplar.
    """

    name: str
    unit: str
    attributes: dict[str, Any]
    value: float
    count: int | None = None
    exemplars: tuple[dict[str, Any], ...] = field(default=())


@dataclass
class TelemetryCapture:
    """Spans, log records and metric points exported since the test started."""

    span_exporter: InMemorySpanExporter
    log_exporter: InMemoryLogRecordExporter
    metric_reader: InMemoryMetricReader
    providers: Providers

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.span_exporter.get_finished_spans())

    def logs(self) -> list[ReadableLogRecord]:
        """Emitted log records (loguru and stdlib), in order."""
        return list(self.log_exporter.get_finished_logs())

    def metrics(self) -> list[MetricPoint]:
        """Metric points recorded since the last call (delta temporality)."""
        data = self.metric_reader.get_metrics_data()
        points: list[MetricPoint] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        exemplars = tuple(
                            {
                                "filtered_attributes": dict(e.filtered_attributes or {}),
                                "trace_id": format(e.trace_id, "032x") if e.trace_id else None,
                            }
                            for e in getattr(point, "exemplars", ()) or ()
                        )
                        points.append(
                            MetricPoint(
                                name=metric.name,
                                unit=metric.unit or "",
                                attributes=dict(point.attributes or {}),
                                value=getattr(point, "value", getattr(point, "sum", 0)),
                                count=getattr(point, "count", None),
                                exemplars=exemplars,
                            )
                        )
        return points

    def clear(self) -> None:
        """Forget everything captured so far."""
        self.span_exporter.clear()
        self.log_exporter.clear()
        self.metric_reader.get_metrics_data()


_CAPTURE: TelemetryCapture | None = None


def install_capture() -> TelemetryCapture:
    """Install the in-memory pipeline as the global providers, once per process."""
    global _CAPTURE
    if _CAPTURE is not None:
        return _CAPTURE
    from opentelemetry import metrics, trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk.resources import Resource

    from otel_correlate import _logs, _pipeline

    delta = AggregationTemporality.DELTA
    span_exporter = InMemorySpanExporter()
    log_exporter = InMemoryLogRecordExporter()
    reader = InMemoryMetricReader(
        preferred_temporality={
            Counter: delta,
            UpDownCounter: delta,
            Histogram: delta,
            ObservableCounter: delta,
            ObservableUpDownCounter: delta,
        }
    )
    providers = _pipeline.build_providers(
        resource=Resource.create({"service.name": "pytest"}),
        span_exporters=[span_exporter],
        log_exporters=[log_exporter],
        metric_readers=[reader],
        batch=False,
    )
    trace.set_tracer_provider(providers.tracer_provider)
    metrics.set_meter_provider(providers.meter_provider)
    set_logger_provider(providers.logger_provider)
    _logs.instrument_loguru(console=False, level="DEBUG")
    _logs.instrument_logging()
    if trace.get_tracer_provider() is not providers.tracer_provider:
        raise RuntimeError(
            "otel_capture could not install its providers: OpenTelemetry was already configured in "
            "this process (running pytest under opentelemetry-instrument?). Run pytest without it."
        )
    _CAPTURE = TelemetryCapture(span_exporter, log_exporter, reader, providers)
    return _CAPTURE
