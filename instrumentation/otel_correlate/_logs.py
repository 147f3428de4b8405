"""Logs: loguru and stdlib ``logging`` records as OpenTelemetry log records.

Both bridges write each record exactly once, with the trace and span id of the
current span and the business keys as attributes:

* :func:`instrument_loguru` adds a loguru sink (and, by default, replaces
  loguru's stderr sink with one that prefixes ``[requestId=…] [orderId=…]``);
* :class:`OTelLoggingHandler` on the root logger exports stdlib records.

Records that cross between the two libraries are exported on one side only: a
stdlib record forwarded into loguru by :class:`InterceptHandler` is marked and
skipped by the loguru sink, and a loguru record propagated into ``logging``
(loguru's standard-handler sink, which sets ``record.extra``) is skipped by the
stdlib handler.

Example:
    >>> from loguru import logger
    >>> from otel_correlate import instrument_loguru
    >>> instrument_loguru(console=False)
    >>> logger.info("order {} created", "A-1")
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider
from opentelemetry.sdk._logs import Logger as SDKLogger

from otel_correlate import _context, _fastlogs, _native, _settings

_FROM_STDLIB = "_oc_from_stdlib"
_PREFIX = "_oc_prefix"
_SKIP_LOGGERS = ("opentelemetry", "otel_correlate")

# loguru and stdlib level numbers -> OTel severity (logs data model, "Mapping of SeverityNumber").
_SEVERITY: tuple[tuple[int, SeverityNumber, str], ...] = (
    (50, SeverityNumber.FATAL, "FATAL"),
    (40, SeverityNumber.ERROR, "ERROR"),
    (30, SeverityNumber.WARN, "WARN"),
    (25, SeverityNumber.INFO2, "INFO2"),
    (20, SeverityNumber.INFO, "INFO"),
    (10, SeverityNumber.DEBUG, "DEBUG"),
    (0, SeverityNumber.TRACE, "TRACE"),
)


_SEVERITY_BY_LEVEL: dict[int, tuple[SeverityNumber, str]] = {}


def severity(level_no: int) -> tuple[SeverityNumber, str]:
    """OTel severity number and text for a loguru/stdlib level number.

    Example:
        >>> severity(25)
        (<SeverityNumber.INFO2: 10>, 'INFO2')
    """
    known = _SEVERITY_BY_LEVEL.get(level_no)
    if known is not None:
        return known
    found = SeverityNumber.TRACE, "TRACE"
    for floor, number, text in _SEVERITY:
        if level_no >= floor:
            found = number, text
            break
    if len(_SEVERITY_BY_LEVEL) < 256:  # level numbers an application uses: a handful
        _SEVERITY_BY_LEVEL[level_no] = found
    return found


def _attribute_value(value: object) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | bool | int | float) for v in value):
        return list(value)
    return str(value)


def flatten(extra: Mapping[str, object], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted attribute keys; other values become strings.

    Example:
        >>> flatten({"customer": {"tier": "gold", "id": 7}, "tags": ["a"], "obj": None})
        {'customer.tier': 'gold', 'customer.id': 7, 'tags': ['a'], 'obj': 'None'}
    """
    flat: dict[str, Any] = {}
    for key, value in extra.items():
        if key.startswith("_oc_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = _attribute_value(value)
    return flat


def _exception_attributes(exc_type: Any, exc_value: Any, exc_tb: Any) -> dict[str, str]:
    if exc_type is None:
        return {}
    return {
        "exception.type": getattr(exc_type, "__qualname__", str(exc_type)),
        "exception.message": str(exc_value),
        "exception.stacktrace": "".join(traceback.format_exception(exc_type, exc_value, exc_tb)),
    }


class _Emitter:
    """Turns one log event into an OTel log record on a cached logger."""

    def __init__(self) -> None:
        self._loggers: dict[str, tuple[Any, bool]] = {}  # scope -> (logger, is an SDK logger)
        self._local = threading.local()

    def emit(
        self,
        *,
        scope: str,
        level_no: int,
        body: str,
        attributes: dict[str, Any],
        timestamp_ns: int,
        plain: bool = False,
    ) -> None:
        if getattr(self._local, "busy", False):  # a log line logged while exporting one
            return
        self._local.busy = True
        try:
            cached = self._loggers.get(scope)
            if cached is None:
                created = get_logger_provider().get_logger(scope)
                # decided once per logger: an isinstance check against an ABC is a Python call
                cached = self._loggers[scope] = (created, isinstance(created, SDKLogger))
            otel_logger, sdk_logger = cached
            current = _context.current_context()
            attributes.update(_context.current_business_keys(current))
            number, text = severity(level_no)
            if sdk_logger:
                native = _fastlogs._NATIVE_EMIT  # the two calls below in C, for their usual case
                if native is not None and native(
                    otel_logger, timestamp_ns, number, text, body, attributes, current, plain
                ):
                    return
                sole = _fastlogs.sole_log_processor(otel_logger)
                if sole is not None and sole.emit_plain(
                    otel_logger,
                    timestamp=timestamp_ns,
                    severity_number=number,
                    severity_text=text,
                    body=body,
                    attributes=attributes,
                    context=current,
                    plain=plain,
                ):
                    return  # queued as the SDK would have queued it, in one step
            record = LogRecord(
                timestamp=timestamp_ns,
                context=None,  # the current context: trace_id and span_id of the current span
                severity_number=number,
                severity_text=text,
                body=body,
                attributes=attributes,
            )
            if sdk_logger:
                # The same SDK record, without re-cleaning plain attribute values.
                otel_logger.emit(_fastlogs.log_record(record, otel_logger))  # type: ignore[call-overload]
            else:
                otel_logger.emit(record)
        finally:
            self._local.busy = False

    def reset(self) -> None:
        self._loggers.clear()


EMITTER = _Emitter()


def _loguru_sink(message: Any) -> None:
    record = message.record
    native = _NATIVE_LOGURU  # this function and _Emitter.emit in C, for a plain record
    if native is not None and _fastlogs._NATIVE_EMIT is not None and native(record, EMITTER):
        return
    extra = record["extra"]
    if extra.get(_FROM_STDLIB):
        return
    attributes = flatten(extra) if extra else {}
    attributes["code.function.name"] = record["function"]
    attributes["code.file.path"] = record["file"].path
    attributes["code.line.number"] = record["line"]
    exception = record["exception"]
    if exception is not None:
        attributes.update(_exception_attributes(exception.type, exception.value, exception.traceback))
    EMITTER.emit(
        scope=record["name"] or "loguru",
        level_no=record["level"].no,
        body=record["message"],
        attributes=attributes,
        timestamp_ns=_loguru_time_ns(record),
        # no extra fields: str names and line number, validated business keys
        plain=not extra and exception is None,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOGURU_START_NS: list[int] = []


def _loguru_time_ns(record: Any) -> int:
    """``record["time"]`` in integer nanoseconds since the epoch, exact to loguru's microsecond.

    loguru's clock start (``time - elapsed``, the same instant for every record) is
    converted once; each record then adds its ``elapsed``: integer arithmetic on a
    timedelta instead of an aware ``datetime.timestamp()`` (a quarter of the time, and
    no float rounding: a float of nanoseconds since 1970 is only exact to 256 ns).
    """
    elapsed: timedelta = record["elapsed"]
    if not _LOGURU_START_NS:
        start = record["time"] - elapsed - _EPOCH
        # set, not appended: two threads' first lines may both get here (the same instant)
        _LOGURU_START_NS[:] = [
            (start.days * 86400 + start.seconds) * 1_000_000_000 + start.microseconds * 1000
        ]
    return (
        _LOGURU_START_NS[0]
        + (elapsed.days * 86400 + elapsed.seconds) * 1_000_000_000
        + elapsed.microseconds * 1000
    )


def _native_loguru() -> Any:
    """The C ``loguru_record`` (:func:`_loguru_sink` and :meth:`_Emitter.emit` for a plain record), or None.

    It reads the same state as the Python functions: the business keys' context key,
    the severities :func:`severity` has worked out, loguru's converted clock start.
    """
    configure = _native.helper("configure_loguru")
    record = _native.helper("loguru_record")
    if configure is None or record is None or _fastlogs._NATIVE_EMIT is None:
        return None
    configure(_context.KEYS_CONTEXT, _SEVERITY_BY_LEVEL, _LOGURU_START_NS)
    return record


_NATIVE_LOGURU: Any = _native_loguru()


class _ConsoleKeys:
    """The keys the console prefix shows: requestId first, then the others as configured."""

    def __init__(self) -> None:
        self._source: tuple[str, ...] = ()
        self._order: tuple[str, ...] = ()

    def order(self) -> tuple[str, ...]:
        keys = _context.CONFIG.keys
        if keys is not self._source:
            first = tuple(k for k in keys if k == _context.REQUEST_ID_KEY)
            self._source, self._order = keys, first + tuple(k for k in keys if k not in first)
        return self._order


_CONSOLE_KEYS = _ConsoleKeys()


#: The console line's loguru format: one string object, so loguru's cache of compiled
#: formats finds it by its stored hash instead of hashing a new string per line.
_CONSOLE_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "{extra[" + _PREFIX + "]}<level>{message}</level>\n{exception}"
)


def _console_format(record: Any) -> str:
    keys = _context.current_business_keys()
    record["extra"][_PREFIX] = "".join([f"[{key}={keys.get(key, '-')}] " for key in _CONSOLE_KEYS.order()])
    return _CONSOLE_FORMAT


class _ConsoleAndExport:
    """One loguru sink that exports a record and prints its console line.

    loguru runs every handler's filter, record copy, format and lock per record; with
    the console on, one handler instead of two saves that work on every log line.
    loguru formats the console line (``_console_format``, colours as it would choose
    them for the stream) and calls :meth:`write` with it; the record is exported
    first, and the line is printed even when exporting raised.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._flush = getattr(stream, "flush", None)

    def write(self, message: Any) -> None:
        # The console prefix is loguru's formatting aid, not one of the record's fields.
        message.record["extra"].pop(_PREFIX, None)
        try:
            _loguru_sink(message)
        finally:
            self._stream.write(message)
            if self._flush is not None:
                self._flush()


def _colorize(stream: Any) -> bool:
    """Whether loguru would colour lines for ``stream`` (it decides only for streams it is given)."""
    try:
        from loguru._colorama import should_colorize
    except ImportError:  # pragma: no cover - a loguru without the helper
        return bool(getattr(stream, "isatty", lambda: False)())
    return bool(should_colorize(stream))


_LOGURU_STATE: dict[str, int | None] = {"otel": None, "console": None}


def instrument_loguru(*, console: bool | None = None, level: str | None = None) -> None:
    """Export loguru records as OpenTelemetry logs, with trace ids and business keys.

    Called automatically under ``opentelemetry-instrument``; call it yourself when
    you configure OpenTelemetry in code. Calling it again changes nothing.

    Args:
        console: Replace loguru's default stderr sink with one that prints
            ``[requestId=…] [orderId=…] message``. Falls back to ``OTEL_CORRELATE_CONSOLE_LOG``.
        level: Lowest level exported and printed. Falls back to ``OTEL_CORRELATE_LOG_LEVEL``.

    Example:
        >>> instrument_loguru(console=False, level="INFO")
    """
    from loguru import logger

    level = level or _settings.LOG_LEVEL.get()
    if console is None:
        console = _settings.CONSOLE_LOG.get()
    if console and _LOGURU_STATE["console"] is None:
        try:
            logger.remove(0)  # loguru's default stderr sink, if the application kept it
        except ValueError:
            pass
        if _LOGURU_STATE["otel"] is None:  # both at once: one handler does both
            handler = logger.add(
                _ConsoleAndExport(sys.stderr),
                level=level,
                format=_console_format,
                colorize=_colorize(sys.stderr),
                catch=True,
            )
            _LOGURU_STATE["otel"] = _LOGURU_STATE["console"] = handler
            return
        _LOGURU_STATE["console"] = logger.add(sys.stderr, level=level, format=_console_format, catch=True)
    if _LOGURU_STATE["otel"] is None:
        _LOGURU_STATE["otel"] = logger.add(_loguru_sink, level=level, format="{message}", catch=True)


def uninstrument_loguru() -> None:
    """Remove the sinks :func:`instrument_loguru` added (tests use this)."""
    from loguru import logger

    for name, handler_id in _LOGURU_STATE.items():
        if handler_id is not None:
            with contextlib.suppress(ValueError):
                logger.remove(handler_id)
            _LOGURU_STATE[name] = None


class OTelLoggingHandler(logging.Handler):
    """A stdlib ``logging`` handler that exports records as OpenTelemetry logs.

    Skips OpenTelemetry's own loggers (so a failing exporter never logs into
    itself) and records that loguru propagated into ``logging`` (the loguru sink
    exported those already).

    Example:
        >>> import logging
        >>> logging.getLogger().addHandler(OTelLoggingHandler())
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name.startswith(_SKIP_LOGGERS) or isinstance(getattr(record, "extra", None), dict):
                return
            attributes: dict[str, Any] = {
                "code.function.name": record.funcName,
                "code.file.path": record.pathname,
                "code.line.number": record.lineno,
            }
            if record.exc_info:
                attributes.update(_exception_attributes(*record.exc_info))
            EMITTER.emit(
                scope=record.name,
                level_no=record.levelno,
                body=record.getMessage(),
                attributes=attributes,
                timestamp_ns=int(record.created * 1e9),
            )
        except Exception:
            self.handleError(record)


class InterceptHandler(logging.Handler):
    """Forward stdlib ``logging`` records into loguru, without exporting them twice.

    Use it instead of loguru's recipe when you route ``logging`` into loguru: the
    records it forwards are marked so the loguru OTel sink skips them (the stdlib
    handler already exported them), and records that came from loguru are not
    sent back into it.

    Example:
        >>> import logging
        >>> logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    """

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(getattr(record, "extra", None), dict):
            return
        from loguru import logger

        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(**{_FROM_STDLIB: True}).opt(exception=record.exc_info).log(level, record.getMessage())


def instrument_logging() -> None:
    """Add :class:`OTelLoggingHandler` to the root logger once.

    Skipped when the root logger already has an OpenTelemetry handler (the SDK's or
    opentelemetry-instrumentation-logging's), so records are never exported twice.
    """
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, OTelLoggingHandler) or type(handler).__name__ == "LoggingHandler":
            return
    root.addHandler(OTelLoggingHandler())
