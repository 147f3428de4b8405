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

The names below load on first use (PEP 562): ``opentelemetry-instrument`` imports
this package in every service, and a Flask service should not pay for FastAPI,
pydantic and httpx because the API also has FastAPI health routes and a
Telegram notifier.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_correlate._background import BoundedWorker
    from otel_correlate._business_metrics import (
        record_notification,
        record_order_created,
        record_order_status_change,
    )
    from otel_correlate._capture import MetricPoint, TelemetryCapture
    from otel_correlate._context import business_context, current_business_keys, current_request_id
    from otel_correlate._dead_letters import DeadLetter, DeadLetterStore
    from otel_correlate._fastapi import RequestContextMiddleware, instrument_fastapi_app
    from otel_correlate._flask import instrument_flask_app
    from otel_correlate._health import (
        CheckOutcome,
        CheckResult,
        CheckStatus,
        DeploymentInfo,
        HealthMonitor,
        HealthReport,
        OverallStatus,
        health_monitor,
    )
    from otel_correlate._health_checks import collector_check, http_check, sql_check
    from otel_correlate._health_fastapi import health_router, mount_health_fastapi
    from otel_correlate._health_flask import health_blueprint, mount_health_flask
    from otel_correlate._logs import InterceptHandler, OTelLoggingHandler, instrument_loguru
    from otel_correlate._notify import (
        NotificationResult,
        TelegramNotifier,
        TelegramOptions,
        TelegramRejected,
        notification_summary,
    )
    from otel_correlate._resilience import (
        BreakerOptions,
        BreakerState,
        CircuitBreaker,
        CircuitOpenError,
        circuit_breakers,
    )
    from otel_correlate._retry import RetryableError, RetryAttempt, RetryPolicy, retry_call, retry_call_async
    from otel_correlate._settings import SettingError
    from otel_correlate._traced import traced

#: Public name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    "BoundedWorker": "_background",
    "BreakerOptions": "_resilience",
    "BreakerState": "_resilience",
    "CheckOutcome": "_health",
    "CheckResult": "_health",
    "CheckStatus": "_health",
    "CircuitBreaker": "_resilience",
    "CircuitOpenError": "_resilience",
    "DeadLetter": "_dead_letters",
    "DeadLetterStore": "_dead_letters",
    "DeploymentInfo": "_health",
    "HealthMonitor": "_health",
    "HealthReport": "_health",
    "InterceptHandler": "_logs",
    "MetricPoint": "_capture",
    "NotificationResult": "_notify",
    "OTelLoggingHandler": "_logs",
    "OverallStatus": "_health",
    "RequestContextMiddleware": "_fastapi",
    "RetryAttempt": "_retry",
    "RetryPolicy": "_retry",
    "RetryableError": "_retry",
    "SettingError": "_settings",
    "TelegramNotifier": "_notify",
    "TelegramOptions": "_notify",
    "TelegramRejected": "_notify",
    "TelemetryCapture": "_capture",
    "business_context": "_context",
    "circuit_breakers": "_resilience",
    "collector_check": "_health_checks",
    "current_business_keys": "_context",
    "current_request_id": "_context",
    "health_blueprint": "_health_flask",
    "health_monitor": "_health",
    "health_router": "_health_fastapi",
    "http_check": "_health_checks",
    "instrument_fastapi_app": "_fastapi",
    "instrument_flask_app": "_flask",
    "instrument_loguru": "_logs",
    "mount_health_fastapi": "_health_fastapi",
    "mount_health_flask": "_health_flask",
    "notification_summary": "_notify",
    "record_notification": "_business_metrics",
    "record_order_created": "_business_metrics",
    "record_order_status_change": "_business_metrics",
    "retry_call": "_retry",
    "retry_call_async": "_retry",
    "sql_check": "_health_checks",
    "traced": "_traced",
}

__all__ = [
    "BoundedWorker",
    "BreakerOptions",
    "BreakerState",
    "CheckOutcome",
    "CheckResult",
    "CheckStatus",
    "CircuitBreaker",
    "CircuitOpenError",
    "DeadLetter",
    "DeadLetterStore",
    "DeploymentInfo",
    "HealthMonitor",
    "HealthReport",
    "InterceptHandler",
    "MetricPoint",
    "NotificationResult",
    "OTelLoggingHandler",
    "OverallStatus",
    "RequestContextMiddleware",
    "RetryAttempt",
    "RetryPolicy",
    "RetryableError",
    "SettingError",
    "TelegramNotifier",
    "TelegramOptions",
    "TelegramRejected",
    "TelemetryCapture",
    "business_context",
    "circuit_breakers",
    "collector_check",
    "current_business_keys",
    "current_request_id",
    "health_blueprint",
    "health_monitor",
    "health_router",
    "http_check",
    "instrument_fastapi_app",
    "instrument_flask_app",
    "instrument_loguru",
    "mount_health_fastapi",
    "mount_health_flask",
    "notification_summary",
    "record_notification",
    "record_order_created",
    "record_order_status_change",
    "retry_call",
    "retry_call_async",
    "sql_check",
    "traced",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_correlate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"otel_correlate.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
