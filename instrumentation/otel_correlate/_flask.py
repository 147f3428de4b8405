"""Flask integration: the server span, business keys and ``X-Request-ID`` on every response.

Under ``opentelemetry-instrument`` the distro calls :func:`patch_flask_class`
instead of loading the contrib Flask instrumentor: every app created afterwards
is traced by :mod:`otel_correlate._wsgi_server` (one lean WSGI wrapper and two
hooks doing the contrib instrumentation's job and ours). :func:`instrument_flask_app`
does the same for one app configured by hand; for an app the contrib instrumentor
already traces, :func:`register_hooks` adds only the business keys.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context

from otel_correlate import _web
from otel_correlate._optional import require_extra

_TOKEN = "_otel_correlate_token"
_REQUEST_ID = "_otel_correlate_request_id"


def _require_flask() -> Any:
    return require_extra("flask", extra="flask", feature="otel-correlate's Flask integration")


def _before_request() -> None:
    from flask import g, request

    try:
        header = request.headers.get(_web.request_id_header())
        ctx, keys = _web.enter_request(header, request.view_args)
    except Exception:  # telemetry must never fail the request
        return
    setattr(g, _TOKEN, context.attach(ctx))
    setattr(g, _REQUEST_ID, keys["requestId"])


def _after_request(response: Any) -> Any:
    from flask import g

    request_id = g.get(_REQUEST_ID)
    if request_id is not None:
        response.headers[_web.request_id_header()] = request_id
    return response


def _teardown_request(_exc: BaseException | None) -> None:
    from flask import g

    token = g.pop(_TOKEN, None)
    if token is not None:
        context.detach(token)


def register_hooks(app: Any) -> None:
    """Register the business-key hooks on one Flask app (after OpenTelemetry's own).

    Flask runs ``before_request`` hooks in registration order and teardown hooks in
    reverse, so ours see the server span OpenTelemetry started and detach first.
    """
    if getattr(app, "_otel_correlate", False):
        return
    app._otel_correlate = True
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.teardown_request(_teardown_request)


def patch_flask_class() -> None:
    """Give every Flask app created from now on our request hooks (zero-code path)."""
    flask = _require_flask()
    base = flask.Flask
    if getattr(base, "_otel_correlate_class", False):
        return

    class CorrelatedFlask(base):  # type: ignore[misc, valid-type]
        _otel_correlate_class = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            from otel_correlate import _wsgi_server

            _wsgi_server.install(self)

    CorrelatedFlask.__name__ = "Flask"
    CorrelatedFlask.__qualname__ = "Flask"
    flask.Flask = CorrelatedFlask


def instrument_flask_app(app: Any) -> Any:
    """Instrument one Flask app by hand: tracing, metrics and business keys.

    Example:
        >>> from flask import Flask
        >>> app = instrument_flask_app(Flask("orders"))
    """
    _require_flask()
    if getattr(app, "_otel_correlate_wsgi", False):
        return app
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        register_hooks(app)  # traced by the contrib instrumentor: add only the business keys
        return app
    from otel_correlate import _wsgi_server

    _wsgi_server.install(app)
    return app
