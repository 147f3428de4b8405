"""OTLP/HTTP over the standard library's ``http.client`` for plain-HTTP collector endpoints.

The OTLP/HTTP exporters send through ``requests`` by default: about 0.7 ms of CPU
per POST on this machine against about 0.13 ms for ``http.client`` (a batch of 512
spans or log records is one POST), and ``requests`` with ``urllib3`` adds about
6 MB to every service that does not import them itself. For the usual setup, a
collector on ``http://`` next to the service, :func:`exporter_kwargs` hands the
exporters :class:`HTTPClientTransport` instead. Anything that needs ``requests``
(``https://`` endpoints and their certificates, proxy variables, a credential
provider session, credentials in the URL or a ``.netrc`` file) keeps the exporters'
own transport. Retries, timeouts,
compression and headers stay the exporter's: a transport only sends one request.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

#: Variables that make the exporters' ``requests`` transport behave differently from ours.
_NEEDS_REQUESTS = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_SIGNAL_ENDPOINT = {
    "traces": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "logs": "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "metrics": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
}
_CREDENTIAL_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_{}CREDENTIAL_PROVIDER"


@dataclass(frozen=True, slots=True)
class HTTPClientResult(BaseHTTPResult):
    """One response (or the error that prevented it), read whole."""

    body: bytes = field(default=b"", repr=False)
    response_headers: Any = field(default_factory=dict, repr=False)  # http.client's HTTPMessage

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return self.response_headers  # type: ignore[no-any-return]  # case-insensitive, as required


class HTTPClientTransport(BaseHTTPTransport):
    """One kept-alive ``http.client`` connection per exporter, reopened after any error.

    ``close`` never waits for a request in flight (the SDK's shutdown does not wait for
    its export thread either): it shuts the socket down and the request returns its
    error. A process forked from one that exports (gunicorn's workers) starts with a
    fresh lock and no connection of its own.

    Example:
        >>> HTTPClientTransport().is_connection_error(ConnectionRefusedError())
        True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._address: tuple[str, int] | None = None
        self._closed = False
        _TRANSPORTS.add(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a lock held by the parent's export thread stays held
        self._connection = None  # the parent's socket is the parent's
        self._address = None

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        with self._lock:
            try:
                if self._closed:
                    raise ConnectionAbortedError("the exporter was shut down")
                parts = urlsplit(url)
                if parts.scheme != "http" or not parts.hostname:
                    raise ValueError(f"{url!r} is not an http:// URL; this transport sends plain HTTP only")
                address = (parts.hostname, parts.port or 80)
                connection = self._connect(address, timeout)
                target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                connection.request(method, target, body=data, headers=headers or {})
                response = connection.getresponse()
                body = response.read()
                if response.will_close:
                    self._close()
                return HTTPClientResult(
                    status_code=response.status,
                    reason=response.reason,
                    body=body,
                    response_headers=response.headers,
                )
            except Exception as error:  # the exporter decides what an error means
                self._close()
                return HTTPClientResult(error=error)

    def _connect(self, address: tuple[str, int], timeout: float | None) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is None or self._address != address:
            self._close()
            connection = self._connection = http.client.HTTPConnection(*address, timeout=timeout)
            self._address = address
        else:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def is_connection_error(self, exception: Exception | None) -> bool:
        # refused, reset, timed out (OSError), or a connection the server closed mid-answer;
        # not a malformed URL, which no retry fixes
        return isinstance(exception, OSError | http.client.HTTPException) and not isinstance(
            exception, http.client.InvalidURL
        )

    def close(self) -> None:
        self._closed = True
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # a request in flight returns now, with its error
            except OSError:
                pass
        if self._lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._lock.release()


_TRANSPORTS: weakref.WeakSet[HTTPClientTransport] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for transport in list(_TRANSPORTS):
        transport._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def _netrc_file() -> bool:
    candidates = [os.environ.get("NETRC", "")] + [os.path.expanduser(f"~/{n}") for n in (".netrc", "_netrc")]
    return any(path and os.path.isfile(path) for path in candidates)


def exporter_kwargs(exporter_class: type, signal: str) -> dict[str, Any]:
    """Keyword arguments for an exporter class: our transport for an OTLP/HTTP one sending to ``http://``."""
    if not exporter_class.__module__.startswith("opentelemetry.exporter.otlp.proto.http"):
        return {}
    endpoint = os.environ.get(_SIGNAL_ENDPOINT[signal], "").strip() or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"
    )
    parts = urlsplit(endpoint.strip())
    if parts.scheme != "http" or parts.username is not None:
        return {}  # https, or credentials in the URL (requests sends them as Basic auth)
    if _netrc_file():
        return {}  # requests would look the collector up there for credentials
    if any(os.environ.get(name) for name in _NEEDS_REQUESTS):
        return {}
    if os.environ.get(_CREDENTIAL_PROVIDER.format("")) or os.environ.get(
        _CREDENTIAL_PROVIDER.format(f"{signal.upper()}_")
    ):
        return {}
    return {"_transport": HTTPClientTransport()}
