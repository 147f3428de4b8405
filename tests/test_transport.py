"""The http.client transport sends what the OTLP/HTTP exporters give it, and is used only where it can be."""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_correlate._transport import HTTPClientTransport, exporter_kwargs
from tests.forks import exit_code_of


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request; answers 200, or 429 with Retry-After for /busy."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does
    received: list[tuple[str, str, dict[str, str], bytes, int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.received.append((self.command, self.path, headers, body, id(self.connection)))
        busy = self.path == "/busy"
        answer = b"slow down" if busy else b""
        self.send_response(429 if busy else 200)
        if busy:
            self.send_header("Retry-After", "7")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    _Recorder.received = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: http.server.ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_requests_go_out_whole_on_one_kept_alive_connection(server: http.server.ThreadingHTTPServer) -> None:
    transport = HTTPClientTransport()
    for n in range(3):
        result = transport.request(
            "POST",
            _url(server, "/v1/traces?x=1"),
            headers={"Content-Type": "application/x-protobuf"},
            data=b"batch-%d" % n,
            timeout=5,
        )
        assert (result.status_code, result.reason, result.error, result.content()) == (200, "OK", None, b"")
    transport.close()
    assert [(m, p, h["content-type"], b) for m, p, h, b, _ in _Recorder.received] == [
        ("POST", "/v1/traces?x=1", "application/x-protobuf", b"batch-%d" % n) for n in range(3)
    ]
    assert len({connection for *_, connection in _Recorder.received}) == 1


def test_a_refusing_collector_is_a_connection_error_and_the_next_request_reconnects(
    server: http.server.ThreadingHTTPServer,
) -> None:
    transport = HTTPClientTransport()
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    refused = transport.request("POST", f"http://127.0.0.1:{port}/v1/logs", data=b"x", timeout=2)
    assert refused.status_code is None and transport.is_connection_error(refused.error)
    answered = transport.request("POST", "https://127.0.0.1/v1/logs", data=b"x", timeout=2)
    assert isinstance(answered.error, ValueError) and not transport.is_connection_error(answered.error)
    assert "http://" in str(answered.error)


def test_retry_after_reaches_the_exporter(server: http.server.ThreadingHTTPServer) -> None:
    result = HTTPClientTransport().request("POST", _url(server, "/busy"), data=b"x", timeout=5)
    assert (result.status_code, result.content()) == (429, b"slow down")
    assert result.headers().get("retry-after") == "7"  # case-insensitive, as the exporter reads it


def test_the_otlp_exporter_sends_spans_through_it(server: http.server.ThreadingHTTPServer) -> None:
    exporter = OTLPSpanExporter(endpoint=_url(server, "/v1/traces"), _transport=HTTPClientTransport())
    provider = TracerProvider(resource=Resource.create({"service.name": "transport-test"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("checkout").end()
    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
    [(_, path, headers, body, _)] = _Recorder.received
    assert path == "/v1/traces" and headers["content-type"] == "application/x-protobuf"
    assert b"checkout" in body and b"transport-test" in body
    exporter.shutdown()


@pytest.mark.parametrize(
    ("env", "ours"),
    [
        ({}, True),  # the distro's default endpoint, http://localhost:4318
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/v1/traces"}, False),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/t",
            },
            True,
        ),
        ({"HTTP_PROXY": "http://proxy:3128"}, False),
        ({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "vault"}, False),
        ({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "vault"}, False),
    ],
)
def test_only_plain_http_endpoints_without_proxy_or_credentials_use_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], ours: bool
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "HTTP_PROXY",
        "http_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kwargs = exporter_kwargs(OTLPSpanExporter, "traces")
    assert ("_transport" in kwargs) is ours
    if any("CREDENTIAL" in name for name in env):
        return  # the exporter itself loads the provider's requests session (none is installed here)
    exporter = OTLPSpanExporter(**kwargs)
    assert (type(exporter._client._transport).__name__ == "HTTPClientTransport") is ours
    exporter.shutdown()


def test_every_otlp_http_exporter_accepts_it_and_others_are_left_alone() -> None:
    for exporter_class, signal in ((OTLPLogExporter, "logs"), (OTLPMetricExporter, "metrics")):
        exporter = exporter_class(**exporter_kwargs(exporter_class, signal))
        assert type(exporter._client._transport).__name__ == "HTTPClientTransport"
        exporter.shutdown()
    assert exporter_kwargs(InMemorySpanExporter, "traces") == {}


def test_close_does_not_wait_for_a_request_a_hung_collector_never_answers() -> None:
    """The SDK's shutdown closes the transport without waiting for its export thread; neither do we."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (in the backlog) and never answers
        transport = HTTPClientTransport()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/traces"
        results: list[Any] = []
        sender = threading.Thread(
            target=lambda: results.append(transport.request("POST", url, data=b"x", timeout=60))
        )
        sender.start()
        deadline = time.monotonic() + 10
        while transport._connection is None or transport._connection.sock is None:
            assert time.monotonic() < deadline, "the request never connected"
            time.sleep(0.01)
        closer = threading.Thread(target=transport.close)
        closer.start()
        closer.join(20)  # generous; waiting for the request would take its 60 s timeout
        sender.join(20)
        assert not closer.is_alive() and not sender.is_alive()
        [result] = results
        assert result.status_code is None and result.error is not None


def test_a_forked_child_gets_a_fresh_lock_and_no_connection(server: http.server.ThreadingHTTPServer) -> None:
    transport = HTTPClientTransport()
    assert transport.request("POST", _url(server, "/v1/logs"), data=b"x", timeout=5).status_code == 200
    with transport._lock:  # the parent's export thread is mid-request at the fork
        pid = os.fork()
        if pid == 0:  # the child: must be able to export on its own connection
            ok = transport._lock.acquire(blocking=False) and transport._connection is None
            os._exit(0 if ok else 1)
    assert exit_code_of(pid) == 0
    assert transport._connection is not None  # the parent keeps its own


def test_a_malformed_url_is_not_retried_as_a_connection_error() -> None:
    result = HTTPClientTransport().request("POST", "http://127.0.0.1:9/v1/traces bad", data=b"x", timeout=2)
    assert isinstance(result.error, http.client.InvalidURL)
    assert not HTTPClientTransport().is_connection_error(result.error)


def test_credentials_in_the_url_or_a_netrc_file_keep_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:secret@collector:4318")
    assert exporter_kwargs(OTLPSpanExporter, "traces") == {}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert "_transport" in exporter_kwargs(OTLPSpanExporter, "traces")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine collector login user password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert exporter_kwargs(OTLPSpanExporter, "traces") == {}
