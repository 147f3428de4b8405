"""The business keys (orderId, requestId) in the OpenTelemetry context.

Validated keys live in two places of the context at once:

* W3C baggage, so every outgoing HTTP call carries them to the next service;
* a private context value holding the already-validated mapping, so the span
  and log processors read it with one dictionary lookup instead of parsing and
  validating baggage for every span.

Inbound baggage is untrusted: :func:`promote_inbound` takes only allowlisted keys
whose values pass :func:`validate_value`, and counts what it rejects.

Example:
    >>> from otel_correlate import business_context, current_business_keys
    >>> with business_context(orderId="A-42"):
    ...     current_business_keys()["orderId"]
    'A-42'
"""

from __future__ import annotations

import functools
import inspect
import random
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context, trace
from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace.propagation import _SPAN_KEY

from otel_correlate import _settings

P = ParamSpec("P")
R = TypeVar("R")

KEYS_CONTEXT = context.create_key("otel_correlate.business_keys")


def _context_variable() -> ContextVar[Context] | None:
    """The variable holding the current context, when the runtime context is the API's default one."""
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and type(variable) is ContextVar:
        return variable
    return None


#: The runtime's context variable (``None`` with another runtime context): the server
#: wrappers attach and detach through it, one C call each instead of two Python calls.
CONTEXT_VARIABLE = _context_variable()

#: ``context.get_current`` in one call: the variable's ``get`` (its default is the empty
#: ``Context``, as ``get_current`` returns), or ``get_current`` itself with another runtime.
current_context: Callable[[], Context] = (
    CONTEXT_VARIABLE.get if CONTEXT_VARIABLE is not None else context.get_current
)

#: ``context.attach`` in one C call (the variable's ``set``), or ``context.attach`` itself.
attach: Callable[[Context], Any] = CONTEXT_VARIABLE.set if CONTEXT_VARIABLE is not None else context.attach


def detach(token: Any) -> None:
    """``context.detach``: the variable's ``reset``; a token it refuses goes to the API, which logs why."""
    if CONTEXT_VARIABLE is not None:
        try:
            CONTEXT_VARIABLE.reset(token)
            return
        except Exception:
            pass
    context.detach(token)


_VALID_VALUE = re.compile(r"[A-Za-z0-9._:\-]+")
REQUEST_ID_KEY = "requestId"


class _Config:
    """Settings read once per process; :func:`reload` re-reads them (tests, forks)."""

    keys: tuple[str, ...]
    allowed: frozenset[str]
    max_length: int
    route_params: tuple[tuple[str, str], ...]

    def __init__(self) -> None:
        self.load()

    def load(self) -> None:
        self.keys = _settings.CORRELATION_KEYS.get()
        self.allowed = frozenset(self.keys)
        self.max_length = _settings.MAX_VALUE_LENGTH.get()
        self.route_params = tuple(
            (param, key) for param, key in _settings.ROUTE_PARAMS.get() if key in self.allowed
        )


CONFIG = _Config()


def reload() -> None:
    """Re-read the ``OTEL_CORRELATE_*`` settings this module caches."""
    CONFIG.load()


def validate_value(value: object) -> str | None:
    """The value as a string when it is a valid business-key value, else ``None``.

    Valid: a ``str`` (or ``int``, converted) of 1 to ``OTEL_CORRELATE_MAX_VALUE_LENGTH``
    characters of ``[A-Za-z0-9._:-]``. Anything else (CR/LF, spaces, non-ASCII,
    bytes, ``None``, floats, objects) is rejected.

    Example:
        >>> validate_value("ord-1"), validate_value("a\\r\\nb"), validate_value(7)
        ('ord-1', None, '7')
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= CONFIG.max_length:
        return None
    if _VALID_VALUE.fullmatch(value) is None:
        return None
    return value


def new_request_id() -> str:
    """A fresh requestId: 32 lowercase hex characters (128 random bits).

    Drawn like the SDK's trace ids (``random.getrandbits``): a correlation id,
    not a secret, so it need not cost a system call per request.
    """
    return f"{random.getrandbits(128):032x}"


def current_business_keys(ctx: Context | None = None) -> Mapping[str, str]:
    """The validated business keys of the current (or given) context.

    Example:
        >>> with business_context(orderId="7"):
        ...     dict(current_business_keys())
        {'orderId': '7'}
    """
    if ctx is None:
        ctx = current_context()
    keys: Mapping[str, str] | None = ctx.get(KEYS_CONTEXT)  # type: ignore[assignment]  # get_value's read
    if keys is None:
        return {}
    return keys


def current_request_id() -> str | None:
    """The requestId of the request being handled, or ``None`` outside one.

    Example:
        >>> current_request_id() is None
        True
    """
    return current_business_keys().get(REQUEST_ID_KEY)


def with_keys(
    updates: Mapping[str, str], ctx: Context | None = None, span: trace.Span | None = None
) -> Context:
    """A context whose business keys and baggage are updated with ``updates``.

    ``updates`` must already be validated; callers use :func:`validate_value`.
    With ``span``, that span also becomes the context's current span. The result
    is what ``set_value`` and ``baggage.set_baggage`` (once per key) and
    ``trace.set_span_in_context`` would build, made with one copy of the context.
    """
    base = ctx if ctx is not None else current_context()
    known: Any = base.get(KEYS_CONTEXT)
    merged: dict[str, str] = dict(known) if known else {}
    merged.update(updates)
    known_entries: Any = base.get(_BAGGAGE_KEY)
    entries: dict[str, object] = dict(known_entries) if known_entries else {}
    entries.update(updates)
    values = dict(base)
    values[KEYS_CONTEXT] = merged
    values[_BAGGAGE_KEY] = entries
    if span is not None:
        values[_SPAN_KEY] = span
    return Context(values)


def add_keys_in_place(ctx: Context, updates: Mapping[str, str]) -> bool:
    """Add validated keys to a request's own context, in place; ``False`` when it has no keys of its own.

    Only for the context a server wrapper made with :func:`with_keys` for one request
    (the request's state says so): its two mappings were copied for that request and
    no other request shares them, so the keys found at routing join the context the
    request already runs in, without a second context to attach and detach. They stay
    for the rest of the request (a Flask teardown hook, a middleware after its
    ``call_next``), as the route's path stays the request's. A view of the keys taken
    earlier in the same request (:func:`current_business_keys`, ``baggage.get_all``)
    sees them appear; what was already emitted (spans, log records, injected headers)
    holds copies and does not change.
    """
    keys: Any = ctx.get(KEYS_CONTEXT)
    entries: Any = ctx.get(_BAGGAGE_KEY)
    if type(keys) is not dict or type(entries) is not dict:
        return False
    keys.update(updates)
    entries.update(updates)
    return True


def promote_inbound(ctx: Context | None = None) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Allowlisted, valid business keys found in the (inbound) baggage of ``ctx``.

    Returns:
        The promoted keys, and ``(key, reason)`` for every allowlisted key whose
        value was rejected. Keys outside the allowlist are left alone: they keep
        travelling in baggage but never become attributes.
    """
    promoted: dict[str, str] = {}
    rejected: list[tuple[str, str]] = []
    entries = (ctx if ctx is not None else current_context()).get(_BAGGAGE_KEY)  # baggage.get_all(ctx)
    if not entries or not isinstance(entries, dict):
        return promoted, rejected
    for key in CONFIG.keys:
        raw = entries.get(key)
        if raw is None:
            continue
        value = validate_value(raw)
        if value is None:
            rejected.append((key, "invalid_value"))
        else:
            promoted[key] = value
    return promoted, rejected


def _validated(keys: Mapping[str, object]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, raw in keys.items():
        if key not in CONFIG.allowed:
            raise ValueError(
                f"{key!r} is not a business key; the keys are {', '.join(CONFIG.keys)}. "
                f"Add it to OTEL_CORRELATE_KEYS to carry it."
            )
        value = validate_value(raw)
        if value is None:
            from otel_correlate._telemetry import count_rejection

            count_rejection(key, "invalid_value", source="code")
            continue
        clean[key] = value
    return clean


class business_context:
    """Put business keys into the context: a context manager and a decorator.

    Every span started and every log record emitted inside carries the keys as
    attributes, and outgoing HTTP calls carry them in W3C baggage to the next
    service. An invalid value (too long, bad characters, not a string or int) is
    not set, is counted in ``otel_correlate.context.rejected`` and never raises;
    an unknown key raises ``ValueError`` because it is a programming error.

    Example:
        >>> with business_context(orderId="A-1"):
        ...     current_business_keys()["orderId"]
        'A-1'

        >>> @business_context(orderId="A-2")
        ... def handle() -> str:
        ...     return current_business_keys()["orderId"]
        >>> handle()
        'A-2'
    """

    def __init__(self, **keys: object) -> None:
        self._keys = _validated(keys)
        self._tokens: list[object] = []

    def __enter__(self) -> Mapping[str, str]:
        # The span already running (e.g. the server span) learns the keys too.
        trace.get_current_span().set_attributes(self._keys)
        self._tokens.append(context.attach(with_keys(self._keys)))
        return current_business_keys()

    def __exit__(self, *exc: object) -> None:
        context.detach(self._tokens.pop())  # type: ignore[arg-type]

    async def __aenter__(self) -> Mapping[str, str]:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        keys = self._keys
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                trace.get_current_span().set_attributes(keys)
                token = context.attach(with_keys(keys))
                try:
                    return await func(*args, **kwargs)
                finally:
                    context.detach(token)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            trace.get_current_span().set_attributes(keys)
            token = context.attach(with_keys(keys))
            try:
                return func(*args, **kwargs)
            finally:
                context.detach(token)

        return wrapper


@contextmanager
def attached(ctx: Context) -> Iterator[None]:
    """Attach ``ctx`` for the duration of the block."""
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)
