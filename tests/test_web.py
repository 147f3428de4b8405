"""FastAPI and Flask integrations in process: requestId, route keys, metric guard."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from loguru import logger
from opentelemetry import metrics

from otel_correlate import _web, instrument_fastapi_app, instrument_flask_app
from otel_correlate._capture import TelemetryCapture

_meter = metrics.get_meter("tests.web")
_lookups = _meter.create_counter("lookups", unit="{lookup}")


def _fastapi_client() -> TestClient:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def get_order(order_id: str) -> dict[str, str]:
        logger.info("looked up")
        _lookups.add(1, {"orderId": order_id, "requestId": "r", "result": "hit"})
        return {"id": order_id}

    return TestClient(instrument_fastapi_app(app))


def _flask_client() -> Any:
    app = Flask("web-test")

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> dict[str, str]:
        logger.info("looked up")
        _lookups.add(1, {"orderId": order_id, "requestId": "r", "result": "hit"})
        return {"id": order_id}

    return instrument_flask_app(app).test_client()


CLIENTS = pytest.mark.parametrize("make_client", [_fastapi_client, _flask_client], ids=["fastapi", "flask"])


@CLIENTS
def test_valid_request_id_is_echoed_and_on_span_and_log(
    otel_capture: TelemetryCapture, make_client: Any
) -> None:
    response = make_client().get("/orders/O-9", headers={"X-Request-ID": "req.1:a-B"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req.1:a-B"
    [server] = [s for s in otel_capture.spans() if s.kind.name == "SERVER"]
    assert server.attributes["requestId"] == "req.1:a-B"
    assert server.attributes["orderId"] == "O-9"
    [record] = otel_capture.logs()
    assert {k: record.log_record.attributes[k] for k in ("orderId", "requestId")} == {
        "orderId": "O-9",
        "requestId": "req.1:a-B",
    }
    assert record.log_record.trace_id == server.context.trace_id


@CLIENTS
@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "semi;colon", "tab\tin"])
def test_invalid_request_id_is_replaced_and_counted(
    otel_capture: TelemetryCapture, make_client: Any, bad: str
) -> None:
    response = make_client().get("/orders/O-1", headers={"X-Request-ID": bad})
    echoed = response.headers["X-Request-ID"]
    assert response.status_code == 200
    assert echoed != bad and len(echoed) == 32
    rejected = [
        (m.attributes, m.value) for m in otel_capture.metrics() if m.name == "otel_correlate.context.rejected"
    ]
    assert rejected == [({"key": "requestId", "reason": "invalid_header", "source": "header"}, 1)]


@CLIENTS
def test_business_keys_never_reach_metric_attributes(
    otel_capture: TelemetryCapture, make_client: Any
) -> None:
    make_client().get("/orders/O-3")
    points = otel_capture.metrics()
    assert [m.attributes for m in points if m.name == "lookups"] == [{"result": "hit"}]
    assert all(not {"orderId", "requestId"} & set(m.attributes) for m in points)
    [lookup] = [m for m in points if m.name == "lookups"]
    # the dropped values stay on the exemplar, which links the point to its trace
    assert lookup.exemplars[0]["filtered_attributes"] == {"orderId": "O-3", "requestId": "r"}


@CLIENTS
def test_inbound_baggage_order_id_is_promoted_when_valid(
    otel_capture: TelemetryCapture, make_client: Any
) -> None:
    make_client().get("/orders/O-4", headers={"baggage": "requestId=up-1,secret=x"})
    [server] = [s for s in otel_capture.spans() if s.kind.name == "SERVER"]
    assert server.attributes["requestId"] == "up-1"
    assert "secret" not in server.attributes


URLS = [
    "/orders/ORD-1",
    "/health",
    "/health/deployment",
    "/health?verbose=1",
    "/healthz",
    "/api/health/",
    "/metrics",
    "/metrics?format=text",
    "/metricsx",
    "/ping",
    "/HEALTH",
    "",
]


def test_the_default_excluded_urls_answer_as_their_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"):
        monkeypatch.delenv(name, raising=False)
    excluded = _web.excluded_urls("FLASK")
    assert excluded is not None
    pattern = re.compile("|".join(_web.EXCLUDED_URLS.split(",")))
    assert [excluded.url_disabled(url) for url in URLS] == [bool(pattern.search(url)) for url in URLS]
    assert [url for url in URLS if excluded.url_disabled(url)] == [
        "/health",
        "/health/deployment",
        "/health?verbose=1",
        "/api/health/",
        "/metrics",
        "/metrics?format=text",
    ]


def test_configured_excluded_urls_are_searched_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "/ping$, /orders/ORD-1")
    excluded = _web.excluded_urls("FLASK")
    assert excluded is not None
    assert [url for url in URLS if excluded.url_disabled(url)] == ["/orders/ORD-1", "/ping"]


def test_excluded_urls_that_are_not_regular_expressions_name_the_variable_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "/ok")
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "/health,/orders/(")
    with pytest.raises(ValueError) as raised:
        _web.excluded_urls("FLASK")
    assert str(raised.value) == (
        "OTEL_PYTHON_FLASK_EXCLUDED_URLS='/health,/orders/(' is not a comma-separated list of regular "
        "expressions (missing ), unterminated subpattern at position 16). Fix it, or unset it to use the "
        r"default (/health(/|\?|$),/metrics(\?|$))."
    )
    assert _web.server_settings("FLASK", "Flask") is None  # the wrapper then serves untraced
    assert _web.excluded_urls("FASTAPI").url_disabled("/ok")  # the general variable still applies
