"""otel-correlate's telemetry about itself: rejections and export failures.

Telemetry must never break the application and must never fail silently: every
value we reject and every export that fails is counted in a metric. Export
failures are also logged on the ``otel_correlate`` logger, which
:func:`otel_correlate._pipeline.guard_internal_logs` rate-limits to one line per
kind per ``OTEL_CORRELATE_EXPORT_ERROR_INTERVAL`` seconds.
"""

from __future__ import annotations

import logging

from opentelemetry import metrics

_log = logging.getLogger("otel_correlate")
_meter = metrics.get_meter("otel_correlate")
_rejections = _meter.create_counter(
    "otel_correlate.context.rejected",
    unit="{value}",
    description="Business-key values rejected (invalid header, baggage or code value).",
)
_export_failures = _meter.create_counter(
    "otel_correlate.export.failures",
    unit="{batch}",
    description="Telemetry batches an exporter failed to send.",
)


def count_rejection(key: str, reason: str, *, source: str) -> None:
    """Count one rejected business-key value; never raises."""
    try:
        _rejections.add(1, {"key": key, "reason": reason, "source": source})
    except Exception:  # pragma: no cover - the API's no-op never raises
        pass


def count_export_failure(signal: str, error: str) -> None:
    """Count a failed export of ``signal`` and log it at a sane rate; never raises."""
    try:
        _export_failures.add(1, {"signal": signal})
        _log.warning(
            "otel-correlate: exporting %s failed: %s. The application is unaffected; "
            "check that the collector at OTEL_EXPORTER_OTLP_ENDPOINT is reachable.",
            signal,
            error,
        )
    except Exception:  # pragma: no cover - logging must not raise into exporters
        pass
