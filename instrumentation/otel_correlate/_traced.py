"""The ``traced`` decorator: a span around a function, sync or async."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

P = ParamSpec("P")
R = TypeVar("R")

_tracer = trace.get_tracer("otel_correlate")


@overload
def traced(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def traced(
    *, name: str | None = None, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def traced(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
) -> Any:
    """Run a function inside its own span; record and re-raise its exceptions.

    The span carries the business keys of the context like every other span. Its
    name defaults to the function's qualified name.

    Example:
        >>> @traced
        ... def reserve_stock(sku: str) -> bool:
        ...     return True
        >>> @traced(name="charge card", attributes={"payment.provider": "stripe"})
        ... async def charge(amount: int) -> None: ...
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        span_name = name or fn.__qualname__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _tracer.start_as_current_span(
                    span_name,
                    kind=kind,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span:
                    try:
                        return await fn(*args, **kwargs)
                    except BaseException as exc:
                        _record(span, exc)
                        raise

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _tracer.start_as_current_span(
                span_name,
                kind=kind,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return fn(*args, **kwargs)
                except BaseException as exc:
                    _record(span, exc)
                    raise

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


def _record(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
