"""The lean Flask (WSGI) server wrapper emits the span and HTTP metrics the contrib instrumentation did."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, abort, got_request_exception, send_file
from loguru import logger
from opentelemetry import trace
from werkzeug.test import EnvironBuilder

from otel_correlate import current_business_keys, instrument_flask_app
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


def _client() -> Any:
    app = Flask("wsgi-test")

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/mute")
    def mute() -> None:
        raise _Mute()

    @app.get("/health")
    def health() -> str:
        return "ok"

    return instrument_flask_app(app).test_client()


def test_server_span_has_route_name_and_stable_http_attributes(otel_capture: TelemetryCapture) -> None:
    response = _client().get("/orders/A-1?verbose=1", headers={"User-Agent": "t/1", "X-Request-ID": "r-1"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "r-1"
    [span] = otel_capture.spans()
    assert span.name == "GET /orders/<order_id>"
    assert span.kind.name == "SERVER"
    assert span.status.status_code.name == "UNSET"
    attributes = dict(span.attributes or {})
    assert attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "url.path": "/orders/A-1",
        "url.query": "verbose=1",
        "server.address": "localhost",
        "client.address": "127.0.0.1",
        "user_agent.original": "t/1",
        "http.route": "/orders/<order_id>",
        "http.response.status_code": 200,
        "requestId": "r-1",
        "orderId": "A-1",
    }


def test_route_keys_reach_the_span_at_its_end_in_its_one_attribute_update(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view sees orderId at once; the span gets it with http.route when it ends, not in a call of its own."""
    updates = span_attribute_updates(monkeypatch)
    app = Flask("route-keys")
    seen: list[str | None] = []

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> str:
        seen.append(dict(current_business_keys()).get("orderId"))
        return order_id

    instrument_flask_app(app).test_client().get("/orders/A-9", headers={"X-Request-ID": "r-9"})
    [span] = otel_capture.spans()
    assert (updates, seen) == ([], ["A-9"])
    # the order the span had when the keys were set at routing: start attributes, then the route's
    assert list((span.attributes or {}).items()) == [
        ("http.request.method", "GET"),
        ("url.scheme", "http"),
        ("network.protocol.version", "1.1"),
        ("url.path", "/orders/A-9"),
        ("server.address", "localhost"),
        ("client.address", "127.0.0.1"),
        ("user_agent.original", span.attributes["user_agent.original"]),  # type: ignore[index]
        ("requestId", "r-9"),
        ("orderId", "A-9"),
        ("http.route", "/orders/<order_id>"),
        ("http.response.status_code", 200),
    ]


def test_request_duration_links_to_the_trace(otel_capture: TelemetryCapture) -> None:
    _client().get("/orders/A-2")
    [span] = otel_capture.spans()
    points = {p.name: p for p in otel_capture.metrics() if p.name.startswith("http.server.")}
    duration = points["http.server.request.duration"]
    assert duration.attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.route": "/orders/<order_id>",
        "http.response.status_code": 200,
    }
    [exemplar] = duration.exemplars
    assert exemplar["trace_id"] == format(span.context.trace_id, "032x")
    assert points["http.server.active_requests"].value == 0


def test_unhandled_exception_marks_the_span_as_a_500(otel_capture: TelemetryCapture) -> None:
    assert _client().get("/boom").status_code == 500
    [span] = otel_capture.spans()
    assert span.name == "GET /boom"
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in span.events] == ["exception"]


def test_excluded_urls_are_not_traced_but_still_echo_the_request_id(otel_capture: TelemetryCapture) -> None:
    response = _client().get("/health", headers={"X-Request-ID": "h-1"})
    assert response.headers["X-Request-ID"] == "h-1"
    assert otel_capture.spans() == []


def _app_with_hooks(seen: list[tuple[str, Any]]) -> Any:
    app = Flask("wsgi-hooks")

    @app.before_request
    def before() -> None:
        seen.append(("before", dict(current_business_keys()).get("orderId")))

    @app.after_request
    def after(response: Any) -> Any:
        seen.append(("after", dict(current_business_keys()).get("orderId")))
        return response

    @app.teardown_request
    def teardown(exc: BaseException | None) -> None:
        seen.append(("teardown", dict(current_business_keys()).get("orderId")))

    @app.errorhandler(KeyError)
    def missing(exc: KeyError) -> tuple[str, int]:
        return "no such order", 404

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> str:
        if order_id == "gone":
            raise KeyError(order_id)
        if order_id == "aborted":
            abort(409)
        return order_id

    return instrument_flask_app(app).test_client()


def test_route_keys_reach_the_apps_own_request_hooks(otel_capture: TelemetryCapture) -> None:
    seen: list[tuple[str, Any]] = []
    client = _app_with_hooks(seen)
    assert client.get("/orders/A-7").status_code == 200
    # the teardown hooks run after the dispatch: the keys stay the request's until it ends
    assert seen == [("before", "A-7"), ("after", "A-7"), ("teardown", "A-7")]
    [span] = otel_capture.spans()
    assert (span.attributes["orderId"], span.attributes["http.route"]) == ("A-7", "/orders/<order_id>")
    seen.clear()
    assert client.get("/nowhere").status_code == 404  # the next request starts without them
    assert (seen, current_business_keys()) == ([("before", None), ("after", None), ("teardown", None)], {})


def test_route_keys_join_the_requests_context_and_its_outgoing_baggage(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second context per request: the route keys are added to the request's own, baggage included."""
    outgoing = OutgoingBaggage(monkeypatch)
    app = Flask("wsgi-baggage")

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> str:
        outgoing.inject()  # what a downstream call of the view carries
        return order_id

    client = instrument_flask_app(app).test_client()
    assert client.get("/orders/A-9", headers={"X-Request-ID": "r-9"}).status_code == 200
    outgoing.assert_route_keys_joined_the_request(["orderId=A-9", "requestId=r-9"])


def test_concurrent_requests_each_keep_their_own_route_keys(otel_capture: TelemetryCapture) -> None:
    """Two requests inside their views at once, on two threads: each sees, logs and spans only its own keys."""
    app = Flask("wsgi-threads")
    both_inside = threading.Barrier(2, timeout=5)
    seen: dict[str, Any] = {}

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> str:
        both_inside.wait()
        seen[order_id] = dict(current_business_keys()).get("orderId")
        logger.info("order {} looked up", order_id)
        return order_id

    instrument_flask_app(app)
    answers: dict[str, int] = {}

    def fetch(order_id: str) -> None:
        answers[order_id] = app.test_client().get(f"/orders/{order_id}").status_code

    threads = [threading.Thread(target=fetch, args=(order_id,)) for order_id in ("T-1", "T-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert (answers, seen) == ({"T-1": 200, "T-2": 200}, {"T-1": "T-1", "T-2": "T-2"})
    spans = {s.attributes["url.path"]: s.attributes["orderId"] for s in otel_capture.spans()}  # type: ignore[index]
    assert spans == {"/orders/T-1": "T-1", "/orders/T-2": "T-2"}
    logs = {str(r.log_record.body): r.log_record.attributes["orderId"] for r in otel_capture.logs()}  # type: ignore[index]
    assert logs == {"order T-1 looked up": "T-1", "order T-2 looked up": "T-2"}


def test_exceptions_the_app_handles_are_not_errors(otel_capture: TelemetryCapture) -> None:
    client = _app_with_hooks([])
    assert client.get("/orders/gone").status_code == 404
    assert client.get("/orders/aborted").status_code == 409
    assert client.get("/nowhere").status_code == 404
    spans = otel_capture.spans()
    assert [
        (s.name, s.attributes["http.response.status_code"], s.status.status_code.name) for s in spans
    ] == [
        ("GET /orders/<order_id>", 404, "UNSET"),
        ("GET /orders/<order_id>", 409, "UNSET"),
        ("GET", 404, "UNSET"),
    ]
    assert not any("error.type" in s.attributes or s.events for s in spans)


def test_flasks_error_log_and_500_handler_still_see_the_route_keys(otel_capture: TelemetryCapture) -> None:
    app = Flask("wsgi-errors")
    seen: list[tuple[str, Any]] = []

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> str:
        raise RuntimeError("database gone")

    @app.errorhandler(500)
    def server_error(exc: Exception) -> tuple[str, int]:
        seen.append(("500 handler", dict(current_business_keys()).get("orderId")))
        return "sorry", 500

    got_request_exception.connect(
        lambda sender, exception, **_: seen.append(("signal", dict(current_business_keys()).get("orderId"))),
        app,
        weak=False,
    )
    assert instrument_flask_app(app).test_client().get("/orders/A-9").status_code == 500
    assert seen == [("signal", "A-9"), ("500 handler", "A-9")]
    assert current_business_keys() == {}  # and gone once the request ended
    [span] = otel_capture.spans()
    assert (span.attributes["error.type"], span.status.status_code.name) == ("RuntimeError", "ERROR")


def test_a_failing_request_lookup_never_replaces_the_apps_answer(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our dispatch and ``handle_exception`` wrappers look the request up: if that fails, the app runs and answers."""
    from otel_correlate import _wsgi_server

    def broken_getter() -> Any:
        def current() -> Any:
            raise RuntimeError("no request context")

        return current

    monkeypatch.setattr(_wsgi_server, "_request_getter", broken_getter)
    app = Flask("wsgi-broken-lookup")

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> str:
        if order_id == "gone":
            raise RuntimeError("database gone")
        return order_id

    @app.errorhandler(500)
    def server_error(exc: Exception) -> tuple[str, int]:
        return f"sorry: {getattr(exc, 'original_exception', exc)}", 500

    client = instrument_flask_app(app).test_client()
    answers = [client.get(f"/orders/{order_id}") for order_id in ("A-9", "gone")]
    assert [(r.status_code, r.get_data(as_text=True)) for r in answers] == [
        (200, "A-9"),
        (500, "sorry: database gone"),
    ]
    # the server span still ends with each request's status (no route: the lookup that finds it failed)
    assert [
        (s.attributes["http.response.status_code"], s.status.status_code.name) for s in otel_capture.spans()
    ] == [
        (200, "UNSET"),
        (500, "ERROR"),
    ]


def test_body_size_metrics_are_opt_in(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _client().get("/orders/A-3")
    assert not {p.name for p in otel_capture.metrics()} & {
        "http.server.request.body.size",
        "http.server.response.body.size",
    }

    monkeypatch.setenv("OTEL_CORRELATE_HTTP_BODY_SIZE_METRICS", "true")
    app = Flask("wsgi-sizes")

    @app.post("/orders")
    def create() -> dict[str, str]:
        return {"id": "A-4"}

    client = instrument_flask_app(app).test_client()
    assert client.post("/orders", data=b"item=book").status_code == 200
    sizes = {p.name: p for p in otel_capture.metrics() if p.name.endswith(".body.size")}
    request, response = sizes["http.server.request.body.size"], sizes["http.server.response.body.size"]
    assert (request.value, request.count, request.unit) == (len(b"item=book"), 1, "By")
    assert (response.value, response.count, response.attributes["http.route"]) == (
        len(b'{"id":"A-4"}\n'),
        1,
        "/orders",
    )


def test_a_setting_it_cannot_use_leaves_the_app_serving_untraced_and_says_why(
    otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_REQUEST_ID_HEADER", "X-Req☃")
    with caplog.at_level(logging.WARNING, logger="otel_correlate"):
        client = _client()
    response = client.get("/orders/A-5", headers={"X-Request-ID": "r-5"})
    assert (response.status_code, response.get_json()) == (200, {"id": "A-5"})
    assert_served_untraced_after_one_warning(otel_capture, caplog, "Flask")


def test_an_exception_that_cannot_be_recorded_still_ends_the_span_and_the_count(
    otel_capture: TelemetryCapture,
) -> None:
    assert _client().get("/mute").status_code == 500
    assert_unrecordable_exception_ended_the_request(otel_capture)


def _streaming_app(made: list[int], closed: list[str] | None = None) -> Flask:
    """An export endpoint that streams its lines and logs one per chunk (and one if the client leaves)."""
    app = Flask("wsgi-stream")

    @app.get("/orders/<order_id>/lines")
    def lines(order_id: str) -> Response:
        def generate() -> Iterator[str]:
            try:
                for n in range(3):
                    if order_id == "broken" and n == 1:
                        raise RuntimeError("line store gone")
                    logger.info("line {}", n)
                    made.append(time.time_ns())
                    yield f"{n}\n"
            except GeneratorExit:
                logger.warning("client went away")
                raise

        response = Response(generate(), mimetype="text/plain")
        if closed is not None:
            response.call_on_close(lambda: closed.append(order_id))
        return response

    @app.get("/orders/<order_id>/invoice")
    def invoice(order_id: str) -> Response:
        return send_file(io.BytesIO(b"%PDF"), mimetype="application/pdf")

    instrument_flask_app(app)
    return app


def _log_lines(capture: TelemetryCapture) -> list[tuple[Any, ...]]:
    return [
        (
            r.log_record.body,
            r.log_record.trace_id,
            r.log_record.span_id,
            (r.log_record.attributes or {}).get("orderId"),
            (r.log_record.attributes or {}).get("requestId"),
        )
        for r in capture.logs()
    ]


def test_a_streamed_body_is_made_under_the_request_which_ends_with_it(otel_capture: TelemetryCapture) -> None:
    made: list[int] = []
    response = _streaming_app(made).test_client().get("/orders/S-1/lines", headers={"X-Request-ID": "r-s1"})
    assert response.headers["X-Request-ID"] == "r-s1"
    assert otel_capture.spans() == []  # the test client has read the first chunk only: still sending
    assert response.data == b"0\n1\n2\n"
    [span] = otel_capture.spans()
    ctx = span.context
    assert _log_lines(otel_capture) == [
        (f"line {n}", ctx.trace_id, ctx.span_id, "S-1", "r-s1") for n in range(3)
    ]
    assert span.end_time is not None and span.end_time >= made[-1]  # the span covers the whole body
    assert (span.name, span.status.status_code.name, span.attributes["http.response.status_code"]) == (
        "GET /orders/<order_id>/lines",
        "UNSET",
        200,
    )
    points = {p.name: p for p in otel_capture.metrics() if p.name.startswith("http.server.")}
    assert points["http.server.request.duration"].count == 1
    assert points["http.server.active_requests"].value == 0
    assert current_business_keys() == {}


def _request_ended_once(capture: TelemetryCapture) -> None:
    """One span, one duration measurement, no request still counted as active."""
    points = {p.name: p for p in capture.metrics() if p.name.startswith("http.server.")}
    assert len(capture.spans()) == 1
    assert points["http.server.request.duration"].count == 1
    assert points["http.server.active_requests"].value == 0


def test_a_streamed_body_closed_early_ends_the_request(otel_capture: TelemetryCapture) -> None:
    closed: list[str] = []
    response = _streaming_app([], closed).test_client().get("/orders/S-2/lines")
    response.close()  # what a server does when the client goes away after the first chunk
    [span] = otel_capture.spans()
    assert _log_lines(otel_capture) == [
        ("line 0", span.context.trace_id, span.context.span_id, "S-2", span.attributes["requestId"]),
        (
            "client went away",
            span.context.trace_id,
            span.context.span_id,
            "S-2",
            span.attributes["requestId"],
        ),
    ]
    assert (span.status.status_code.name, span.attributes["http.response.status_code"]) == ("UNSET", 200)
    response.close()  # a second close changes nothing
    _request_ended_once(otel_capture)
    assert closed == ["S-2"]  # the app's close callbacks ran once


def test_a_wrapper_closing_the_iterator_it_got_ends_the_request(otel_capture: TelemetryCapture) -> None:
    """werkzeug's debugger (``flask run --debug``) iterates with ``yield from`` and closes its own
    generator when the client goes away: the close reaches our iterator, not our body's ``close``."""
    from werkzeug.debug import DebuggedApplication

    closed: list[str] = []
    app = DebuggedApplication(_streaming_app([], closed))
    body = app(EnvironBuilder(path="/orders/S-5/lines").get_environ(), lambda *args: None)
    assert next(iter(body)) == b"0\n"
    body.close()
    _request_ended_once(otel_capture)
    [span] = otel_capture.spans()
    assert [(line[0], line[1], line[3]) for line in _log_lines(otel_capture)] == [
        ("line 0", span.context.trace_id, "S-5"),
        ("client went away", span.context.trace_id, "S-5"),
    ]
    assert closed == ["S-5"]


def test_a_500_handler_that_streams_keeps_the_failed_requests_trace_and_keys(
    otel_capture: TelemetryCapture,
) -> None:
    """Flask answers an unhandled exception outside the dispatch: its handler's stream still ends the request."""
    made: list[int] = []
    app = Flask("wsgi-stream-500")

    @app.get("/orders/<order_id>/report")
    def report(order_id: str) -> None:
        raise RuntimeError("report store gone")

    @app.errorhandler(500)
    def server_error(error: Exception) -> Response:
        def generate() -> Iterator[str]:
            for n in range(2):
                logger.info("apology {}", n)
                made.append(time.time_ns())
                yield f"sorry {n}\n"

        return Response(generate(), status=500, mimetype="text/plain")

    instrument_flask_app(app)
    response = app.test_client().get("/orders/E-1/report", headers={"X-Request-ID": "r-e1"})
    assert otel_capture.spans() == []  # still sending
    assert (response.status_code, response.data) == (500, b"sorry 0\nsorry 1\n")
    [span] = otel_capture.spans()
    ctx = span.context
    apologies = [line for line in _log_lines(otel_capture) if str(line[0]).startswith("apology")]
    assert apologies == [(f"apology {n}", ctx.trace_id, ctx.span_id, "E-1", "r-e1") for n in range(2)]
    assert span.end_time is not None and span.end_time >= made[-1]
    assert (span.status.status_code.name, span.attributes["error.type"], span.attributes["orderId"]) == (
        "ERROR",
        "RuntimeError",
        "E-1",
    )
    _request_ended_once(otel_capture)
    assert current_business_keys() == {}


def test_an_exception_from_a_streamed_body_marks_the_span(otel_capture: TelemetryCapture) -> None:
    response = _streaming_app([]).test_client().get("/orders/broken/lines")
    with pytest.raises(RuntimeError, match="line store gone"):
        response.get_data()
    response.close()
    [span] = otel_capture.spans()
    assert (span.status.status_code.name, span.attributes["error.type"], [e.name for e in span.events]) == (
        "ERROR",
        "RuntimeError",
        ["exception"],
    )
    assert span.attributes["http.response.status_code"] == 200  # what the client was sent


def test_a_streamed_body_iterated_on_other_threads_leaves_no_context_behind(
    otel_capture: TelemetryCapture,
) -> None:
    app = _streaming_app([])
    environ = EnvironBuilder(path="/orders/S-3/lines").get_environ()
    body = app(environ, lambda status, headers, exc_info=None: None)
    chunks = iter(body)
    after_each_step: list[Any] = []

    def step() -> None:
        after_each_step.append((next(chunks, None), trace.get_current_span(), dict(current_business_keys())))

    for _ in range(4):  # three chunks and the end, each on a thread of its own
        worker = threading.Thread(target=step)
        worker.start()
        worker.join()
    body.close()
    assert [chunk for chunk, _, _ in after_each_step] == [b"0\n", b"1\n", b"2\n", None]
    assert all(span is trace.INVALID_SPAN and keys == {} for _, span, keys in after_each_step)
    assert len(otel_capture.spans()) == 1
    assert [line[3] for line in _log_lines(otel_capture)] == ["S-3"] * 3


def test_a_file_body_is_handed_to_the_server_unwrapped(otel_capture: TelemetryCapture) -> None:
    class FileWrapper:  # what gunicorn offers, so that it can send the file with sendfile
        def __init__(self, file: Any, block_size: int = 8192) -> None:
            self.file = file

        def __iter__(self) -> Iterator[bytes]:
            return iter(lambda: self.file.read(8192), b"")

    app = _streaming_app([])
    environ = _server_environ("/orders/S-4/invoice")  # a server: other bodies end the request once sent
    environ["wsgi.file_wrapper"] = FileWrapper
    body = app(environ, lambda status, headers, exc_info=None: None)
    assert isinstance(body, FileWrapper)
    [span] = otel_capture.spans()  # ended when the app returned: the server sends the file itself
    assert span.attributes["http.response.status_code"] == 200


def _served_app(closed: list[str]) -> Flask:
    """An order endpoint whose response records its close, and one that fails."""
    app = Flask("wsgi-served")

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> Response:
        response = Response(f"order {order_id}", mimetype="text/plain")
        response.call_on_close(lambda: closed.append(order_id))
        return response

    @app.get("/orders/<order_id>/boom")
    def boom(order_id: str) -> None:
        raise RuntimeError("boom")

    return instrument_flask_app(app)


def _server_environ(path: str, server: str = "gunicorn/27.0.1", **headers: str) -> dict[str, Any]:
    """The environ of a request to ``path`` from a WSGI server that names itself in ``SERVER_SOFTWARE``."""
    environ: dict[str, Any] = EnvironBuilder(path=path, headers=headers).get_environ()
    environ["SERVER_SOFTWARE"] = server
    return environ


def _serve(app: Flask, path: str) -> tuple[list[tuple[str, dict[str, str]]], Any]:
    """Call ``app`` as a WSGI server does (it names itself): the start_response calls and the body."""
    environ = _server_environ(path, **{"X-Request-ID": "r-sent"})
    started: list[tuple[str, dict[str, str]]] = []
    body = app(environ, lambda status, headers, exc_info=None: started.append((status, dict(headers))))
    return started, body


def test_under_a_server_the_request_ends_after_its_body_is_sent(otel_capture: TelemetryCapture) -> None:
    """The span, its processors and the duration run when the server closes the body, once it
    has sent it: the client does not wait for them, and the span covers the sending."""
    closed: list[str] = []
    started, body = _serve(_served_app(closed), "/orders/O-7")
    assert started == [
        (
            "200 OK",
            {"Content-Type": "text/plain; charset=utf-8", "Content-Length": "9", "X-Request-ID": "r-sent"},
        )
    ]
    assert b"".join(body) == b"order O-7"
    sent_ns = time.time_ns()
    points = {p.name: p for p in otel_capture.metrics() if p.name.startswith("http.server.")}
    assert (otel_capture.spans(), closed) == ([], [])  # sent, not closed: the request is still on
    assert sorted((name, p.value) for name, p in points.items()) == [("http.server.active_requests", 1)]
    body.close()
    points = {p.name: p for p in otel_capture.metrics() if p.name.startswith("http.server.")}
    assert (points["http.server.active_requests"].value, points["http.server.request.duration"].count) == (
        -1,  # the change since the last reading (delta temporality): no request left on
        1,
    )
    [span] = otel_capture.spans()
    assert (span.name, span.status.status_code.name) == ("GET /orders/<order_id>", "UNSET")
    assert {k: span.attributes[k] for k in ("http.response.status_code", "orderId", "requestId")} == {
        "http.response.status_code": 200,
        "orderId": "O-7",
        "requestId": "r-sent",
    }
    assert span.end_time is not None and span.end_time >= sent_ns
    body.close()  # a second close changes nothing
    assert [p for p in otel_capture.metrics() if p.name.startswith("http.server.") and p.value] == []
    assert len(otel_capture.spans()) == 1
    assert closed == ["O-7"]  # the app's close callbacks ran once
    assert current_business_keys() == {}


def test_under_a_server_a_failed_request_ends_as_a_500_once_sent(otel_capture: TelemetryCapture) -> None:
    started, body = _serve(_served_app([]), "/orders/O-8/boom")
    assert [status for status, _ in started] == ["500 INTERNAL SERVER ERROR"]
    assert b"".join(body).startswith(b"<!doctype html>")
    assert otel_capture.spans() == []
    body.close()
    [span] = otel_capture.spans()
    assert (span.status.status_code.name, span.attributes["error.type"], span.attributes["orderId"]) == (
        "ERROR",
        "RuntimeError",
        "O-8",
    )
    _request_ended_once(otel_capture)


def test_under_a_server_a_body_never_closed_ends_the_request_when_dropped(
    otel_capture: TelemetryCapture,
) -> None:
    """werkzeug's debugger (``flask run --debug``) iterates with ``yield from`` and, when the client
    goes away, closes its own generator, never our body: the request ends when the body is let go."""
    from werkzeug.debug import DebuggedApplication

    closed: list[str] = []
    debugged = DebuggedApplication(_served_app(closed))
    environ = _server_environ("/orders/O-9", "Werkzeug/3.1.9", **{"X-Request-ID": "r-gone"})
    body = debugged(environ, lambda status, headers, exc_info=None: None)
    chunks = iter(body)
    assert next(chunks) == b"order O-9"
    assert otel_capture.spans() == []
    body.close()  # the client went away: the debugger's generator is closed, not our body
    assert closed == ["O-9"]  # the close reached the app's response through ``yield from``
    del body, chunks
    [span] = otel_capture.spans()
    assert (span.attributes["orderId"], span.attributes["requestId"]) == ("O-9", "r-gone")
    _request_ended_once(otel_capture)


def test_under_a_server_whose_file_wrapper_is_a_function_no_body_is_wrapped(
    otel_capture: TelemetryCapture,
) -> None:
    """uWSGI's ``wsgi.file_wrapper`` is a function: only the very object it made may go back for sendfile."""
    made: list[Any] = []

    def file_wrapper(file: Any, block_size: int = 8192) -> Any:
        made.append(iter(lambda: file.read(block_size), b""))
        return made[-1]

    environ = _server_environ("/orders/S-6/invoice", "uWSGI")
    environ["wsgi.file_wrapper"] = file_wrapper
    body = _streaming_app([])(environ, lambda status, headers, exc_info=None: None)
    assert body is made[-1]
    [span] = otel_capture.spans()  # ended as the app returned
    assert span.attributes["http.response.status_code"] == 200


def test_the_views_current_span_is_the_request_span_and_takes_the_apps_changes(
    otel_capture: TelemetryCapture,
) -> None:
    app = Flask("view-span")
    seen: list[int] = []

    @app.get("/priced/<order_id>")
    def priced(order_id: str) -> str:
        touch_the_views_span(seen, event=False)
        return order_id

    @app.get("/noted/<order_id>")
    def noted(order_id: str) -> str:
        touch_the_views_span(seen, event=True)
        return order_id

    client = instrument_flask_app(app).test_client()
    assert client.get("/priced/A-1").status_code == client.get("/noted/A-2").status_code == 200
    assert_the_views_span_took_its_changes(otel_capture, seen, "<order_id>")
