"""What every inbound HTTP request does, whatever the framework.

:func:`enter_request` decides the request's business keys (requestId from a valid
``X-Request-ID`` header, else from inbound baggage, else a fresh one; keys from
route path parameters; allowlisted, valid keys from inbound baggage), puts them
on the server span and returns the context to attach for the request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation import _SPAN_KEY

from otel_correlate import _context, _settings, _telemetry

EXCLUDED_URLS = r"/health(/|\?|$),/metrics(\?|$)"


#: What every URL :data:`EXCLUDED_URLS` matches contains; a URL without these is never searched.
_EXCLUDED_URLS_WORDS = ("/health", "/metrics")


class ExcludedURLs:
    """URLs not traced: one precompiled pattern, searched directly (no ``re`` cache lookup per request).

    With the default patterns, a URL containing neither ``/health`` nor ``/metrics``
    (nearly every request) is answered by two substring tests instead of a search.
    """

    __slots__ = ("_search", "_words")

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self._search = re.compile("|".join(patterns)).search
        default = patterns == EXCLUDED_URLS.split(",")
        self._words = _EXCLUDED_URLS_WORDS if default else None

    def url_disabled(self, url: str) -> bool:
        words = self._words
        if words is not None and words[0] not in url and words[1] not in url:
            return False
        return self._search(url) is not None


def excluded_urls(framework: str) -> ExcludedURLs | None:
    """URLs not traced: ``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS``, else ``OTEL_PYTHON_EXCLUDED_URLS``, else ours.

    Same variables and syntax (comma-separated regular expressions) as the contrib
    instrumentations.

    Example:
        >>> excluded_urls("FLASK").url_disabled("http://127.0.0.1/health/deployment")
        True
    """
    variable = next(
        (
            name
            for name in (f"OTEL_PYTHON_{framework}_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
            if os.environ.get(name)
        ),
        None,
    )
    urls = os.environ[variable] if variable else EXCLUDED_URLS
    patterns = [url.strip() for url in urls.split(",") if url.strip()]
    try:
        return ExcludedURLs(patterns) if patterns else None
    except re.error as exc:
        raise ValueError(
            f"{variable}={urls!r} is not a comma-separated list of regular expressions ({exc}). "
            f"Fix it, or unset it to use the default ({EXCLUDED_URLS})."
        ) from exc


#: Request headers the server span reads besides the propagation headers.
REQUEST_HEADERS = ("user-agent", "host", "content-length")


class _PropagationHeaders:
    """The header names the global propagator reads, recomputed when the propagator changes.

    Both server wrappers collect only these (plus :data:`REQUEST_HEADERS`) and run
    the propagator only when one of them came with the request, so a request
    without trace context costs no extraction, and a B3 or Jaeger propagator
    still finds its headers.
    """

    def __init__(self) -> None:
        self._source: object = None
        self.names: frozenset[str] = frozenset()
        self.raw: frozenset[bytes] = frozenset()
        self.environ: dict[str, str] = {}

    def current(self) -> _PropagationHeaders:
        textmap = propagate.get_global_textmap()
        if textmap is not self._source:
            try:
                names = frozenset(name.lower() for name in textmap.fields)
            except Exception:  # a broken propagator: read the W3C headers at least
                names = frozenset({"traceparent", "tracestate", "baggage"})
            wanted = names | frozenset(REQUEST_HEADERS)
            self.names = names
            self.raw = frozenset(name.encode("latin-1") for name in wanted)
            self.environ = {
                ("CONTENT_LENGTH" if n == "content-length" else "HTTP_" + n.upper().replace("-", "_")): n
                for n in wanted
            }
            self._source = textmap
        return self


PROPAGATION_HEADERS = _PropagationHeaders()


def telemetry_off(framework: str, error: Exception) -> None:
    """Say, when a server wrapper is made, why it serves the app untraced (a setting it cannot use)."""
    _telemetry._log.warning(
        "otel-correlate: %s requests are served without traces, HTTP metrics or business keys: %s",
        framework,
        error,
    )


def server_settings(framework: str, label: str) -> tuple[str, ExcludedURLs | None] | None:
    """The request-id header and the excluded URLs a server wrapper reads once, when it is made.

    ``None``, after one warning naming the variable and what is wrong, when either
    setting cannot be used: the wrapper then serves the app untraced instead of
    failing the app's start or its requests.
    """
    try:
        return request_id_header(), excluded_urls(framework)
    except Exception as exc:
        telemetry_off(label, exc)
        return None


#: The ASGI scope key under which our server middleware leaves the request's state for routing.
SCOPE_STATE = "otel_correlate.request"


def request_id_header() -> str:
    """The header name carrying the requestId (``OTEL_CORRELATE_REQUEST_ID_HEADER``)."""
    return _settings.REQUEST_ID_HEADER.get()


def keys_from_route(path_params: Mapping[str, object] | None) -> dict[str, str]:
    """Business keys taken from route path parameters (``OTEL_CORRELATE_ROUTE_PARAMS``).

    Example:
        >>> keys_from_route({"order_id": "A-7", "other": "x"})
        {'orderId': 'A-7'}
    """
    found: dict[str, str] = {}
    if not path_params:
        return found
    for param, key in _context.CONFIG.route_params:
        if param not in path_params:
            continue
        value = _context.validate_value(path_params[param])
        if value is None:
            _telemetry.count_rejection(key, "invalid_value", source="route")
        else:
            found[key] = value
    return found


def enter_request(
    header_value: str | None,
    path_params: Mapping[str, object] | None = None,
    ctx: Context | None = None,
    span: trace.Span | None = None,
) -> tuple[Context, dict[str, str]]:
    """The context to attach for an inbound request, and the keys it carries.

    Args:
        header_value: The raw ``X-Request-ID`` header, or ``None`` when absent.
        path_params: The matched route's path parameters, when known.
        ctx: The context the server instrumentation extracted; the current one by default.
        span: The request's server span, made current in the returned context;
            by default the span current in ``ctx`` gets the keys.
    """
    ctx = ctx if ctx is not None else _context.current_context()
    keys = request_keys(header_value, ctx)
    keys.update(keys_from_route(path_params))
    (span if span is not None else trace.get_current_span(ctx)).set_attributes(keys)
    return _context.with_keys(keys, ctx, span), keys


def request_keys(header_value: str | None, ctx: Context) -> dict[str, str]:
    """An inbound request's business keys: the allowlisted ones of its baggage, and its requestId.

    The requestId is the valid ``X-Request-ID`` header, else one from the baggage,
    else a new one. Rejected values are counted. The server middlewares call this
    before the request's span starts, so the span has its keys from the start.
    """
    keys, rejected = _context.promote_inbound(ctx)
    for key, reason in rejected:
        _telemetry.count_rejection(key, reason, source="baggage")
    if header_value is not None:
        request_id = _context.validate_value(header_value)
        if request_id is None:
            _telemetry.count_rejection(_context.REQUEST_ID_KEY, "invalid_header", source="header")
        else:
            keys[_context.REQUEST_ID_KEY] = request_id
    if _context.REQUEST_ID_KEY not in keys:
        keys[_context.REQUEST_ID_KEY] = _context.new_request_id()
    return keys


def enter_route(path_params: Mapping[str, object] | None, request: Any = None) -> Context | None:
    """The context to attach once routing found path parameters, or ``None`` when there is none to attach.

    ``request``: our server wrapper's state for the request (``_RequestState``); its span
    gets the keys when it ends, in the attribute update it has then. When the request
    still runs in the context the wrapper made for it, the keys join that context in
    place (:func:`_context.add_keys_in_place`) and there is nothing to attach. Without
    ``request``, the current span (another instrumentation's) gets them now.
    """
    keys = keys_from_route(path_params)
    if not keys:
        return None
    current = _context.current_context()
    if request is not None:
        request.route_keys = keys
        if request.keys_owned and current is request.ctx and _context.add_keys_in_place(current, keys):
            return None
    else:
        span = current.get(_SPAN_KEY)  # trace.get_current_span(current), read in place
        if isinstance(span, trace.Span):
            span.set_attributes(keys)
    return _context.with_keys(keys, current)
