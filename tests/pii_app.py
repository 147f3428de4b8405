"""A FastAPI service that puts personal data everywhere telemetry can carry it.

``tests/test_data_protection_e2e.py`` runs it under opentelemetry-instrument and
proves none of it reaches Tempo, Loki or Prometheus. One request puts the
customer's e-mail, phone, card number and bearer token (a JWT) into span
attributes, a span event, the span status, loguru lines (message, ``extra``,
an exception), a stdlib logging line and the attributes of a counter.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from loguru import logger
from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel

from otel_correlate import business_context

app = FastAPI(title="pii")
_checks = metrics.get_meter("tests.pii").create_counter("pii.checks", unit="{check}")
_stdlib = logging.getLogger("tests.pii")
_stdlib.setLevel(logging.INFO)


class Customer(BaseModel):
    run: str
    email: str
    phone: str
    card: str
    token: str


@app.post("/customers/{order_id}/contact")
def contact(order_id: str, customer: Customer) -> dict[str, str]:
    with business_context(orderId=order_id):
        span = trace.get_current_span()
        span.set_attributes(
            {
                "run": customer.run,
                "customer.email": customer.email,
                "customer.note": f"call {customer.phone}, card {customer.card}",
                "auth.header": f"Bearer {customer.token}",
            }
        )
        span.add_event("contact.checked", {"detail": f"mail {customer.email} phone {customer.phone}"})
        logger.bind(contact=customer.email, payment=f"card {customer.card}", run=customer.run).info(
            "pii run {} contact {} phone {} card {}",
            customer.run,
            customer.email,
            customer.phone,
            customer.card,
        )
        _stdlib.warning("pii run %s sms to %s with Bearer %s", customer.run, customer.phone, customer.token)
        _checks.add(
            1,
            {
                "run": customer.run,
                "contact": customer.email,
                "note": f"card {customer.card} {customer.phone}",
            },
        )
        try:
            raise RuntimeError(f"card {customer.card} declined for {customer.email}, {customer.phone}")
        except RuntimeError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            logger.exception("pii run {} payment failed", customer.run)
    return {"orderId": order_id}
