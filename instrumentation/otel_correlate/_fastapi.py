"""FastAPI (Starlette) integration: the server span, requestId and route-parameter keys.

Under ``opentelemetry-instrument`` the distro calls :func:`patch_fastapi_class`
instead of loading the contrib FastAPI instrumentor: every app created afterwards
gets :class:`~otel_correlate._asgi_server.ServerTelemetryMiddleware`, one lean
layer that does the contrib middleware's job (server span, HTTP server metrics)
and ours (business keys, ``X-Request-ID``), and FastAPI's own native telemetry
is switched off for it so requests are not traced twice. For apps configured by
hand, :func:`instrument_fastapi_app` does the same for one app.
:class:`RequestContextMiddleware` remains for apps the contrib instrumentor
already traces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from otel_correlate import _context, _web
from otel_correlate._optional import require_extra

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _require_fastapi() -> Any:
    return require_extra("fastapi", extra="fastapi", feature="otel-correlate's FastAPI integration")


class RequestContextMiddleware:
    """Pure ASGI middleware: business keys in the context, ``X-Request-ID`` on the response.

    Runs inside OpenTelemetry's ASGI middleware, so the server span is current
    and the inbound ``traceparent``/``baggage`` are already extracted.

    Example:
        >>> from fastapi import FastAPI
        >>> app = FastAPI()
        >>> app.add_middleware(RequestContextMiddleware)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._header_name: bytes | None = None
        try:
            self._header_name = _web.request_id_header().lower().encode("latin-1")
        except Exception as exc:  # a bad setting must not stop the app: it runs without keys, and says why
            _web.telemetry_off("FastAPI", exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._header_name is None:
            await self.app(scope, receive, send)
            return
        raw: str | None = None
        for name, value in scope.get("headers", ()):
            if name == self._header_name:
                raw = value.decode("latin-1")
                break
        try:
            ctx, keys = _web.enter_request(raw)
        except Exception:  # telemetry must never fail the request
            await self.app(scope, receive, send)
            return
        header_name = self._header_name
        echoed = (header_name, keys["requestId"].encode("latin-1"))

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != header_name]
                headers.append(echoed)
                message = {**message, "headers": headers}
            await send(message)

        token = _context.attach(ctx)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            _context.detach(token)


_ROUTE_PATCHED: dict[str, Any] = {}


def _with_route_keys(original: Any, skip: type | None = None) -> Any:
    """A route's ``handle`` that runs ``original`` with the route-parameter keys in the context.

    ``skip``: a route class whose own ``handle`` is wrapped too (its keys are in already).
    """

    async def handle(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if skip is not None and isinstance(self, skip):
            await original(self, scope, receive, send)
            return
        ctx = None
        try:
            ctx = _web.enter_route(scope.get("path_params"), scope.get(_web.SCOPE_STATE))
        except Exception:  # telemetry must never fail the request
            ctx = None
        if ctx is None:
            await original(self, scope, receive, send)
            return
        token = _context.attach(ctx)
        try:
            await original(self, scope, receive, send)
        finally:
            _context.detach(token)

    return handle


def patch_route_params() -> None:
    """Make Starlette and FastAPI routes put configured path parameters (``order_id``) into the context.

    Path parameters are known only once the router matched. When the request runs
    in the context our server middleware made for it, the keys are added to that
    context and stay for the rest of the request; otherwise (another middleware
    attached its own context) a context with them is attached around the matched
    route's handler. Either way every span and log line of the endpoint, and every
    downstream call, carries them. FastAPI's ``APIRoute`` has a
    ``handle`` of its own, which routes of an included ``APIRouter`` run without
    reaching Starlette's, so both are wrapped.
    """
    if _ROUTE_PATCHED:
        return
    from starlette import routing

    api_route: Any = None
    try:
        from fastapi.routing import APIRoute
    except ImportError:  # Starlette without FastAPI
        pass
    else:
        if "handle" in vars(APIRoute):
            api_route = APIRoute
    original = routing.Route.handle
    routing.Route.handle = _with_route_keys(original, skip=api_route)  # type: ignore[method-assign]
    _ROUTE_PATCHED["original"] = original
    if api_route is not None:
        _ROUTE_PATCHED["api_original"] = api_route.handle
        api_route.handle = _with_route_keys(api_route.handle)


def _disable_native_telemetry(app: Any) -> None:
    """Switch off FastAPI's built-in telemetry (FastAPI >= 0.16x) for an app we trace ourselves."""
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict):
        config.update(tracing=False, metrics=False, logs=False)


def _add_server_telemetry(app: Any) -> None:
    from otel_correlate._asgi_server import ServerTelemetryMiddleware

    if any(m.cls in (ServerTelemetryMiddleware, RequestContextMiddleware) for m in app.user_middleware):
        return
    _disable_native_telemetry(app)
    app.add_middleware(ServerTelemetryMiddleware)
    app._is_instrumented_by_opentelemetry = True


def patch_fastapi_class() -> None:
    """Give every FastAPI app created from now on our server middleware (zero-code path)."""
    fastapi = _require_fastapi()
    base = fastapi.FastAPI
    if getattr(base, "_otel_correlate", False):
        return

    class CorrelatedFastAPI(base):  # type: ignore[misc, valid-type]
        _otel_correlate = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _add_server_telemetry(self)

    CorrelatedFastAPI.__name__ = "FastAPI"
    CorrelatedFastAPI.__qualname__ = "FastAPI"
    fastapi.FastAPI = CorrelatedFastAPI
    patch_route_params()


def instrument_fastapi_app(app: Any) -> Any:
    """Instrument one FastAPI app by hand: tracing, metrics and business keys.

    The fallback for an app class imported before auto-instrumentation ran, or
    for services that configure OpenTelemetry in code.

    Example:
        >>> from fastapi import FastAPI
        >>> app = instrument_fastapi_app(FastAPI())
    """
    _require_fastapi()
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        # Traced by the contrib instrumentor already: add only the business keys.
        if not any(m.cls is RequestContextMiddleware for m in app.user_middleware):
            from otel_correlate._asgi_server import ServerTelemetryMiddleware

            if not any(m.cls is ServerTelemetryMiddleware for m in app.user_middleware):
                app.add_middleware(RequestContextMiddleware)
    else:
        _add_server_telemetry(app)
    patch_route_params()
    return app
