"""The orders service (FastAPI): creates orders and changes their status.

Every order event calls the notifications service over HTTP; the call carries
orderId and requestId in W3C baggage without any code here. Start it with:

    opentelemetry-instrument --service_name orders uvicorn examples.orders.app:app --port 8001
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from loguru import logger
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from pydantic import BaseModel, Field

from otel_correlate import (
    business_context,
    collector_check,
    current_request_id,
    health_monitor,
    http_check,
    mount_health_fastapi,
    record_order_created,
    record_order_status_change,
    traced,
)

NOTIFICATIONS_URL = os.environ.get("NOTIFICATIONS_URL", "http://127.0.0.1:8002")
NOTIFY_TIMEOUT = float(os.environ.get("NOTIFY_TIMEOUT", "5"))
STUCK_AFTER_SECONDS = 24 * 3600

TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset({"delivered"}),
    "delivered": frozenset(),
    "cancelled": frozenset(),
}


@dataclass
class Order:
    id: str
    customer: str
    amount: float
    status: str = "new"
    created: float = field(default_factory=time.time)


ORDERS: dict[str, Order] = {}


def _orders_by_status(_options: CallbackOptions) -> list[Observation]:
    counts = dict.fromkeys(TRANSITIONS, 0)
    for order in list(ORDERS.values()):
        counts[order.status] += 1
    return [Observation(count, {"status": status}) for status, count in counts.items()]


def _orders_stuck(_options: CallbackOptions) -> list[Observation]:
    now = time.time()
    stuck = sum(
        1 for o in list(ORDERS.values()) if o.status == "new" and now - o.created > STUCK_AFTER_SECONDS
    )
    return [Observation(stuck)]


_meter = metrics.get_meter("examples.orders")
_meter.create_observable_gauge(
    "orders.by_status", [_orders_by_status], unit="{order}", description="Orders currently in each status."
)
_meter.create_observable_gauge(
    "orders.stuck_new",
    [_orders_stuck],
    unit="{order}",
    description="Orders still in status new more than 24 h after they were created.",
)


class NewOrder(BaseModel):
    customer: str = Field(min_length=1, max_length=100)
    amount: float = Field(gt=0)


class StatusChange(BaseModel):
    status: str


app = FastAPI(title="orders")
# One client for the process: building a client per call costs milliseconds (TLS context, pools).
notifications = httpx.Client(base_url=NOTIFICATIONS_URL, timeout=NOTIFY_TIMEOUT)


@traced
def notify(order: Order, event: str) -> bool:
    """Tell the notifications service; never fails the order flow."""
    try:
        response = notifications.post(
            "/notify", json={"orderId": order.id, "event": event, "text": f"Order {order.id}: {event}"}
        )
        response.raise_for_status()
        return True
    except httpx.HTTPError as exc:
        logger.warning("notification for order {} failed: {}", order.id, exc)
        return False


@app.exception_handler(RuntimeError)
async def internal_error(request: Request, exc: RuntimeError) -> JSONResponse:
    """A failure inside the service: logged with its stack (and trace id), answered as a 500."""
    logger.opt(exception=exc).error("request failed: {}", exc)
    return JSONResponse(
        status_code=500, content={"error": "internal error", "requestId": current_request_id()}
    )


@app.post("/orders", status_code=201)
def create_order(body: NewOrder, request: Request) -> dict[str, object]:
    if request.headers.get("x-simulate-failure"):
        raise RuntimeError("simulated failure while creating an order")
    order = Order(id=f"ORD-{secrets.token_hex(4)}", customer=body.customer, amount=body.amount)
    with business_context(orderId=order.id):
        ORDERS[order.id] = order
        record_order_created()
        logger.info("order created for {} amount {}", body.customer, body.amount)
        notified = notify(order, "created")
    return {"orderId": order.id, "status": order.status, "notified": notified}


@app.get("/orders/{order_id}")
def get_order(order_id: str) -> dict[str, object]:
    order = ORDERS.get(order_id)
    if order is None:
        logger.info("order not found")
        raise HTTPException(status_code=404, detail=f"order {order_id} not found")
    return {"orderId": order.id, "status": order.status, "customer": order.customer}


@app.post("/orders/{order_id}/status")
def change_status(order_id: str, body: StatusChange) -> dict[str, object]:
    order = ORDERS.get(order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"order {order_id} not found")
    if body.status not in TRANSITIONS[order.status]:
        logger.warning("rejected status change {} -> {}", order.status, body.status)
        raise HTTPException(
            status_code=409, detail=f"order {order_id} cannot go from {order.status} to {body.status}"
        )
    previous, order.status = order.status, body.status
    record_order_status_change(from_status=previous, to_status=order.status)
    logger.info("order status changed {} -> {}", previous, order.status)
    notified = notify(order, f"status {order.status}")
    return {"orderId": order.id, "status": order.status, "notified": notified}


# Health endpoints last, so they never shadow a route of the service itself.
health = health_monitor()
health.add("collector", collector_check(), critical=False)
health.add("notifications", http_check(f"{NOTIFICATIONS_URL}/health", warn_after_ms=500), critical=False)
mount_health_fastapi(app)
