"""The C encoder writes exactly the Python encoder's bytes, or hands the item to it.

``_otlp_encode`` defines the output and ``tests/test_otlp_encode.py`` checks it against
the SDK's protobuf encoder (through the C path, which is the one in use). Here the
two paths are compared byte for byte on seeded random spans and log records covering
every shape the C code handles and the ones it must decline.
"""

from __future__ import annotations

import enum
import os
import random
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from otel_correlate import _fastlogs, _otlp_encode

native = _otlp_encode._native
python_items = _otlp_encode._python_items
RESOURCE = Resource.create({"service.name": "orders"})


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def _value(rng: random.Random) -> Any:
    """Attribute values: mostly the plain ones the C code writes, sometimes one it must decline."""
    plain = [
        lambda: "",
        lambda: "GET",
        lambda: "ORD-ü-" + str(rng.randrange(10**6)),
        lambda: "x" * rng.choice([126, 127, 128, 300, 20_000]),  # one- to three-byte lengths
        lambda: rng.choice([True, False]),
        lambda: rng.choice([0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)]),
        lambda: rng.choice([0.0, -0.0, 0.25, 1e300, float("inf"), float("nan")]),
    ]
    declined = [
        lambda: rng.choice([2**63, 2**64 - 1, 2**64 + 5, -(2**63) - 1]),  # outside int64
        lambda: ("a", "b"),
        lambda: (1, 2),
        lambda: b"\x00\xff",
        lambda: Colour.RED,
        lambda: Name("subclass"),
        lambda: {"nested": 1},
    ]
    return rng.choice(declined if rng.random() < 0.04 else plain)()


def _attributes(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.05:
        return None
    keys = ["http.route", "orderId", "requestId", "clé", "k" * 200, ""]
    return {rng.choice(keys) + str(i): _value(rng) for i in range(rng.randrange(0, 14))}


def _context(rng: random.Random, *, remote: bool = False) -> SpanContext:
    state = TraceState([("vendor", "v1")]) if rng.random() < 0.1 else TraceState()
    return SpanContext(
        trace_id=rng.getrandbits(128) | 1,
        span_id=rng.getrandbits(64) | 1,
        is_remote=remote,
        trace_flags=TraceFlags(rng.choice([0, 1, 3])),
        trace_state=state,
    )


def _span(rng: random.Random) -> ReadableSpan:
    parent = rng.choice([None, _context(rng), _context(rng, remote=True)])
    status = rng.choice(
        [
            None,
            Status(StatusCode.UNSET),
            Status(StatusCode.OK),
            Status(StatusCode.ERROR),
            Status(StatusCode.ERROR, "card declined"),
            Status(StatusCode.ERROR, "é" * 200),
        ]
    )
    events: Any = rng.choice([(), (), (), [], [], [Event("retry", {"attempt": 2}, timestamp=5)]])
    links: Any = rng.choice([(), (), (), (), (), [Link(_context(rng), {"why": "batch"})]])
    return ReadableSpan(
        name=rng.choice(["GET /orders/{order_id}", "", "ä" * 130]),
        context=_context(rng),
        parent=parent,
        resource=RESOURCE,
        attributes=_attributes(rng),
        events=events,
        links=links,
        kind=rng.choice(list(SpanKind)),
        status=status,  # type: ignore[arg-type]
        start_time=rng.choice([0, None, 1_700_000_000_000_000_000 + rng.randrange(10**9)]),
        end_time=rng.choice([0, 1_700_000_000_500_000_000]),
    )


def _log(rng: random.Random) -> _fastlogs.QueuedLogRecord:
    return _fastlogs.QueuedLogRecord(
        rng.choice([None, 0, 1_700_000_000_000_000_000]),
        1_700_000_000_000_000_123,
        rng.choice([0, rng.getrandbits(128)]),
        rng.choice([0, rng.getrandbits(64)]),
        rng.choice([None, 0, TraceFlags(1), 1]),
        rng.choice([None, "", "INFO", "ERROR"]),
        rng.choice([None, SeverityNumber.UNSPECIFIED, SeverityNumber.INFO, SeverityNumber.FATAL4]),
        rng.choice(["order looked up", "", "x" * 200, "ü" * 70, {"event": "paid"}, 42, None]),
        _attributes(rng) or {},
        None,
    )


#: Tests that must run, and say so, when the C encoder is missing.
_WITHOUT_NATIVE = {
    "test_the_native_encoder_is_built_here",
    "test_without_a_compiler_the_package_installs_and_encodes_in_python",
}


@pytest.fixture(autouse=True)
def _requires_native(request: pytest.FixtureRequest) -> None:
    if native is None and request.node.name not in _WITHOUT_NATIVE:  # pragma: no cover
        pytest.skip("the C encoder is not built (test_the_native_encoder_is_built_here fails)")


def test_the_native_encoder_is_built_here() -> None:
    # A failed compile must not go unnoticed where the benchmark and CI run: the install
    # falls back to Python silently (the extension is optional for users without a compiler).
    assert _otlp_encode._native is not None
    assert _otlp_encode._ENCODE_SPANS is _otlp_encode._native.spans


@pytest.mark.parametrize(
    ("make", "encode_one", "encode_items"),
    [
        (_span, _otlp_encode._span, lambda: native.spans),
        (_log, _otlp_encode._log_record, lambda: native.logs),
    ],
    ids=["spans", "logs"],
)
def test_random_items_encode_to_the_python_encoders_bytes(
    make: Callable[[random.Random], Any], encode_one: Any, encode_items: Any
) -> None:
    rng = random.Random(20261125)
    declined = []

    def python_fallback(item: Any) -> bytes:
        declined.append(item)
        encoded: bytes = encode_one(item)
        return encoded

    written = 0
    for _ in range(300):
        items = [make(rng) for _ in range(rng.randrange(1, 12))]
        try:
            expected = python_items(items, 0x12, encode_one)
        except Exception as error:  # the same error must come out of the C path
            with pytest.raises(type(error)):
                encode_items()(items, 0x12, python_fallback)
            continue
        before = len(declined)
        assert encode_items()(items, 0x12, python_fallback) == expected
        written += len(items) - (len(declined) - before)
    # Both paths were exercised: most items in C, the unusual ones handed back.
    assert written > 500
    assert len(declined) > 100


def test_the_common_shapes_are_written_in_c_not_handed_back() -> None:
    span = ReadableSpan(
        name="GET /orders/{order_id}",
        context=_context(random.Random(1)),
        parent=_context(random.Random(2), remote=True),
        resource=RESOURCE,
        attributes={"http.route": "/orders/{order_id}", "http.response.status_code": 200, "orderId": "ORD-1"},
        kind=SpanKind.SERVER,
        status=Status(StatusCode.ERROR, "boom"),
        start_time=1,
        end_time=2,
    )
    log = _fastlogs.QueuedLogRecord(
        1, 2, 3, 4, TraceFlags(1), "INFO", SeverityNumber.INFO, "order looked up", {"orderId": "ORD-1"}, None
    )

    def refuse(item: Any) -> bytes:
        raise AssertionError(f"handed back: {item!r}")

    assert native.spans([span], 0x12, refuse) == python_items([span], 0x12, _otlp_encode._span)
    assert native.logs([log], 0x12, refuse) == python_items([log], 0x12, _otlp_encode._log_record)


def test_what_the_python_encoder_rejects_is_rejected_the_same_way() -> None:
    bad_name = ReadableSpan(name="\ud800", context=_context(random.Random(3)), resource=RESOURCE)
    with pytest.raises(UnicodeEncodeError):
        python_items([bad_name], 0x12, _otlp_encode._span)
    with pytest.raises(UnicodeEncodeError):
        native.spans([bad_name], 0x12, _otlp_encode._span)
    with pytest.raises(TypeError, match="must return bytes"):
        native.spans([bad_name], 0x12, lambda item: "not bytes")
    with pytest.raises(TypeError):
        native.spans(None, 0x12, _otlp_encode._span)


def test_encoding_keeps_no_references_to_the_items() -> None:
    rng = random.Random(7)
    spans = [_span(rng) for _ in range(50)]
    logs = [_log(rng) for _ in range(50)]
    watched = [obj for span in spans for obj in (span, span._attributes, span.name)]
    watched += [obj for span in spans for obj in (span._context, span._parent, span._status)]
    watched += [obj for log in logs for obj in (log, log.attributes, log.body)]
    watched += [*StatusCode, *SpanKind, *SeverityNumber]
    # Shared singletons (None, the empty string) are referenced from everywhere, log records included.
    watched = [obj for obj in watched if obj is not None and obj != ""]

    def encode() -> None:
        native.spans(spans, 0x12, _otlp_encode._span)
        native.logs(logs, 0x12, _otlp_encode._log_record)

    encode()  # the Python fallback's caches may keep attribute values; after one pass they hold them already
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(200):
        encode()
    assert [sys.getrefcount(obj) for obj in watched] == before


def test_without_the_c_encoder_the_requests_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    spans = [_span(rng) for _ in range(40)]
    logs = [_log(rng)._replace(logger=_LOGGER) for _ in range(40)]
    with_c = (
        _otlp_encode.encode_spans(spans).SerializeToString(),
        _otlp_encode.encode_logs(logs).SerializeToString(),
    )
    monkeypatch.setattr(_otlp_encode, "_ENCODE_SPANS", python_items)
    monkeypatch.setattr(_otlp_encode, "_ENCODE_LOGS", python_items)
    without = (
        _otlp_encode.encode_spans(spans).SerializeToString(),
        _otlp_encode.encode_logs(logs).SerializeToString(),
    )
    assert with_c == without


class _Logger:
    """What the envelope reads from a queued record's logger."""

    resource = RESOURCE
    instrumentation_scope = None


_LOGGER = _Logger()


def test_a_list_changed_by_the_fallback_is_not_read_after_the_change() -> None:
    rng = random.Random(5)
    with_event = _span(rng)
    with_event._events = [Event("retry", {"attempt": 2}, timestamp=5)]  # handed back to Python
    plain = ReadableSpan(name="plain", context=_context(rng), resource=RESOURCE)
    items = [with_event, plain]
    expected = python_items(list(items), 0x12, _otlp_encode._span)

    def clearing(item: Any) -> bytes:
        items.clear()  # what a misbehaving caller could do while the C loop walks its list
        encoded: bytes = _otlp_encode._span(item)
        return encoded

    assert native.spans(items, 0x12, clearing) == expected


def test_only_one_byte_field_keys_are_taken() -> None:
    with pytest.raises(ValueError, match="one-byte field key"):
        native.spans([], 200, _otlp_encode._span)


def test_a_build_that_refuses_its_configuration_leaves_the_python_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any) -> None:
        raise TypeError("configure: types are needed")

    real = native.configure
    with pytest.raises(TypeError, match="SpanContext and QueuedLogRecord tuples"):
        real(ReadableSpan, object, Status, _fastlogs.QueuedLogRecord, {}, {}, {})
    warned: list[str] = []
    monkeypatch.setattr(_otlp_encode._log, "warning", lambda message, *args: warned.append(message % args))
    monkeypatch.setattr(native, "configure", refuse)
    assert _otlp_encode._configure_native() == (python_items, python_items)
    assert warned == [
        "otel-correlate: the C encoder is not used (configure: types are needed); encoding in Python"
    ]


def test_the_c_encoder_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_NATIVE_ENCODER", "false")
    assert _otlp_encode._configure_native() == (python_items, python_items)
    monkeypatch.setenv("OTEL_CORRELATE_NATIVE_ENCODER", "true")
    assert _otlp_encode._configure_native() == (native.spans, native.logs)


@pytest.mark.e2e
def test_without_a_compiler_the_package_installs_and_encodes_in_python(tmp_path: Path) -> None:
    # pip builds the wheel with a compiler that always fails: the extension is optional.
    # The build backend is the environment's own (a dev dependency), not one fetched from the
    # network for an isolated build: a test that needs PyPI fails whenever PyPI is slow.
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, CC="/bin/false", PIP_NO_INDEX="1")
    wheel_dir = str(tmp_path / "wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            wheel_dir,
            str(root),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = (tmp_path / "wheel").glob("otel_correlate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not [name for name in archive.namelist() if name.endswith(".so")]
        archive.extractall(tmp_path / "site")
    check = (
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from otel_correlate import _otlp_encode\n"
        "assert _otlp_encode._native is None, _otlp_encode._native\n"
        "assert _otlp_encode._ENCODE_SPANS is _otlp_encode._python_items\n"
        "from otel_correlate import _fastlogs, _fastsdk, _sensitive\n"
        "assert _fastsdk._NATIVE_PLAIN is None and _sensitive._SETTLED is None\n"
        "assert _sensitive.Scrubber().attributes({'m': 'a@b.io'}) == {'m': '[REDACTED:email]'}\n"
        "span = TracerProvider().get_tracer('t').start_span('s', attributes={'orderId': 'O-1'})\n"
        "span.end()\n"
        "print(len(_otlp_encode.encode_spans([span]).SerializeToString()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", check],
        env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 50
