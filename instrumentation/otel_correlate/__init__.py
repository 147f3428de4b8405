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
