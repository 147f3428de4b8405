"""What each part of otel-correlate costs one request: each part switched off and on in turns, in one process.

The server benchmark (``run.py``) says how much otel-correlate costs a request in
all; the profiles (``serverprofile.py``) say where samples land, which is not the
same thing: a part's cost also shows up in the code that runs after it (a span makes
the log record carry trace ids, and the metrics offer it as an exemplar). Here the
reference app runs in one process under ``opentelemetry-instrument``, as
``inprocess.py`` runs it, and one part at a time is turned off for a block of
requests and back on for the next, in alternating order; a part's cost is the
median difference of process CPU per request between the pairs of blocks (the
export threads' work included, as it happens). ``none`` switches nothing and shows
the noise floor of the run. With ``--cold MB`` the caches are evicted before each
request, as idle time does at low load, and each part also gets the share of its
cost the client waits for: the request thread's CPU until the response is sent (the
server wrappers end the span and record the duration after that)::

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
        .venv/bin/opentelemetry-instrument .venv/bin/python benchmarks/ablation.py --framework flask

The parts (see :func:`_switches`) are switched through private attributes of the
running pipeline, so this tool follows the package's internals: a part it cannot
find is an error, never a silent zero. It prints one JSON object on stdout and,
with ``--markdown``, a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import inprocess  # the same reference apps and request loops

Switch = tuple[Callable[[], None], Callable[[], None]]  # (off, on)


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def _replace(owner: Any, name: str, replacement: Any) -> Switch:
    """Off: ``owner.name`` is ``replacement``; on: what it was (an instance attribute stays one)."""
    if not hasattr(owner, name):
        raise SystemExit(
            f"ablation: {owner!r} has no {name!r}; the package changed, update benchmarks/ablation.py"
        )
    original = getattr(owner, name)
    return (lambda: setattr(owner, name, replacement)), (lambda: setattr(owner, name, original))


def _together(*switches: Switch) -> Switch:
    def off() -> None:
        for switch_off, _on in switches:
            switch_off()

    def on() -> None:
        for _off, switch_on in reversed(switches):
            switch_on()

    return off, on


def _server_wrapper(framework: str, app: Any) -> Any:
    """The app's otel-correlate server wrapper, its instruments loaded (the warm-up ran)."""
    if framework == "flask":
        found = app.wsgi_app if hasattr(app.wsgi_app, "_instruments") else None
    else:
        layer, found = app.middleware_stack, None
        while layer is not None and found is None:
            found = layer if hasattr(layer, "_instruments") else None
            layer = getattr(layer, "app", None)
    if found is None or found._instruments.tracer is None:
        raise SystemExit(
            "ablation: the app has no loaded otel-correlate server wrapper; run it under opentelemetry-instrument"
        )
    return found


def _batch_processor(processors: Any) -> Any:
    for processor in processors:
        if hasattr(processor, "_batch_processor"):
            return processor._batch_processor
    raise SystemExit(f"ablation: no batch processor among {processors!r}; is the signal's exporter on?")


def _switches(framework: str, app: Any, business_metric: Any) -> dict[str, tuple[str, Callable[[], Switch]]]:
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs.export import LogExportResult
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
    from opentelemetry.sdk.trace.export import SpanExportResult

    from otel_correlate import _asgi_server, _web
    from otel_correlate import _logs as our_logs

    wrapper = _server_wrapper(framework, app)
    instruments = wrapper._instruments
    tracer_provider: Any = trace.get_tracer_provider()
    spans = tracer_provider._active_span_processor
    logger_provider: Any = _logs.get_logger_provider()
    meter_provider: Any = metrics.get_meter_provider()

    def export(processors: Any, success: Any) -> Switch:
        return _replace(_batch_processor(processors)._exporter, "export", lambda batch: success)

    return {
        "none": ("nothing (the run's noise floor)", lambda: (_noop, _noop)),
        "server wrapper": (
            "the whole server wrapper: span, keys, route keys, HTTP metrics (the request passes through untraced)",
            # FastAPI's route keys come from its patched route handler, outside the middleware
            lambda: _together(_replace(wrapper, "_traced", False), _replace(_web, "enter_route", _noop)),
        ),
        "server span": (
            "the request's SERVER span, with all that follows from it (exemplars, trace ids on log records)",
            lambda: _replace(instruments, "tracer", trace.NoOpTracer()),
        ),
        "span processors": (
            "business keys on start, queueing and export at the end",
            lambda: _replace(spans, "_span_processors", ()),
        ),
        "span export": (
            "the span exporter's work on the export thread (scrubbing, encoding, HTTP)",
            lambda: export(spans._span_processors, SpanExportResult.SUCCESS),
        ),
        "log records": (
            "loguru records to OpenTelemetry (the console line stays)",
            lambda: _replace(our_logs, "_loguru_sink", _noop) if _console_exports() else _no_console(),
        ),
        "log export": (
            "the log exporter's work on the export thread (scrubbing, encoding, HTTP)",
            lambda: export(
                logger_provider._multi_log_record_processor._log_record_processors, LogExportResult.SUCCESS
            ),
        ),
        "request duration": (
            "the http.server.request.duration measurement",
            lambda: _replace(instruments.duration, "record", _noop),
        ),
        "exemplars": (
            "exemplars on the two measurements (trace_based filter)",
            lambda: _replace(meter_provider._sdk_config, "exemplar_filter", AlwaysOffExemplarFilter()),
        ),
        "business metric": (
            "the app's own counter (orders.lookups), recorded",
            lambda: _replace(business_metric, "add", _noop),
        ),
        "request keys": (
            "the requestId and baggage keys at the request's start",
            lambda: _replace(_web, "request_keys", _noop),
        ),
        "native request start": (
            "the request's start as one C call instead of its Python steps (negative: C is cheaper)",
            lambda: _replace(_asgi_server, "_NATIVE_REQUEST", None),
        ),
        "route keys": (
            "the route parameter keys (orderId from /orders/{order_id})",
            lambda: _replace(_web, "enter_route", _noop),
        ),
    }


def _console_exports() -> bool:
    """Whether one loguru handler prints and exports: it looks ``_logs._loguru_sink`` up per record."""
    from otel_correlate import _logs as our_logs

    state = our_logs._LOGURU_STATE
    return state["otel"] is not None and state["otel"] == state["console"]


def _no_console() -> Switch:
    raise SystemExit(
        "ablation: the 'log records' part needs the console line on (OTEL_CORRELATE_CONSOLE_LOG unset or true): "
        "without it loguru holds the export sink itself and switching it off would measure nothing"
    )


def _flush_spans_and_logs() -> None:
    """Export the queued spans and log records now (metrics keep their own interval)."""
    inprocess._flush(metrics_too=False)


#: what switching each part off must change in what one request leaves behind (see :class:`_Effects`)
EXPECTED: dict[str, set[str]] = {
    "none": set(),
    "server wrapper": {"spans", "span keys", "log keys", "recorded"},
    "server span": {"spans", "log trace"},
    "span processors": {"spans"},
    "span export": {"span exports"},
    "log records": {"logs"},
    "log export": {"log exports"},
    "request duration": {"recorded"},
    "exemplars": {"exemplars"},
    "business metric": {"recorded"},
    "request keys": {"span keys", "log keys"},
    # the same request by another path: nothing it leaves behind may differ
    "native request start": set(),
    "route keys": {"span keys", "log keys"},
}


class _Effects:
    """Reads what one request leaves behind in the running pipeline: queued spans and log
    records with their keys, measurements recorded, exports made, the exemplar decision."""

    def __init__(self) -> None:
        from opentelemetry import _logs, metrics, trace

        from otel_correlate import _fastsdk

        spans = trace.get_tracer_provider()._active_span_processor._span_processors  # type: ignore[attr-defined]
        logs = _logs.get_logger_provider()._multi_log_record_processor._log_record_processors  # type: ignore[attr-defined]
        self._span_batch = _batch_processor(spans)
        self._log_batch = _batch_processor(logs)
        self._config = metrics.get_meter_provider()._sdk_config  # type: ignore[attr-defined]
        self.exports = {"span exports": 0, "log exports": 0}
        self.recorded: list[str] = []
        for kind, batch in (("span exports", self._span_batch), ("log exports", self._log_batch)):
            inner = batch._exporter._inner  # behind the exporter the part replaces: counted only when it ran
            inner.export = self._counting(kind, inner.export)
        native = _fastsdk._NATIVE_RECORD
        if native is None:
            raise SystemExit(
                "ablation --check: the C extension's record is not loaded; build it (./run setup)"
            )

        def record(instrument: Any, *args: Any) -> Any:
            self.recorded.append(instrument.name)
            return native(instrument, *args)

        _fastsdk._NATIVE_RECORD = record

    def _counting(self, kind: str, export: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def counted(batch: Any) -> Any:
            self.exports[kind] += 1
            return export(batch)

        return counted

    def __call__(self, loop: Callable[[int], None]) -> dict[str, Any]:
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        _flush_spans_and_logs()
        self.exports.update(dict.fromkeys(self.exports, 0))
        self.recorded.clear()
        loop(1)
        spans, logs = list(self._span_batch._queue), list(self._log_batch._queue)
        _flush_spans_and_logs()
        keys = ("requestId", "orderId")
        sampled = trace.set_span_in_context(NonRecordingSpan(SpanContext(1, 1, False, TraceFlags(1))))
        return {
            "spans": len(spans),
            "logs": len(logs),
            "span keys": sorted(k for s in spans for k in keys if k in (s.attributes or {})),
            "log keys": sorted(k for r in logs for k in keys if k in (r.attributes or {})),
            "log trace": [bool(r.trace_id) for r in logs],
            "recorded": sorted(self.recorded),
            **self.exports,
            "exemplars": bool(self._config.exemplar_filter.should_sample(1.0, 0, {}, sampled)),
        }


def check(
    loop: Callable[[int], None], switches: dict[str, tuple[str, Callable[[], Switch]]]
) -> dict[str, Any]:
    """Per part: what one request leaves behind with the part on, off, and on again.

    A part passes when switching it off changes what :data:`EXPECTED` names (and
    ``none`` changes nothing), and switching it on again brings back all of it.
    """
    effects = _Effects()
    report = {}
    for name, (_what, make) in switches.items():
        off, on = make()
        before = effects(loop)
        off()
        try:
            without = effects(loop)
        finally:
            on()
        after = effects(loop)
        changed = sorted(k for k in before if before[k] != without[k])
        expected = EXPECTED[name]
        report[name] = {
            "changed": changed,
            "ok": (set(changed) >= expected and (expected or not changed)) and after == before,
            "on": before,
            "off": without,
        }
    return report


class Evictor:
    """Pushes the process's code and data out of the CPU caches, as idle time between requests does.

    At low load a request finds its interpreter state, code and objects evicted by
    whatever ran since the last one (other processes, the kernel), and pays a cache
    miss for each line it touches again. Copying a buffer larger than the last-level
    cache between requests reproduces that in one process.
    """

    def __init__(self, megabytes: int) -> None:
        if megabytes < 1:
            raise ValueError(
                f"--cold needs at least 1 MB to copy, got {megabytes}; use more than the L3 cache"
            )
        self._source = bytearray(os.urandom(megabytes << 20))
        self._target = bytearray(len(self._source))

    def __call__(self) -> None:
        self._target[:] = self._source


def measure(
    loop: Callable[..., None],
    switch: Switch,
    pairs: int,
    block: int,
    flush: Callable[[], None] = _noop,
    evict: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Per pair: CPU µs per request with the part on minus with it off; the order alternates.

    ``{"request": [...]}``, one difference per pair. ``flush`` runs inside each block's
    clock: the spans and log records a block queued are exported in that block, not in
    the next one (whose part may be switched off). With ``evict`` see :func:`_measure_cold`.
    """
    if evict is not None:
        return _measure_cold(loop, switch, pairs, block, flush, evict)
    off, on = switch

    def timed() -> float:
        started = time.process_time()
        loop(block)
        flush()
        return (time.process_time() - started) / block * 1e6

    differences = []
    try:
        for pair in range(pairs):
            if pair % 2:
                off()
                without = timed()
                on()
                with_part = timed()
            else:
                with_part = timed()
                off()
                without = timed()
                on()
            differences.append(with_part - without)
    finally:
        on()
    return {"request": differences}


def _measure_cold(
    loop: Callable[..., None],
    switch: Switch,
    pairs: int,
    block: int,
    flush: Callable[[], None],
    evict: Callable[[], None],
) -> dict[str, list[float]]:
    """Per pair: the median cold request with the part on minus the median one with it off.

    The caches are evicted before every request, so no request warms the next, and the
    part is switched request by request within a pair's ``block`` requests (the first
    one's state alternating between pairs): requests with and without the part see the
    same moments of a machine whose memory speed drifts. Only the request's own thread
    CPU is counted (neither the eviction nor the export threads); medians, because a
    request interrupted by a tick is not the part's.

    Two differences per pair: ``request``, the whole request, and ``client``, up to the
    moment the loop says the response is sent (``loop(1, sent)`` calls ``sent()``
    then). What a request does after that (the span's end and the duration, which the
    server wrappers run once the response is out) costs the server's CPU but not the
    client's wait; a loop that never says so is an error, not a zero.
    """
    off, on = switch
    differences: dict[str, list[float]] = {"request": [], "client": []}
    marks: list[int] = []

    def sent() -> None:
        marks.append(time.thread_time_ns())

    try:
        for pair in range(pairs):
            spent: dict[bool, list[int]] = {True: [], False: []}
            waited: dict[bool, list[int]] = {True: [], False: []}
            for request in range(block):
                part_on = (request + pair) % 2 == 0
                (on if part_on else off)()
                evict()
                marks.clear()
                started = time.thread_time_ns()
                loop(1, sent)
                ended = time.thread_time_ns()
                if len(marks) != 1:
                    raise RuntimeError(
                        f"ablation: the request loop said {len(marks)} times that it sent a response"
                    )
                spent[part_on].append(ended - started)
                waited[part_on].append(marks[0] - started)
            on()
            flush()
            for name, times in (("request", spent), ("client", waited)):
                differences[name].append(
                    (statistics.median(times[True]) - statistics.median(times[False])) / 1000
                )
    finally:
        on()
    return differences


def summary(differences: list[float]) -> dict[str, float]:
    ordered = sorted(differences)
    quarter = len(ordered) // 4
    return {
        "us_per_request": round(statistics.median(ordered), 2),
        "q1": round(ordered[quarter], 2),
        "q3": round(ordered[-quarter - 1], 2),
    }


def markdown(result: dict[str, Any]) -> str:
    cold = bool(result.get("cold_mb"))
    measured = (
        f"µs of the request thread's CPU, caches evicted ({result['cold_mb']} MB) before each request"
        if cold
        else "µs of CPU per request"
    )
    header = (
        f"| {result['framework']}: part switched off | what it covers | {measured} (median) | middle half |"
    )
    rule = "| --- | --- | ---: | --- |"
    if cold:
        header += " of which before the response is sent (median) | middle half |"
        rule += " ---: | --- |"
    lines = [header, rule]
    for name, part in result["parts"].items():
        row = f"| {name} | {part['what']} | {_cells(part)} |"
        if cold:
            row += f" {_cells(part['client'])} |"
        lines.append(row)
    return "\n".join(lines)


def _cells(measured: dict[str, float]) -> str:
    return f"{measured['us_per_request']:+.1f} | {measured['q1']:+.1f} .. {measured['q3']:+.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("fastapi", "flask"), default="flask")
    parser.add_argument("--parts", default="all", help="comma-separated part names, or all")
    parser.add_argument("--pairs", type=int, default=40, help="on/off pairs of blocks per part")
    parser.add_argument("--block", type=int, default=1000, help="requests per block")
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU every thread runs on (-1: unpinned)")
    parser.add_argument("--markdown", action="store_true", help="also print a table on stderr")
    parser.add_argument(
        "--cold",
        type=int,
        default=0,
        metavar="MB",
        help="evict the caches before each request by copying MB megabytes (more than the L3 cache), "
        "as at low load; counts the request thread's CPU only, in all and until the response is sent",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that each part switches off what it names, and back on",
    )
    args = parser.parse_args(argv)
    if "opentelemetry.sdk.trace" not in sys.modules:
        parser.error(
            "run it under opentelemetry-instrument: there is nothing to switch off in a plain process"
        )
    if args.cpu >= 0:
        inprocess._pin(args.cpu)
    loop = inprocess._asgi_loop if args.framework == "fastapi" else inprocess._wsgi_loop
    try:
        evict = Evictor(args.cold) if args.cold else None
    except ValueError as exc:
        parser.error(str(exc))
    if evict is not None and (args.block < 2 or args.check):
        parser.error("--cold needs --block of 2 or more (requests with and without the part), and no --check")
    loop(args.warmup)
    if args.framework == "fastapi":
        import fastapi_app as module
    else:
        import flask_app as module  # type: ignore[no-redef]
    switches = _switches(args.framework, module.app, module._lookups)
    names = list(switches) if args.parts == "all" else [n.strip() for n in args.parts.split(",")]
    unknown = [n for n in names if n not in switches]
    if unknown:
        parser.error(f"unknown parts {unknown}; the parts are: {', '.join(switches)}")
    if args.check:
        report = check(loop, {name: switches[name] for name in names})
        print(json.dumps({"framework": args.framework, "check": report}))
        failed = [name for name, part in report.items() if not part["ok"]]
        if failed:
            print(
                f"ablation --check: these parts do not switch what they name: {', '.join(failed)}",
                file=sys.stderr,
            )
        return 1 if failed else 0
    parts = {}
    for name in names:
        what, make = switches[name]
        differences = measure(loop, make(), args.pairs, args.block, _flush_spans_and_logs, evict)
        parts[name] = {"what": what, **summary(differences["request"])}
        if "client" in differences:
            parts[name]["client"] = summary(differences["client"])
    result = {
        "framework": args.framework,
        "pairs": args.pairs,
        "block": args.block,
        "cold_mb": args.cold,
        "parts": parts,
    }
    print(json.dumps(result))
    if args.markdown:
        print(markdown(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
