"""The C checks of ``_otlp_native.c`` answer exactly as the Python code they stand in for.

``plain`` is the attribute check the request thread runs on every span, log record
and measurement (``_fastsdk._plain_kinds``); ``settled`` is the walk the export
threads run on every item's attributes before export (``Scrubber.attributes``). The
Python code stays the definition: here both run on the same seeded random input.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest

from otel_correlate import _fastsdk, _native, _sensitive
from otel_correlate._sensitive import Scrubber

native = _native.built

pytestmark = pytest.mark.skipif(
    native is None, reason="the C extension is not built (test_the_native_encoder_is_built_here fails)"
)


class Text(str):
    pass


class Number(int):
    pass


KEYS: list[Any] = [
    "http.request.method",
    "url.path",
    "orderId",
    "requestId",
    "password",
    "authorization",
    "user.email",
    "api_key",
    "",
    Text("subclassed"),
    7,
]

VALUES: list[Any] = [
    "GET",
    "/orders/ORD-1a2b3c4d",
    "mail a@b.io please",
    "card 4111 1111 1111 1111",
    "call +44 20 7946 0958",
    "Bearer abc.def.ghi",
    "token=s3cr3t",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "order 12345678 looked up",
    "",
    "ü" * 3,
    0,
    -1,
    2**70,
    0.5,
    float("nan"),
    True,
    False,
    None,
    ("a@b.io", "x"),
    ["plain"],
    b"bytes",
    Text("sub"),
    Number(3),
    {"nested": "a@b.io"},
]


def _attributes(rng: random.Random, keys: list[Any] = KEYS) -> dict[Any, Any]:
    return {rng.choice(keys): rng.choice(VALUES) for _ in range(rng.randrange(0, 8))}


#: Span and log attribute keys are str (the SDK drops others before export).
STR_KEYS = [key for key in KEYS if isinstance(key, str)]


def test_plain_answers_as_the_python_check() -> None:
    rng = random.Random(7)
    seen: set[int] = set()
    for _ in range(3000):
        attributes = _attributes(rng)
        expected = _fastsdk._plain_kinds(attributes)
        assert native.plain(attributes) == expected, attributes
        assert _fastsdk._plain(attributes) is (expected != 0)
        seen.add(expected)
    assert seen == {0, 1, 2}  # every answer was exercised
    assert native.plain({}) == 1
    assert _fastsdk._NATIVE_PLAIN is native.plain


def test_plain_takes_only_a_dict() -> None:
    with pytest.raises(TypeError, match="a dict is needed"):
        native.plain([("k", "v")])
    with pytest.raises(TypeError, match="a dict is needed"):
        native.plain(_Mapping())


class _Mapping(dict):  # type: ignore[type-arg]
    pass


def _scrub_both(attributes: dict[Any, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    with_c, without_c = Scrubber(), Scrubber()
    first = with_c.attributes(attributes), with_c.attributes(attributes)  # cold caches, then warm
    monkeypatch.setattr(_sensitive, "_SETTLED", None)
    second = without_c.attributes(attributes), without_c.attributes(attributes)
    monkeypatch.setattr(_sensitive, "_SETTLED", native.settled)
    return first, second


def test_scrubbing_gives_the_same_attributes_with_and_without_the_c_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _sensitive._SETTLED is native.settled
    rng = random.Random(11)
    kept = masked = 0
    for _ in range(1500):
        attributes = _attributes(rng, STR_KEYS)
        first, second = _scrub_both(attributes, monkeypatch)
        assert first == second, attributes
        # unchanged attributes come back as the same object, both ways
        assert [result is attributes for result in first] == [result is attributes for result in second]
        if first[0] is attributes:
            kept += 1
        else:
            masked += 1
    assert kept > 300 and masked > 300


def test_the_c_walk_settles_the_common_span_without_python(monkeypatch: pytest.MonkeyPatch) -> None:
    scrubber = Scrubber()
    span = {
        "http.request.method": "GET",
        "url.path": "/orders/ORD-1",
        "server.port": 8000,
        "orderId": "ORD-1",
    }
    assert scrubber.attributes(span) is span  # fills the caches
    calls: list[Any] = []
    assert native.settled(span, scrubber._keys, scrubber._texts, _sensitive._KEEP, calls.append, calls.append)
    assert calls == []
    fresh = dict(span, **{"url.path": "/orders/ORD-2"})
    assert native.settled(
        fresh, scrubber._keys, scrubber._texts, _sensitive._KEEP, scrubber._key_verdict, calls.append
    )
    assert calls == ["/orders/ORD-2"]  # only the text the cache had not seen was scanned


def test_the_c_walk_refuses_attributes_changed_while_it_runs() -> None:
    scrubber = Scrubber()
    attributes = {"a": "x", "b": "y"}

    def verdict(key: str) -> str:
        attributes["added"] = "z"
        return scrubber._key_verdict(key)

    with pytest.raises(RuntimeError, match="changed while they were checked"):
        native.settled(attributes, {}, {}, _sensitive._KEEP, verdict, scrubber._scan)


def test_errors_in_the_callbacks_reach_the_caller() -> None:
    def broken(value: str) -> None:
        raise ValueError("scan failed")

    with pytest.raises(ValueError, match="scan failed"):
        native.settled({"k": "v"}, {"k": ""}, {}, _sensitive._KEEP, str, broken)
    with pytest.raises(TypeError, match="three dicts first"):
        native.settled({"k": "v"}, [], {}, _sensitive._KEEP, str, str)


def test_the_c_walk_keeps_no_references() -> None:
    scrubber = Scrubber()
    key, value, verdict = "custom.key", "some text", ""
    attributes = {key: value, "n": 1}
    keys = {"n": ""}
    watched = [attributes, key, value, verdict, keys]
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(100):
        scrubber._keys.clear()
        scrubber._texts.clear()
        assert native.settled(attributes, keys, {}, _sensitive._KEEP, lambda k: verdict, lambda v: None)
    assert [sys.getrefcount(obj) for obj in watched] == before


def test_the_switch_turns_the_c_checks_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_NATIVE_ENCODER", "false")
    assert _native.helper("plain") is None
    assert _native.helper("settled") is None
    monkeypatch.setenv("OTEL_CORRELATE_NATIVE_ENCODER", "true")
    assert _native.helper("plain") is native.plain
    assert _native.helper("no_such_function") is None  # a stale build without it: Python does the work
