"""A lean WSGI server wrapper for Flask: the server span, the HTTP server metrics and the business keys.

The WSGI counterpart of :mod:`otel_correlate._asgi_server`, replacing the contrib
Flask instrumentation (its WSGI middleware and request hooks) plus our former
hooks: one wrapper around ``app.wsgi_app`` starts the SERVER span, decides the
requestId and echoes ``X-Request-ID``; ``app.full_dispatch_request``, wrapped
on the app instance, adds the matched rule (``http.route``) and route-parameter
keys and hands an unhandled exception to the span. Span and metrics are the ones the
contrib instrumentation emits with ``OTEL_SEMCONV_STABILITY_OPT_IN=http``.

A streamed response (a generator body) runs after the app has returned, while the
server sends it: its chunks are produced under the request's context, so their log
lines carry the trace and the keys, and the span and the duration end when the
body is exhausted or closed, not before the first chunk. Any other body, under a
server, ends the request when the server closes it, once sent: the client does not
wait for the span's end, its processors and the duration.

Example:
    >>> from flask import Flask
    >>> app = Flask("orders")
    >>> install(app)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import GeneratorType
from typing import Any

from otel_correlate import _context, _web
from otel_correlate._asgi_server import _Instruments, _RequestState

_STATE = "otel_correlate.request"
_ROUTE = "otel_correlate.route"
_ERROR = "otel_correlate.error"
_TOKEN = "otel_correlate.route_token"
_STREAMED = "otel_correlate.streamed"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ServerTelemetryWSGI:
    """Wraps a WSGI app: one SERVER span and the HTTP server metrics per request, with business keys."""

    def __init__(self, wsgi_app: WSGIApp) -> None:
        self.wsgi_app = wsgi_app
        self._instruments = _Instruments()
        settings = _web.server_settings("FLASK", "Flask")
        self._traced = settings is not None  # a setting it cannot use: the app runs untraced
        if settings is not None:
            header, self._excluded = settings
            self._header = header
            self._header_lower = header.lower()
            self._header_bytes = self._header_lower.encode("latin-1")
            self._environ_key = "HTTP_" + header.upper().replace("-", "_")

    def _untraced(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """An excluded URL: no span and no metrics, but the requestId and its header still apply."""
        try:
            ctx, keys = _web.enter_request(environ.get(self._environ_key))
        except Exception:  # telemetry must never fail the request
            return self.wsgi_app(environ, start_response)
        header, header_lower, request_id = self._header, self._header_lower, keys["requestId"]

        def start_response_with_request_id(
            status: str, response_headers: list[tuple[str, str]], *args: Any
        ) -> Any:
            response_headers = [h for h in response_headers if h[0].lower() != header_lower]
            response_headers.append((header, request_id))
            return start_response(status, response_headers, *args)

        token = _context.attach(ctx)
        try:
            return self.wsgi_app(environ, start_response_with_request_id)
        finally:
            _context.detach(token)

    def _start(self, environ: dict[str, Any]) -> _RequestState:
        read = _web.PROPAGATION_HEADERS.current().environ
        headers = {name: environ[key] for key, name in read.items() if environ.get(key)}
        protocol: str = environ.get("SERVER_PROTOCOL", "")
        client = environ.get("REMOTE_ADDR")
        port = environ.get("REMOTE_PORT")
        server_port = environ.get("SERVER_PORT")
        return _RequestState(  # raw method, scheme, path, query, version, headers, request id, client, server
            self._instruments,
            self._header_bytes,
            environ.get("REQUEST_METHOD", ""),
            environ.get("wsgi.url_scheme", "http"),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
            protocol.partition("/")[2] or None,
            headers,
            environ.get(self._environ_key),
            (client, int(port) if port and str(port).isdigit() else None) if client else None,
            (environ["SERVER_NAME"], int(server_port))
            if environ.get("SERVER_NAME") and server_port and str(server_port).isdigit()
            else None,
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self._traced:
            return self.wsgi_app(environ, start_response)
        path: str = environ.get("PATH_INFO", "")
        query: str = environ.get("QUERY_STRING", "")
        excluded = self._excluded
        if excluded is not None and excluded.url_disabled(f"{path}?{query}" if query else path):
            return self._untraced(environ, start_response)
        try:
            state = self._start(environ)
        except Exception:  # telemetry must never fail the request
            return self.wsgi_app(environ, start_response)
        environ[_STATE] = state
        echoed = state.request_id_header
        header, header_lower = self._header, self._header_lower
        sizes = state.instruments.body_sizes

        def start_response_with_telemetry(
            status: str, response_headers: list[tuple[str, str]], *args: Any
        ) -> Any:
            try:
                state.status = int(status.split(" ", 1)[0])
                if sizes:  # off by default: no header scan for content-length
                    for name, value in response_headers:
                        if name.lower() == "content-length" and value.isdigit():
                            state.response_size = int(value)
                if echoed is not None:
                    response_headers = [h for h in response_headers if h[0].lower() != header_lower]
                    response_headers.append((header, echoed[1].decode("latin-1")))
            except Exception:  # telemetry must never fail the request
                pass
            return start_response(status, response_headers, *args)

        streamed = None
        sent_later = False
        token = _context.attach(state.ctx)
        try:
            body = self.wsgi_app(environ, start_response_with_telemetry)
            streamed = environ.get(_STREAMED)
            sent_later = streamed is None and _ends_once_sent(environ, body)
        except BaseException as exc:
            state.error = exc
            raise
        finally:
            if streamed is None and not sent_later:
                _finish(state, environ)
            route_token = environ.pop(_TOKEN, None)
            if route_token is not None:
                _context.detach(route_token)
            _context.detach(token)
        if sent_later:
            return _SentBody(body, state, environ)
        if streamed is None:
            return body
        return _StreamedBody(body, state, environ, streamed)


def _finish(state: _RequestState, environ: dict[str, Any]) -> None:
    """End the request's span and record its metrics (once; telemetry never fails the request)."""
    try:
        if state.error is None:
            state.error = environ.get(_ERROR)
        state.finish(environ.get(_ROUTE))
    except Exception:  # telemetry must never fail the request
        pass


def _ends_once_sent(environ: dict[str, Any], body: Iterable[bytes]) -> bool:
    """Whether the request's telemetry can end after the server has sent ``body`` rather than before.

    Only under a server: one that names itself in ``SERVER_SOFTWARE`` (as CGI requires
    of servers, and as gunicorn, waitress, werkzeug's and the standard library's do)
    closes the body once it is sent (PEP 3333). A test client sets no name and may
    never close it, so there the request ends as the app returns, as the test expects.
    A body the server may hand to ``sendfile`` (made by its ``wsgi.file_wrapper``) is
    passed on untouched, and its request ends now. When that wrapper is a function
    (uWSGI's), whose products cannot be told apart, no body is wrapped.
    """
    try:
        if not environ.get("SERVER_SOFTWARE"):
            return False
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is None:
            return True
        return isinstance(wrapper, type) and not isinstance(body, wrapper)
    except Exception:  # telemetry must never fail the request
        return False


class _SentBody:
    """A body already made, that ends the request's telemetry when the server closes it, after sending it.

    The span's end, the duration and the span processors then run once the client
    has the response instead of before: the client waits for none of them (its next
    request on the same connection still starts after them), and the duration covers
    the whole exchange, as it does for an ASGI app (whose telemetry ends after its
    last ``send``). The chunks go to the server as the app made them (``__iter__``
    hands out the body's own iterator). A wrapper that never closes us (werkzeug's
    debugger, ``yield from`` our body, when the client goes away) ends the request
    when it lets go of the body.
    """

    __slots__ = ("_body", "_environ", "_state")

    def __init__(self, body: Iterable[bytes], state: _RequestState, environ: dict[str, Any]) -> None:
        self._body = body
        self._state: _RequestState | None = state
        self._environ = environ

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        state, self._state = self._state, None
        if state is None:  # closed before: the body's close callbacks run once
            return
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            _finish(state, self._environ)

    def __del__(self) -> None:
        state, self._state = self._state, None
        if state is not None:  # dropped without a close
            _finish(state, self._environ)


class _StreamedBody:
    """A streamed response's body: each chunk made under the request's context; the request ends with it.

    The server iterates the body after the app returned. The context is attached for
    each step and detached before the chunk goes back to the server, so a server
    that iterates on another thread gets no stale context. The request's telemetry
    ends when the body is exhausted (the last chunk is sent) or closed (PEP 3333:
    always, also after a client went away), whichever comes first; a wrapper that
    closes the iterator it got instead (``yield from body``, as werkzeug's debugger
    does) ends it too. An exception from the body marks the span as an error.
    """

    __slots__ = ("_body", "_closed", "_ctx", "_environ", "_state")

    def __init__(
        self, body: Iterable[bytes], state: _RequestState, environ: dict[str, Any], ctx: Any
    ) -> None:
        self._body = body
        self._state: _RequestState | None = state
        self._environ = environ
        self._ctx = ctx
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        ctx = self._ctx
        chunks: Iterator[bytes] | None = None
        while True:
            token = _context.attach(ctx)
            try:
                if chunks is None:
                    chunks = iter(self._body)
                chunk = next(chunks)
            except StopIteration:
                self._end()
                return
            except BaseException as exc:
                state = self._state
                if state is not None and state.error is None:
                    state.error = exc
                raise
            finally:
                _context.detach(token)
            try:
                yield chunk
            except GeneratorExit:  # a wrapper closed this iterator instead of the body (client gone)
                self.close()
                raise

    def close(self) -> None:
        if self._closed:  # the body's own close callbacks run once, however often we are closed
            return
        self._closed = True
        try:
            with _context.attached(self._ctx):
                close = getattr(self._body, "close", None)
                if close is not None:
                    close()
        finally:
            self._end()

    def _end(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            _finish(state, self._environ)


def _mark_if_streamed(environ: dict[str, Any], response: Any) -> None:
    """Mark a generator body: it runs after the app returned, while the server sends it, and the request ends with it.

    It is made under the context current now (the request's, with the route keys once
    found). Anything else (bytes, a file the server may sendfile) is done already.
    """
    try:
        if type(response.response) is GeneratorType:
            environ[_STREAMED] = _context.current_context()
    except Exception:  # telemetry must never fail the request
        pass


def _request_getter() -> Callable[[], Any]:
    """The current Flask request, or None: from Flask's context variable, else its proxy."""
    try:
        from flask.globals import _cv_request
    except ImportError:  # a Flask without the context variable: the public proxy
        from flask import has_request_context, request

        return lambda: request._get_current_object() if has_request_context() else None  # type: ignore[attr-defined]

    def current() -> Any:
        request_ctx = _cv_request.get(None)
        return request_ctx.request if request_ctx is not None else None

    return current


def _dispatch_with_route(app: Any) -> Callable[[], Any]:
    """``app.full_dispatch_request`` run with the matched rule and route-parameter keys.

    Flask has matched the URL when it calls ``full_dispatch_request``, so the
    wrapper records ``http.route`` and the route-parameter keys for the span's end,
    puts the keys in the context for the user's ``before_request`` hooks, the view
    and its ``after_request`` hooks, and hands an exception no error handler took
    to the span. When one escapes, the keys stay attached until the request ends, so
    Flask's error log line and the app's 500 handler still carry them. Replacing the method on the
    app instance costs one call per request; a request hook costs Flask's
    coroutine check and two context-local lookups per hook.
    """
    current_request = _request_getter()
    original = app.full_dispatch_request

    def full_dispatch_request() -> Any:
        try:
            request = current_request()
            environ = request.environ if request is not None else None
        except Exception:  # telemetry must never fail the request
            environ = None
        if environ is None or _STATE not in environ:
            return original()
        token = None
        try:
            rule = request.url_rule
            if rule is not None:
                environ[_ROUTE] = rule.rule
            route_ctx = _web.enter_route(request.view_args, environ[_STATE])
            if route_ctx is not None:
                token = _context.attach(route_ctx)
        except Exception:  # telemetry must never fail the request
            pass
        try:
            response = original()
        except Exception as exc:  # not handled by the app's error handlers: a 500 for the span
            if not app.should_ignore_error(exc):
                environ[_ERROR] = exc
            if token is not None:
                environ[_TOKEN] = token  # detached when the request ends, after Flask's handle_exception
            raise
        _mark_if_streamed(environ, response)
        if token is not None:
            _context.detach(token)
        return response

    return full_dispatch_request


def _handle_exception_marking_streams(app: Any) -> Callable[[Exception], Any]:
    """``app.handle_exception`` that marks a streamed 500 response, as the dispatch wrapper marks others.

    Flask answers an exception no error handler took outside ``full_dispatch_request``:
    a 500 handler's generator body is streamed under the context still attached then
    (the route keys stay attached until the request ends, see :func:`_dispatch_with_route`).
    """
    current_request = _request_getter()
    original = app.handle_exception

    def handle_exception(e: Exception) -> Any:
        response = original(e)
        try:
            request = current_request()
            environ = request.environ if request is not None else None
        except Exception:  # telemetry must never fail the request
            return response
        if environ is not None and _STATE in environ:
            _mark_if_streamed(environ, response)
        return response

    return handle_exception


def install(app: Any) -> None:
    """Trace one Flask app with the lean wrapper (idempotent)."""
    if getattr(app, "_otel_correlate_wsgi", False):
        return
    dispatch = _dispatch_with_route(app)  # before the app changes: nothing half-installed
    handle_exception = _handle_exception_marking_streams(app)
    app._otel_correlate_wsgi = True
    app._is_instrumented_by_opentelemetry = True
    app.wsgi_app = ServerTelemetryWSGI(app.wsgi_app)
    app.full_dispatch_request = dispatch
    app.handle_exception = handle_exception
