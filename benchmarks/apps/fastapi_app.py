"""The FastAPI reference endpoint: one loguru line and one business metric per request.

The same code runs in every configuration; only the way the process is started
(plain, ``opentelemetry-instrument``, or :mod:`logfire_fastapi`) differs.
"""

from fastapi import FastAPI
from loguru import logger
from opentelemetry import metrics

_lookups = metrics.get_meter("bench.orders").create_counter("orders.lookups", unit="{lookup}")

app = FastAPI()


@app.get("/orders/{order_id}")
async def get_order(order_id: str) -> dict[str, str]:
    logger.info("order {} looked up", order_id)
    _lookups.add(1, {"result": "hit"})
    return {"id": order_id, "status": "created"}
