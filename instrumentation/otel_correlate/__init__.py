"""otel-correlate: OpenTelemetry for FastAPI and Flask with orderId and requestId everywhere.

Start a service with ``opentelemetry-instrument`` and every span, log record and
outgoing call carries the business keys; this module is the small API for the
code that wants to set them, trace a function or count a business event.

Example:
    >>> from otel_correlate import business_context, traced
    >>> @traced
    ... def ship(order_id: str) -> None:
    ...     with business_context(orderId=order_id):
    ...         pass
"""

from otel_correlate._business_metrics import (
    record_notification,
    record_order_created,
    record_order_status_change,
)
from otel_correlate._capture import MetricPoint, TelemetryCapture
from otel_correlate._context import business_context, current_business_keys, current_request_id
from otel_correlate._fastapi import RequestContextMiddleware, instrument_fastapi_app
from otel_correlate._flask import instrument_flask_app
from otel_correlate._logs import InterceptHandler, OTelLoggingHandler, instrument_loguru
from otel_correlate._settings import SettingError
from otel_correlate._traced import traced

__all__ = [
    "InterceptHandler",
    "MetricPoint",
    "OTelLoggingHandler",
    "RequestContextMiddleware",
    "SettingError",
    "TelemetryCapture",
    "business_context",
    "current_business_keys",
    "current_request_id",
    "instrument_fastapi_app",
    "instrument_flask_app",
    "instrument_loguru",
    "record_notification",
    "record_order_created",
    "record_order_status_change",
    "traced",
]
