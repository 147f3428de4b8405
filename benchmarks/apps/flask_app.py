"""The Flask reference endpoint: one loguru line and one business metric per request."""

from flask import Flask
from loguru import logger
from opentelemetry import metrics

_lookups = metrics.get_meter("bench.orders").create_counter("orders.lookups", unit="{lookup}")

app = Flask("bench-flask")


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> dict[str, str]:
    logger.info("order {} looked up", order_id)
    _lookups.add(1, {"result": "hit"})
    return {"id": order_id, "status": "created"}
