"""The notifications service (Flask): sends order messages through the Telegram Bot API.

orderId and requestId arrive in baggage from the orders service and are on every
span and log line here without any code. Messages go through otel-correlate's
resilient notifier: retries with backoff, a circuit breaker, and a dead-letter
file for what fails for good. Start it with:

    opentelemetry-instrument --service_name notifications gunicorn -b 127.0.0.1:8002 examples.notifications.app:app

Configured by the ``OTEL_CORRELATE_TELEGRAM_*``, ``OTEL_CORRELATE_BREAKER_*``,
``OTEL_CORRELATE_RETRY_*`` and ``OTEL_CORRELATE_DEAD_LETTER_FILE`` variables.
"""

from __future__ import annotations

import atexit

from flask import Flask, jsonify, request
from loguru import logger

from otel_correlate import TelegramNotifier, collector_check, health_monitor, mount_health_flask

app = Flask("notifications")
notifier = TelegramNotifier()
atexit.register(notifier.close)


@app.post("/notify")
def notify() -> tuple[object, int]:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        return jsonify(error="expected a JSON object with a text field"), 400
    logger.info("sending notification: {}", payload["text"])
    result = notifier.send(payload["text"])
    if result.outcome == "sent":
        logger.info("notification sent")
        return jsonify(sent=True, attempts=result.attempts), 200
    if result.outcome == "disabled":
        logger.info("notifications are switched off (OTEL_CORRELATE_TELEGRAM_ENABLED)")
        return jsonify(sent=False, disabled=True), 200
    return jsonify(sent=False, error=result.error, deadLettered=result.dead_letter is not None), 502


health = health_monitor()
health.add("collector", collector_check(), critical=False)
mount_health_flask(app)
