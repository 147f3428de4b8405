"""The lean ASGI server middleware emits the span and HTTP metrics the contrib middleware did."""

from __future__ import annotations

import logging
import random
import sys
import threading
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry.metrics import CallbackOptions

from otel_correlate import (
    _asgi_server,
    _web,
    business_context,
    current_business_keys,
    instrument_fastapi_app,
)
from otel_correlate._asgi_server import _ActiveRequests
from otel_correlate._capture import TelemetryCapture
from tests.server_checks import (
    OutgoingBaggage,
    assert_served_untraced_after_one_warning,
    assert_the_views_span_took_its_changes,
    assert_unrecordable_exception_ended_the_request,
    span_attribute_updates,
    touch_the_views_span,
)


class _Mute(Exception):
    """An exception that cannot describe itself: recording it on the span raises."""

    def __str__(self) -> str:
        raise ValueError("no message")


def _client() -> TestClient:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def get_order(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/mute")
    def mute() -> None:
        raise _Mute()

    return TestClient(instrument_fastapi_app(app), raise_server_exceptions=False)


def test_server_span_has_route_name_and_stable_http_attributes(otel_capture: TelemetryCapture) -> None:
    response = _client().get("/orders/A-1?verbose=1", headers={"User-Agent": "t/1", "X-Request-ID": "r-1"})
    assert response.status_code == 200
    [span] = otel_capture.spans()
    assert span.name == "GET /orders/{order_id}"
    assert span.kind.name == "SERVER"
    assert span.status.status_code.name == "UNSET"
    attributes = dict(span.attributes or {})
    assert attributes.pop("client.port") > 0
    assert attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "url.path": "/orders/A-1",
        "url.query": "verbose=1",
        "server.address": "testserver",
        "client.address": "testclient",
        "user_agent.original": "t/1",
        "http.route": "/orders/{order_id}",
        "http.response.status_code": 200,
        "requestId": "r-1",
        "orderId": "A-1",
    }


def test_route_keys_reach_our_span_at_its_end_in_its_one_attribute_update(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint sees orderId at once; the span gets it with http.route when it ends, not in a call of its own."""
    updates = span_attribute_updates(monkeypatch)
    app = FastAPI()
    seen: list[str | None] = []

    @app.get("/orders/{order_id}")
    def get_order(order_id: str) -> str:
        seen.append(current_business_keys().get("orderId"))
        return order_id

    TestClient(instrument_fastapi_app(app)).get("/orders/A-9", headers={"X-Request-ID": "r-9"})
    [span] = otel_capture.spans()
    assert (updates, seen) == ([], ["A-9"])
    attributes = list((span.attributes or {}).items())
    assert attributes == [
        ("http.request.method", "GET"),
        ("url.scheme", "http"),
        ("network.protocol.version", "1.1"),
        ("url.path", "/orders/A-9"),
        ("server.address", "testserver"),
        ("client.address", "testclient"),
        ("client.port", span.attributes["client.port"]),  # type: ignore[index]
        ("user_agent.original", span.attributes["user_agent.original"]),  # type: ignore[index]
        ("requestId", "r-9"),
        ("orderId", "A-9"),
        ("http.route", "/orders/{order_id}"),
        ("http.response.status_code", 200),
    ]


def test_routes_of_an_included_router_carry_their_keys_too(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI runs an included router's routes through ``APIRoute.handle`` alone, past Starlette's."""
    from otel_correlate import _context

    entered: list[dict[str, str]] = []
    with_keys, in_place = _context.with_keys, _context.add_keys_in_place
    monkeypatch.setattr(
        _context, "with_keys", lambda keys, *a: entered.append(dict(keys)) or with_keys(keys, *a)
    )
    monkeypatch.setattr(
        _context, "add_keys_in_place", lambda ctx, keys: entered.append(dict(keys)) or in_place(ctx, keys)
    )
    router = APIRouter(prefix="/v1")
    seen: list[str | None] = []
    scopes: list[dict[str, Any]] = []

    @router.get("/orders/{order_id}")
    def get_order(order_id: str, request: Request) -> str:
        seen.append(current_business_keys().get("orderId"))
        scopes.append(request.scope)
        return order_id

    app = FastAPI()
    app.include_router(router)

    @app.get("/orders/{order_id}")
    def get_app_order(order_id: str) -> str:
        seen.append(current_business_keys().get("orderId"))
        return order_id

    client = TestClient(instrument_fastapi_app(app))
    assert client.get("/orders/A-1").status_code == 200
    otel_capture.clear()
    assert client.get("/v1/orders/R-1").status_code == 200
    [span] = otel_capture.spans()
    assert (seen, span.attributes["orderId"], span.attributes["http.route"]) == (  # type: ignore[index]
        ["A-1", "R-1"],
        "R-1",
        "/v1/orders/{order_id}",
    )
    # entered once per request, not once per wrapper (an app route runs both handles)
    assert [k for k in entered if "orderId" in k] == [{"orderId": "A-1"}, {"orderId": "R-1"}]
    # a scope kept after the request keeps nothing of the request's telemetry
    assert _web.SCOPE_STATE not in scopes[0]


def test_route_keys_join_the_requests_context_and_its_outgoing_baggage(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second context per request: the route keys are added to the request's own, baggage included."""
    outgoing = OutgoingBaggage(monkeypatch)
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str) -> str:
        outgoing.inject()  # what a downstream call of the endpoint carries
        return order_id

    client = TestClient(instrument_fastapi_app(app))
    assert client.get("/orders/A-9", headers={"X-Request-ID": "r-9"}).status_code == 200
    outgoing.assert_route_keys_joined_the_request(["orderId=A-9", "requestId=r-9"])


def test_route_keys_under_a_middleware_that_attached_its_own_context(otel_capture: TelemetryCapture) -> None:
    """The keys join the request's context in place only while the request runs in it; else they are attached."""
    seen: list[tuple[str, Any]] = []
    app = FastAPI()

    @app.middleware("http")
    async def tenant(request: Request, call_next: Any) -> Any:
        with business_context(orderId="M-1"):
            response = await call_next(request)
            seen.append(("middleware, after", dict(current_business_keys()).get("orderId")))
        return response

    @app.get("/orders/{order_id}")
    def get_order(order_id: str) -> str:
        seen.append(("route", dict(current_business_keys()).get("orderId")))
        return order_id

    client = TestClient(instrument_fastapi_app(app))
    assert client.get("/orders/A-5", headers={"X-Request-ID": "r-5"}).status_code == 200
    assert seen == [("route", "A-5"), ("middleware, after", "M-1")]
    [span] = otel_capture.spans()
    assert (span.attributes["orderId"], span.attributes["requestId"]) == ("A-5", "r-5")  # type: ignore[index]


def test_route_keys_reach_a_server_span_we_do_not_end_at_routing(otel_capture: TelemetryCapture) -> None:
    """Under another server middleware the route wrapper cannot wait for the span's end: it sets the keys at once."""
    from opentelemetry import trace
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from otel_correlate import _fastapi

    _fastapi.patch_route_params()

    def get_order(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["order_id"])

    app = Starlette(routes=[Route("/orders/{order_id}", get_order)])  # without our middleware
    tracer = trace.get_tracer("another-server")

    async def other_server(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with tracer.start_as_current_span("GET", kind=trace.SpanKind.SERVER):
            await app(scope, receive, send)

    TestClient(other_server).get("/orders/B-2")
    [span] = otel_capture.spans()
    assert (span.name, span.attributes["orderId"]) == ("GET", "B-2")  # type: ignore[index]


def test_request_duration_links_to_the_trace_and_active_requests_return_to_zero(
    otel_capture: TelemetryCapture,
) -> None:
    _client().get("/orders/A-2")
    [span] = otel_capture.spans()
    points = {p.name: p for p in otel_capture.metrics() if p.name.startswith("http.server.")}
    duration = points["http.server.request.duration"]
    assert duration.attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.route": "/orders/{order_id}",
        "http.response.status_code": 200,
    }
    assert duration.unit == "s"
    [exemplar] = duration.exemplars
    assert exemplar["trace_id"] == format(span.context.trace_id, "032x")
    active = points["http.server.active_requests"]
    assert (active.attributes, active.value, active.unit) == (
        {"http.request.method": "GET", "url.scheme": "http"},
        0,
        "{request}",
    )


def test_unhandled_exception_marks_the_span_and_metric_as_a_500(otel_capture: TelemetryCapture) -> None:
    assert _client().get("/boom").status_code == 500
    [span] = otel_capture.spans()
    assert span.name == "GET /boom"
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in span.events] == ["exception"]
    [duration] = [p for p in otel_capture.metrics() if p.name == "http.server.request.duration"]
    assert duration.attributes["error.type"] == "RuntimeError"


def test_health_and_metrics_urls_are_not_traced(otel_capture: TelemetryCapture) -> None:
    client = _client()
    for path in ("/health", "/health/live", "/metrics?x=1"):
        client.get(path)
    assert otel_capture.spans() == []


def test_body_size_metrics_are_opt_in(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _client().get("/orders/A-3")
    names = {p.name for p in otel_capture.metrics()}
    assert "http.server.request.duration" in names
    assert not names & {"http.server.request.body.size", "http.server.response.body.size"}

    monkeypatch.setenv("OTEL_CORRELATE_HTTP_BODY_SIZE_METRICS", "true")
    app = FastAPI()

    @app.post("/orders")
    def create(body: dict[str, str]) -> dict[str, str]:
        return {"id": "A-4", **body}

    client = TestClient(instrument_fastapi_app(app))
    assert client.post("/orders", json={"item": "book"}).status_code == 200
    sizes = {p.name: p for p in otel_capture.metrics() if p.name.endswith(".body.size")}
    request, response = sizes["http.server.request.body.size"], sizes["http.server.response.body.size"]
    assert (request.value, request.count, request.unit) == (len(b'{"item":"book"}'), 1, "By")
    assert (response.value, response.count) == (len(b'{"id":"A-4","item":"book"}'), 1)
    assert sizes["http.server.response.body.size"].attributes["http.route"] == "/orders"


def test_a_failure_deciding_the_keys_leaves_the_request_and_its_telemetry_whole(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(header_value: str | None, ctx: object) -> dict[str, str]:
        raise RuntimeError("keys unavailable")

    monkeypatch.setattr(_web, "request_keys", broken)
    monkeypatch.setenv("OTEL_CORRELATE_HTTP_BODY_SIZE_METRICS", "true")
    app = FastAPI()

    @app.post("/orders")
    def create(body: dict[str, str]) -> dict[str, str]:
        return {"id": "A-5", **body}

    response = TestClient(instrument_fastapi_app(app)).post("/orders", json={"item": "book"})
    assert response.status_code == 200
    assert "x-request-id" not in response.headers  # no key was decided, so none is echoed
    [span] = otel_capture.spans()
    assert "requestId" not in (span.attributes or {})
    trace_id = format(span.context.trace_id, "032x")
    points = {p.name: p for p in otel_capture.metrics()}
    for name in ("http.server.request.duration", "http.server.request.body.size"):
        # the measurements are made in the request's own context: their exemplars point at its span
        assert [e["trace_id"] for e in points[name].exemplars] == [trace_id], name


def _observed(active: _ActiveRequests) -> dict[tuple[str, str], int]:
    points = active.observe(CallbackOptions())
    return {(p.attributes["http.request.method"], p.attributes["url.scheme"]): p.value for p in points}  # type: ignore[index]


def test_active_requests_report_series_in_flight_or_touched_since_the_last_collection() -> None:
    active = _ActiveRequests()
    get, post = ("GET", "http"), ("POST", "https")
    assert _observed(active) == {}
    active.started(get)
    active.started(get)
    active.started(post)
    active.ended(post)
    assert _observed(active) == {get: 2, post: 0}  # POST finished but was seen since the last collection
    active.ended(get)
    assert _observed(active) == {get: 1}  # POST untouched and idle: not reported again
    assert _observed(active) == {get: 1}  # still in flight
    active.ended(get)
    assert _observed(active) == {get: 0}  # an end since the last collection is a change too
    assert _observed(active) == {}
    active.started(post)
    assert _observed(active) == {post: 1}


@pytest.mark.parametrize("interrupted_reads", [1, 2, 100])
def test_a_request_run_between_the_collections_reads_is_not_in_flight(interrupted_reads: int) -> None:
    """1: the second try is clean; 2: the third is; 100: every try is interrupted (the fallback)."""
    active = _ActiveRequests()
    key = ("GET", "http")
    active.started(key)
    active.started(key)  # two in flight throughout
    started, ended = active._series[key]

    class RequestAfterRead:
        """The ended counter; right after the collection reads it, a whole request runs."""

        def __init__(self) -> None:
            self.left = interrupted_reads

        def __next__(self) -> int:
            value = next(ended)
            if self.left:
                self.left -= 1
                next(started)
                next(ended)
            return value

    active._series[key] = (started, RequestAfterRead())  # type: ignore[assignment]
    assert _observed(active) == {key: 2}
    active._series[key] = (started, ended)
    assert _observed(active) == {key: 2}  # and the bookkeeping of its own reads stayed right


def test_active_requests_never_lose_a_count_across_threads() -> None:
    active = _ActiveRequests()
    key = ("GET", "http")
    seen: list[int] = []
    stop = threading.Event()

    def requests() -> None:
        for _ in range(20_000):
            active.started(key)
            active.ended(key)

    def collector() -> None:
        while not stop.is_set():
            seen.extend(_observed(active).values())

    workers = [threading.Thread(target=requests) for _ in range(4)]
    reader = threading.Thread(target=collector)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so requests run between the collection's reads
    try:
        reader.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stop.set()
        reader.join()
    finally:
        sys.setswitchinterval(interval)
    assert seen and min(seen) >= 0 and max(seen) <= 4  # in flight at one moment: at most the four workers
    assert _observed(active).get(key, 0) == 0


def test_a_setting_it_cannot_use_leaves_the_app_serving_untraced_and_says_why(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_REQUEST_ID_HEADER", "X-Req☃")
    with caplog.at_level(logging.WARNING, logger="otel_correlate"):
        response = _client().get("/orders/A-5", headers={"X-Request-ID": "r-5"})
    assert (response.status_code, response.json()) == (200, {"id": "A-5"})
    assert_served_untraced_after_one_warning(otel_capture, caplog, "FastAPI")


def test_an_exception_that_cannot_be_recorded_still_ends_the_span_and_the_count(
    otel_capture: TelemetryCapture,
) -> None:
    assert _client().get("/mute").status_code == 500
    assert_unrecordable_exception_ended_the_request(otel_capture)


def _random_request(draw: random.Random) -> tuple[Any, ...]:
    """The fields of one request as the ASGI and WSGI servers pass them, often unusual."""
    headers: dict[str, str] = {}
    if draw.random() < 0.8:
        headers["host"] = draw.choice(
            [
                "h",
                "h:80",
                "h:",
                ":80",
                "[::1]:8080",
                "h:8o",
                "8080",
                "",
                "hé:443",
                "h:²",
                "h:٣",
                "h:08",
                "a:b:9",
            ]
        )
    if draw.random() < 0.7:
        headers["user-agent"] = draw.choice(["wrk", "", "curl/8 (x)"])
    if draw.random() < 0.2:
        headers["traceparent"] = "00-1-2-01"
    return (
        draw.choice(["GET", "POST", "QUERY", "get", "BREW", "_OTHER", ""]),
        draw.choice(["http", "https", ""]),
        draw.choice(["/orders/1", "", "/ä"]),
        draw.choice(["", "a=1", "q=%20"]),
        draw.choice([None, "", "1.1", "2"]),
        headers,
        draw.choice([None, ("127.0.0.1", 5555), ("::1", None), ("unix", 0)]),
        draw.choice([None, ("127.0.0.1", 8000), ("srv", None)]),
    )


def _attributes_or_error(function: Any, request: tuple[Any, ...]) -> Any:
    try:
        method, attributes, span_attributes = function(*request)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    # in order, with types: True, 1 and 1.0 are equal in Python
    return (
        method,
        [(k, type(v), v) for k, v in attributes.items()],
        [(k, type(v), v) for k, v in span_attributes.items()],
    )


def test_request_attributes_in_c_are_the_python_functions() -> None:
    native = _asgi_server._NATIVE_ATTRIBUTES
    assert native is not None, "the C extension is built in this venv"
    draw = random.Random(3)
    outcomes = set()
    for _ in range(3000):
        request = _random_request(draw)
        expected = _attributes_or_error(_asgi_server.request_attributes, request)
        made = _attributes_or_error(lambda *fields: native(*fields, _asgi_server._KNOWN_METHODS), request)
        assert made == expected, request
        outcomes.add(expected[0])
    assert {"GET", "_OTHER", "ValueError"} <= outcomes  # "h:²" is a digit int() refuses, in both


@pytest.mark.parametrize(
    "field, value",
    [
        (0, b"GET"),
        (1, None),
        (3, b""),
        (4, 1.1),
        (5, {"host": b"h"}),
        (5, {"user-agent": 3}),
        (6, ["h", 1]),
        (7, ("h",)),
    ],
)
def test_request_attributes_in_c_leave_unusual_input_to_python(field: int, value: Any) -> None:
    request = list(_random_request(random.Random(1)))
    request[field] = value
    assert _asgi_server._NATIVE_ATTRIBUTES(*request, _asgi_server._KNOWN_METHODS) is None


def test_request_attributes_in_c_keep_no_reference_they_do_not_own() -> None:
    native = _asgi_server._NATIVE_ATTRIBUTES
    host, bare, agent, path, client = "counted:8080", "counted-host", "counted-agent", "/counted", ("h", 5)
    headers = [{"host": host, "user-agent": agent}, {"host": bare}]  # with a port, and the whole header
    watched = [host, bare, agent, path, client, *headers]

    def calls() -> None:
        for given in headers:
            native("GET", "http", path, "", "1.1", given, client, None, _asgi_server._KNOWN_METHODS)

    calls()
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(1000):
        calls()
    assert [sys.getrefcount(obj) for obj in watched] == before


def test_request_attributes_in_c_hold_a_header_another_lookup_may_drop() -> None:
    """Looking up user-agent can run a key's __eq__, which may drop the host header: C keeps its own reference."""

    class Colliding(str):
        def __hash__(self) -> int:
            return hash("user-agent")

        def __eq__(self, other: object) -> bool:
            if other == "user-agent":
                headers.pop("host", None)
            return False

    made = []
    for function in (
        _asgi_server.request_attributes,
        lambda *fields: _asgi_server._NATIVE_ATTRIBUTES(*fields, _asgi_server._KNOWN_METHODS),
    ):
        headers = {
            "host": "".join(["exa", "mple.com:8", "080"]),
            Colliding("x"): "v",
        }  # only the dict holds it
        _, _, span_attributes = function("GET", "http", "/", "", None, headers, None, None)
        made.append((span_attributes["server.address"], span_attributes["server.port"]))
    assert made == [("example.com", 8080)] * 2


def _random_start(draw: random.Random) -> tuple[Any, ...]:
    """A request's fields as the server wrappers hand them to ``_RequestState``, with keys to decide."""
    raw_method, scheme, path, query, version, headers, client, server = _random_request(draw)
    if draw.random() < 0.3:
        headers["traceparent"] = draw.choice(
            ["00-1-2-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
        )
    if draw.random() < 0.2:
        headers["baggage"] = draw.choice(["orderId=O-1", "orderId=bad%20value,requestId=r-9", "other=1"])
    request_id = draw.choice([None, None, "req-1", "", "bad id", "x" * 300, "é", "a:b.c_d-1"])
    return raw_method, scheme, path, query, version, headers, request_id, client, server


def _started(native: bool, instruments: Any, request: tuple[Any, ...]) -> Any:
    """A request state made by the C start (or, when it declines, by ``__init__``), or by the Python steps."""
    if native:
        state = _asgi_server._RequestState.__new__(_asgi_server._RequestState)
        if _asgi_server._NATIVE_REQUEST(state, instruments, b"x-request-id", *request):
            return state
    saved = _asgi_server._NATIVE_REQUEST
    _asgi_server._NATIVE_REQUEST = None
    try:
        return _asgi_server._RequestState(instruments, b"x-request-id", *request)
    finally:
        _asgi_server._NATIVE_REQUEST = saved


def _state_record(state: Any) -> dict[str, Any]:
    """A request state as data: every field, the span as its parts, the context with its span named."""
    span = state.span
    fields = {name: getattr(state, name) for name in _asgi_server._RequestState.__slots__}
    fields.pop("start")
    del fields["span"], fields["ctx"]
    fields["attributes"] = [(k, type(v), v) for k, v in state.attributes.items()]
    return {
        "fields": fields,
        "span": (
            type(span),
            span.name,
            span.kind,
            span.get_span_context(),
            span.parent,
            [(k, type(v), v) for k, v in (span.attributes or {}).items()],
        ),
        "ctx": {k: "the span" if v is span else v for k, v in state.ctx.items()},
    }


def test_the_request_start_in_c_makes_the_state_the_python_steps_make(otel_capture: TelemetryCapture) -> None:
    native = _asgi_server._NATIVE_REQUEST
    assert native is not None, "the C extension is built in this venv"
    instruments = _asgi_server._Instruments()
    instruments.load()
    _web.PROPAGATION_HEADERS.current()  # as the wrappers do before they make a state
    draw = random.Random(5)
    seen: dict[str, set[Any]] = {"outcome": set(), "keys": set()}
    states = 0
    for _ in range(600):
        request = _random_start(draw)
        made = []
        draws = random.getstate()
        for in_c in (True, False):
            random.setstate(draws)  # the same requestId and span ids drawn by both
            _observed(_asgi_server.ACTIVE_REQUESTS)
            try:
                state = _started(in_c, instruments, request)
            except Exception as exc:
                made.append((type(exc).__name__, str(exc)))
                continue
            in_flight = _observed(_asgi_server.ACTIVE_REQUESTS)
            made.append({**_state_record(state), "in flight": in_flight})
            state.finish(None)
            states += 1
        assert made[0] == made[1], request
        record = made[0]
        seen["outcome"].add("state" if isinstance(record, dict) else record[0])
        if isinstance(record, dict):
            keys = next((v for k, v in record["ctx"].items() if k == _asgi_server._context.KEYS_CONTEXT), {})
            seen["keys"].add(tuple(sorted(keys)))
    # every branch was taken: raised (the int() of "h:²"), keys decided with and without inbound baggage
    assert seen["outcome"] == {"state", "ValueError"}
    assert {("requestId",), ("orderId", "requestId")} <= seen["keys"]
    assert len(otel_capture.spans()) == states  # each state's span ended once


@pytest.mark.parametrize(
    "replaced", ["request_keys", "validate_value", "new_request_id", "with_keys", "promote_inbound"]
)
def test_the_request_start_in_c_calls_a_replaced_python_step(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch, replaced: str
) -> None:
    """A test's patch (or the ablation's switch) of a step's function reaches the C start too."""
    module = _web if replaced == "request_keys" else _asgi_server._context
    original = getattr(module, replaced)
    calls = []

    def spy(*args: Any) -> Any:
        calls.append(args)
        if replaced == "new_request_id":
            return "patched-id"
        return original(*args)

    monkeypatch.setattr(module, replaced, spy)
    instruments = _asgi_server._Instruments()
    instruments.load()
    request_id = "req-1" if replaced == "validate_value" else None
    request = ("GET", "http", "/orders/1", "", "1.1", {}, request_id, None, None)
    state = _started(True, instruments, request)
    state.finish(None)
    assert calls, f"the C start did not call the replaced {replaced}"
    expected = "patched-id" if replaced == "new_request_id" else request_id
    keys = dict(state.ctx[_asgi_server._context.KEYS_CONTEXT])
    if expected is not None:
        assert keys == {"requestId": expected}
    assert state.request_id_header == (b"x-request-id", keys["requestId"].encode())


def test_the_request_start_in_c_declines_before_doing_anything(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = _asgi_server._NATIVE_REQUEST
    request = ("GET", "http", "/", "", None, {}, None, None, None)
    unloaded = _asgi_server._Instruments()
    state = _asgi_server._RequestState.__new__(_asgi_server._RequestState)
    assert native(state, unloaded, b"x-request-id", *request) is False  # __init__ loads them first
    monkeypatch.setenv("OTEL_CORRELATE_HTTP_BODY_SIZE_METRICS", "true")
    with_sizes = _asgi_server._Instruments()
    with_sizes.load()
    assert native(state, with_sizes, b"x-request-id", *request) is False  # __init__ records the request size
    odd = (b"GET", *request[1:])
    assert native(state, with_sizes, b"x-request-id", *odd) is False  # request_attributes declines
    loaded = _asgi_server._Instruments()
    loaded.load()
    for module, helper in ((_asgi_server, "_NATIVE_ATTRIBUTES"), (_asgi_server._fastsdk, "_NATIVE_START")):
        for replacement in (None, getattr(module, helper)):
            with monkeypatch.context() as patch:
                # switched off, or wrapped: __init__ reads the global, so it must decide
                patch.setattr(
                    module,
                    helper,
                    replacement if replacement is None else lambda *a, real=replacement: real(*a),
                )
                assert native(state, loaded, b"x-request-id", *request) is False, helper
    for name in _asgi_server._RequestState.__slots__:
        assert not hasattr(state, name), name
    assert otel_capture.spans() == []


def test_the_request_start_in_c_counts_through_a_replaced_in_flight_method(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    instruments = _asgi_server._Instruments()
    instruments.load()
    request = ("GET", "http", "/", "", None, {}, None, None, None)
    _started(True, instruments, request).finish(None)  # the series exists: the C counts it itself
    started: list[tuple[str, str]] = []
    count = _asgi_server.ACTIVE_REQUESTS.started

    def counted(key: tuple[str, str]) -> None:
        started.append(key)
        count(key)

    monkeypatch.setattr(_asgi_server.ACTIVE_REQUESTS, "started", counted)
    state = _asgi_server._RequestState.__new__(_asgi_server._RequestState)
    assert _asgi_server._NATIVE_REQUEST(state, instruments, b"x-request-id", *request) is True
    state.finish(None)
    assert started == [("GET", "http")]


def test_the_request_start_in_c_keeps_no_reference_the_python_steps_do_not(
    otel_capture: TelemetryCapture,
) -> None:
    """The objects handed in are held as often after 300 requests by either path (the exported spans hold some)."""
    instruments = _asgi_server._Instruments()
    instruments.load()
    header, given_id = b"x-counted-id", "".join(["counted", "-1"])
    requests = [
        ("GET", "http", "/counted", "", "1.1", {"host": "h:1"}, given_id, ("c", 1), None),
        ("BREW", "http", "/counted", "a=1", None, {"traceparent": "00-1-2-01"}, None, None, ("s", 2)),
    ]
    watched = [instruments, header, given_id, *[r[5] for r in requests]]

    def held_more(in_c: bool) -> list[int]:
        before = [sys.getrefcount(obj) for obj in watched]
        for _ in range(300):
            for request in requests:
                _started(in_c, instruments, request).finish(None)
        return [sys.getrefcount(obj) - held for obj, held in zip(watched, before, strict=True)]

    held_more(True)
    assert held_more(True) == held_more(False)


def test_the_views_current_span_is_the_request_span_and_takes_the_apps_changes(
    otel_capture: TelemetryCapture,
) -> None:
    app = FastAPI()
    seen: list[int] = []

    @app.get("/priced/{order_id}")
    def priced(order_id: str) -> str:  # a sync view: it runs on a worker thread, in a copy of the context
        touch_the_views_span(seen, event=False)
        return order_id

    @app.get("/noted/{order_id}")
    async def noted(order_id: str) -> str:
        touch_the_views_span(seen, event=True)
        return order_id

    client = TestClient(instrument_fastapi_app(app))
    assert client.get("/priced/A-1").status_code == client.get("/noted/A-2").status_code == 200
    assert_the_views_span_took_its_changes(otel_capture, seen, "{order_id}")
