"""Business metrics the seed teams track: orders and notifications.

Names follow OpenTelemetry conventions (dotted, with a unit); Prometheus sees
them as ``orders_created_total``, ``orders_status_changes_total`` and
``notifications_total``. Attributes are low-cardinality by design: statuses and
channels, never an orderId (the metric guard would drop it anyway).

Example:
    >>> from otel_correlate import record_order_created, record_order_status_change
    >>> record_order_created()
    >>> record_order_status_change(from_status="new", to_status="paid")
"""

from __future__ import annotations

from opentelemetry import metrics

_meter = metrics.get_meter("otel_correlate.business")
_orders_created = _meter.create_counter("orders.created", unit="{order}", description="Orders created.")
_status_changes = _meter.create_counter(
    "orders.status_changes",
    unit="{change}",
    description="Order status transitions, by from and to status.",
)
_notifications = _meter.create_counter(
    "notifications",
    unit="{notification}",
    description="Notifications by channel and outcome (sent or failed).",
)

NOTIFICATION_OUTCOMES = ("sent", "failed")


def record_order_created(*, channel: str = "api") -> None:
    """Count one created order.

    Args:
        channel: Where the order came from (``api``, ``web``, ``import``...), low-cardinality.
    """
    _orders_created.add(1, {"channel": channel})


def record_order_status_change(*, from_status: str, to_status: str) -> None:
    """Count one order status transition (``from`` → ``to``)."""
    _status_changes.add(1, {"from": from_status, "to": to_status})


def record_notification(*, channel: str, outcome: str) -> None:
    """Count one notification attempt that ended in ``outcome`` (``sent`` or ``failed``).

    Raises:
        ValueError: ``outcome`` is not ``sent`` or ``failed``.
    """
    if outcome not in NOTIFICATION_OUTCOMES:
        raise ValueError(f"outcome={outcome!r}: use one of {', '.join(NOTIFICATION_OUTCOMES)}")
    _notifications.add(1, {"channel": channel, "outcome": outcome})
