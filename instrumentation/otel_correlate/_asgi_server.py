"""A lean ASGI server middleware: the server span, the HTTP server metrics and the business keys.

It replaces the contrib ``OpenTelemetryMiddleware`` plus our former request-context
middleware with one pure-ASGI layer that does only what a request needs: extract the
inbound context, start one SERVER span, decide the business keys, echo
``X-Request-ID``, and at the end record ``http.server.request.duration`` (with the
span current, so exemplars link to the trace) and ``http.server.active_requests``.
The span name, attributes and metrics follow the stable HTTP semantic conventions
the contrib instrumentation emits with ``OTEL_SEMCONV_STABILITY_OPT_IN=http``.

The route (``http.route``) comes from the route Starlette/FastAPI matched
(``scope["route"]``), not from matching every route a second time.

Example:
    >>> from starlette.applications import Starlette
    >>> app = ServerTelemetryMiddleware(Starlette())
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, StatusCode

from otel_correlate import _context, _fastsdk, _native, _settings, _web
from otel_correlate._fastapi import RequestContextMiddleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_NAME = "otel_correlate.asgi"
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)
#: The stable HTTP semconv's advisory buckets for http.server.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class _HeaderListGetter(Getter[dict[str, str]]):
    """Reads propagation headers from a ``{lower-case name: value}`` dict."""

    def get(self, carrier: dict[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: dict[str, str]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderListGetter()


class _ActiveRequests:
    """In-flight requests per (method, scheme), observed at collection time.

    ``http.server.active_requests`` as an observable up-down counter: the exported
    series is the same cumulative, non-monotonic sum as two synchronous measurements
    per request through the SDK's aggregation (about 20 µs per request measured).
    Like the synchronous instrument, it reports only series that saw requests since
    the last collection or still have requests in flight.

    A request only advances two ``itertools.count`` objects of its series: ``next()``
    on one is a single C call, atomic under the GIL, so request threads take no lock
    (0.07 µs a request against 0.7 µs for two locked dict updates). The collection
    reads a counter by advancing it too, and subtracts its own earlier reads.

    The two reads are not one instant: a request that starts and ends between them
    would count as in flight. So the collection reads ended, started, then ended
    again, and keeps the pair only when nothing ended in between; after a few
    unlucky tries it reports the lower bound, never a count above the truth.
    """

    _TRIES = 4

    def __init__(self) -> None:
        # (method, scheme) -> (started, ended); created under the lock, then only read
        self._series: dict[tuple[str, str], tuple[itertools.count[int], itertools.count[int]]] = {}
        # (method, scheme) -> [own reads of started, own reads of ended, started and ended at the last collection]
        self._seen: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()
        self._providers: set[int] = set()

    def started(self, key: tuple[str, str]) -> None:
        series = self._series.get(key)
        if series is None:
            with self._lock:
                series = self._series.setdefault(key, (itertools.count(), itertools.count()))
        next(series[0])

    def ended(self, key: tuple[str, str]) -> None:
        next(self._series[key][1])

    def _read(self, key: tuple[str, str]) -> tuple[int, int]:
        """Started and ended for one series, as of one moment (see the class note)."""
        started, ended = self._series[key]
        seen = self._seen.setdefault(key, [0, 0, 0, 0])
        done = next(ended) - seen[1]
        seen[1] += 1
        for _ in range(self._TRIES):
            begun = next(started) - seen[0]
            seen[0] += 1
            done_after = next(ended) - seen[1]
            seen[1] += 1
            if done_after == done:
                return begun, done
            done = done_after
        return begun, done  # ends counted up to after the start read: in flight is a lower bound

    def observe(self, _options: CallbackOptions) -> list[Observation]:
        observations = []
        with self._lock:
            for key in list(self._series):
                begun, done = self._read(key)
                in_flight = max(begun - done, 0)
                seen = self._seen[key]
                if in_flight or begun != seen[2] or done != seen[3]:
                    method, scheme = key
                    observations.append(
                        Observation(in_flight, {"http.request.method": method, "url.scheme": scheme})
                    )
                seen[2], seen[3] = begun, done
        return observations

    def register(self, meter: metrics.Meter) -> None:
        """Create the instrument once per meter provider."""
        provider = id(metrics.get_meter_provider())
        with self._lock:
            if provider in self._providers:
                return
            self._providers.add(provider)
        meter.create_observable_up_down_counter(
            "http.server.active_requests",
            callbacks=[self.observe],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )


ACTIVE_REQUESTS = _ActiveRequests()


class _Instruments:
    """The tracer and instruments, created on first use from the then-current global providers."""

    def __init__(self) -> None:
        self.tracer: trace.Tracer | None = None

    def load(self) -> None:
        from otel_correlate._distro import _version

        version = _version()
        meter = metrics.get_meter(SCOPE_NAME, version)
        self.duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        ACTIVE_REQUESTS.register(meter)
        # Body sizes are opt-in: semconv marks them experimental, no dashboard of ours
        # reads them, and each is one more histogram measurement per request.
        self.body_sizes = _settings.HTTP_BODY_SIZE_METRICS.get()
        if self.body_sizes:
            self.request_size = meter.create_histogram(
                "http.server.request.body.size", unit="By", description="Size of HTTP server request bodies."
            )
            self.response_size = meter.create_histogram(
                "http.server.response.body.size",
                unit="By",
                description="Size of HTTP server response bodies.",
            )
        self.tracer = trace.get_tracer(SCOPE_NAME, version)


class ServerTelemetryMiddleware:
    """Pure ASGI middleware: one SERVER span and the HTTP server metrics per request, with business keys.

    URLs matching ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (``/health``, ``/metrics`` by
    default) pass through untouched.

    Example:
        >>> from fastapi import FastAPI
        >>> app = FastAPI()
        >>> app.add_middleware(ServerTelemetryMiddleware)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._instruments = _Instruments()
        settings = _web.server_settings("FASTAPI", "FastAPI")
        self._traced = settings is not None  # a setting it cannot use: the app runs untraced
        if settings is not None:
            header, self._excluded = settings
            self._header = header.lower().encode("latin-1")
            self._keys_only = RequestContextMiddleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._traced:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        query: bytes = scope.get("query_string", b"")
        excluded = self._excluded
        if excluded is not None and excluded.url_disabled(
            f"{path}?{query.decode('latin-1')}" if query else path
        ):
            # An excluded URL: no span and no metrics, but the requestId and its header still apply.
            await self._keys_only(scope, receive, send)
            return
        try:
            state = self._start(scope)
        except Exception:  # telemetry must never fail the request
            await self.app(scope, receive, send)
            return
        # for the route wrapper (_fastapi.patch_route_params); a mounted app traced by us sets its own
        outer = scope.get(_web.SCOPE_STATE)
        scope[_web.SCOPE_STATE] = state
        token = _context.attach(state.ctx)
        try:
            await self.app(scope, receive, state.send_wrapper(send))
        except BaseException as exc:
            state.error = exc
            raise
        finally:
            try:
                state.finish(getattr(scope.get("route"), "path", None))
            except Exception:  # telemetry must never fail the request
                pass
            finally:
                _context.detach(token)
                # a scope kept after the request (request.scope in a cache) keeps no span nor error
                if outer is None:
                    scope.pop(_web.SCOPE_STATE, None)
                else:
                    scope[_web.SCOPE_STATE] = outer

    def _start(self, scope: Scope) -> _RequestState:
        headers: dict[str, str] = {}
        request_id: str | None = None
        wanted = self._header
        # Only the headers telemetry reads are decoded; the rest of the request is never touched.
        read = _web.PROPAGATION_HEADERS.current().raw
        for name, value in scope.get("headers", ()):
            if name == wanted:
                request_id = value.decode("latin-1")
            elif name in read:
                headers[name.decode("latin-1")] = value.decode("latin-1")
        client = scope.get("client")
        server = scope.get("server")
        return _RequestState(  # positional: a keyword call of eleven costs more than the checks it saves
            self._instruments,
            wanted,
            scope.get("method", ""),
            scope.get("scheme", "http"),
            scope.get("path", ""),
            scope.get("query_string", b"").decode("latin-1"),
            scope.get("http_version"),
            headers,
            request_id,
            (client[0], client[1]) if client else None,
            (server[0], server[1]) if server else None,
        )


def request_attributes(
    raw_method: str,
    scheme: str,
    path: str,
    query: str,
    version: str | None,
    headers: dict[str, str],
    client: tuple[str, int | None] | None,
    server: tuple[str, int] | None,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The method as the metrics name it, the metric attributes, and the server span's start attributes.

    ``headers`` holds the request's headers by lower-case name (``host`` and
    ``user-agent`` are read). The C ``request_attributes`` does the same for the usual
    input; this function is its definition.
    """
    method = raw_method if raw_method in _KNOWN_METHODS else "_OTHER"
    attributes: dict[str, Any] = {"http.request.method": method, "url.scheme": scheme}
    if version:
        attributes["network.protocol.version"] = version
    span_attributes = dict(attributes)
    span_attributes["url.path"] = path
    if query:
        span_attributes["url.query"] = query
    if method != raw_method:
        span_attributes["http.request.method_original"] = raw_method
    host = headers.get("host")
    if host:
        address, _, port = host.rpartition(":")
        if not port.isdigit():
            address, port = host, ""
        span_attributes["server.address"] = address
        if port:
            span_attributes["server.port"] = int(port)
    elif server:
        span_attributes["server.address"], span_attributes["server.port"] = server
    if client:
        span_attributes["client.address"] = client[0]
        if client[1] is not None:
            span_attributes["client.port"] = client[1]
    agent = headers.get("user-agent")
    if agent:
        span_attributes["user_agent.original"] = agent
    return method, attributes, span_attributes


#: :func:`request_attributes` in C for the usual input, when the extension was built.
_NATIVE_ATTRIBUTES: Any = _native.helper("request_attributes")


class _RequestState:
    """Everything one request's telemetry needs between its start and its end."""

    __slots__ = (
        "active_key",
        "attributes",
        "ctx",
        "error",
        "instruments",
        "keys_owned",
        "method",
        "request_id_header",
        "response_size",
        "route_keys",
        "span",
        "start",
        "status",
    )

    def __init__(
        self,
        instruments: _Instruments,
        header_name: bytes,
        raw_method: str,
        scheme: str,
        path: str,
        query: str,
        version: str | None,
        headers: dict[str, str],
        request_id: str | None,
        client: tuple[str, int | None] | None,
        server: tuple[str, int] | None,
        /,
    ) -> None:
        native = _NATIVE_REQUEST  # the steps below in one C call, for the usual request
        if native is not None and native(
            self,
            instruments,
            header_name,
            raw_method,
            scheme,
            path,
            query,
            version,
            headers,
            request_id,
            client,
            server,
        ):
            return
        self.start = time.perf_counter()
        if instruments.tracer is None:
            instruments.load()
        self.instruments = instruments
        made: tuple[str, dict[str, Any], dict[str, Any]] | None = (
            None
            if _NATIVE_ATTRIBUTES is None
            else _NATIVE_ATTRIBUTES(
                raw_method, scheme, path, query, version, headers, client, server, _KNOWN_METHODS
            )
        )
        if made is None:
            made = request_attributes(raw_method, scheme, path, query, version, headers, client, server)
        method, self.attributes, span_attributes = made
        self.method = method
        self.active_key = (method, scheme)
        parent = (
            context.Context()
            if _web.PROPAGATION_HEADERS.names.isdisjoint(headers)
            else propagate.extract(headers, getter=_GETTER)
        )
        try:
            keys: dict[str, str] | None = _web.request_keys(request_id, parent)
        except Exception:  # keys are best effort; the span and metrics still happen
            keys = None
        if keys:
            span_attributes.update(keys)  # on the span from its start: one attribute update less
        tracer = instruments.tracer
        assert tracer is not None
        name = "HTTP" if method == "_OTHER" else method
        start = _fastsdk._NATIVE_START  # the tracer's start_span in C, without the method's own frame
        span = (
            None
            if start is None
            else start(tracer, name, parent, SpanKind.SERVER, span_attributes, (), None, True, True)
        )
        self.span = (
            span
            if span is not None
            else tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=span_attributes)
        )
        self.request_id_header: tuple[bytes, bytes] | None = None
        ctx = None
        if keys:
            try:
                ctx = _context.with_keys(keys, parent, self.span)
                self.request_id_header = (header_name, keys[_context.REQUEST_ID_KEY].encode("latin-1"))
            except Exception:  # as above
                ctx = None
        #: the context's keys were made for this request alone: routing may add to them in place
        self.keys_owned = ctx is not None
        self.ctx = ctx if ctx is not None else trace.set_span_in_context(self.span, parent)
        self.status: int | None = None
        self.response_size: int | None = None
        self.error: BaseException | None = None
        #: the route-parameter keys, once routing found them: on the span at its end, never on metrics
        self.route_keys: Mapping[str, str] | None = None
        length = headers.get("content-length") if instruments.body_sizes else None
        if length and length.isdigit():
            instruments.request_size.record(int(length), self.attributes, context=self.ctx)
        ACTIVE_REQUESTS.started(self.active_key)

    def send_wrapper(self, send: Send) -> Send:
        echoed = self.request_id_header
        sizes = self.instruments.body_sizes  # off by default: no header scan for content-length

        async def send_with_telemetry(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                headers = message.get("headers") or []
                if sizes:
                    for name, value in headers:
                        if name.lower() == b"content-length":
                            self.response_size = int(value) if value.isdigit() else None
                if echoed is not None:
                    kept = [h for h in headers if h[0].lower() != echoed[0]]
                    kept.append(echoed)
                    message = {**message, "headers": kept}
            await send(message)

        return send_with_telemetry

    def finish(self, route: str | None) -> None:
        attributes = self.attributes
        span = self.span
        ended: dict[str, Any] = {}  # what the span learns now; it has the rest since its start
        name = None
        if route:
            ended["http.route"] = route
            name = f"{'HTTP' if self.method == '_OTHER' else self.method} {route}"
        status = self.status
        error = self.error
        if status is None and error is not None:
            status = 500  # the error middleware outside answers 500
        if status is not None:
            ended["http.response.status_code"] = status
        if error is not None:
            ended["error.type"] = type(error).__qualname__
        elif status is not None and status >= 500:
            ended["error.type"] = str(status)
        attributes.update(ended)
        if error is not None:
            # an exception that cannot describe itself (its __str__ raises): the span still ends
            try:
                span.record_exception(error)
            except Exception:
                pass
        if (status is not None and status >= 500) or error is not None:
            span.set_status(StatusCode.ERROR)
        instruments = self.instruments
        instruments.duration.record(max(time.perf_counter() - self.start, 0.0), attributes, context=self.ctx)
        if self.response_size is not None and instruments.body_sizes:
            instruments.response_size.record(self.response_size, attributes, context=self.ctx)
        ACTIVE_REQUESTS.ended(self.active_key)
        route_keys = self.route_keys
        end_server_span(span, name, {**route_keys, **ended} if route_keys else ended)


def _native_request() -> Any:
    """The C ``start_request`` (:class:`_RequestState`'s steps for the usual request), configured, or ``None``.

    It reads the names the Python steps read from the same modules at each request, and
    hands a step back to its Python function whenever that function is not the one it
    was configured with (declining the whole request when that is one of the two C
    helpers it calls directly, ``_NATIVE_ATTRIBUTES`` and ``_fastsdk._NATIVE_START``); it
    needs the C ``record``'s and ``start_span``'s configuration (the context type, the
    span types), so it is on only when they are.
    """
    configure = _native.helper("configure_requests")
    start = _native.helper("start_request")
    if configure is None or start is None or _fastsdk._NATIVE_START is None or _NATIVE_ATTRIBUTES is None:
        return None
    configure(
        _RequestState,
        globals(),
        vars(_web),
        vars(_context),
        vars(_fastsdk),
        vars(propagate),
        vars(trace),
        _web.request_keys,
        _context.with_keys,
        _context.new_request_id,
        _context.validate_value,
        _context.promote_inbound,
        _NATIVE_ATTRIBUTES,
        _fastsdk._NATIVE_START,
        _ActiveRequests.started,
        SpanKind.SERVER,
        _context.KEYS_CONTEXT,
        _BAGGAGE_KEY,
        _context.REQUEST_ID_KEY,
    )
    return start


_NATIVE_REQUEST: Any = _native_request()


def end_server_span(span: trace.Span, name: str | None, attributes: Mapping[str, Any]) -> None:
    """Rename the span (unless ``name`` is None), add the attributes it learnt at the end, and end it.

    otel-correlate's SDK span does the three in one (``end_as``, under one lock pair);
    any other span gets the three API calls.
    """
    end = _fastsdk._NATIVE_END  # end_as in C, without the method's own frame; it declines any other span
    if end is not None and end(span, name, attributes):
        return
    end_as = getattr(span, "end_as", None)
    if end_as is not None:
        end_as(name, attributes)
        return
    if name is not None:
        span.update_name(name)
    span.set_attributes(attributes)
    span.end()
