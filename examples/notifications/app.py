"""The notifications service (Flask): sends order messages to a Telegram-compatible API.

orderId and requestId arrive in baggage from the orders service and are on every
span and log line here without any code. Start it with:

    opentelemetry-instrument --service_name notifications flask --app examples.notifications.app run --port 8002
"""

from __future__ import annotations

import os

import httpx
from flask import Flask, jsonify, request
from loguru import logger

from otel_correlate import record_notification

TELEGRAM_API_URL = os.environ.get("OTEL_CORRELATE_TELEGRAM_API_URL", "http://127.0.0.1:8765").rstrip("/")
TELEGRAM_TOKEN = os.environ.get("OTEL_CORRELATE_TELEGRAM_BOT_TOKEN", "demo-token")
TELEGRAM_CHAT_ID = os.environ.get("OTEL_CORRELATE_TELEGRAM_CHAT_ID", "1000")
TIMEOUT = float(os.environ.get("OTEL_CORRELATE_TELEGRAM_TIMEOUT", "5"))

app = Flask("notifications")
telegram = httpx.Client(base_url=TELEGRAM_API_URL, timeout=TIMEOUT)


@app.post("/notify")
def notify() -> tuple[object, int]:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        return jsonify(error="expected a JSON object with a text field"), 400
    logger.info("sending notification: {}", payload["text"])
    try:
        response = telegram.post(
            f"/bot{TELEGRAM_TOKEN}/sendMessage", json={"chat_id": TELEGRAM_CHAT_ID, "text": payload["text"]}
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        record_notification(channel="telegram", outcome="failed")
        logger.error("notification failed: {}", exc)
        return jsonify(sent=False, error=str(exc)), 502
    record_notification(channel="telegram", outcome="sent")
    logger.info("notification sent")
    return jsonify(sent=True), 200
