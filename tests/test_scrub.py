"""Personal data and secrets masked by the SDK before export: the scrubber, then the real pipeline."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from loguru import logger
from opentelemetry import trace
from opentelemetry._logs import LogRecord
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from otel_correlate import _pipeline, _scrub, _sensitive, _settings, business_context
from otel_correlate._capture import TelemetryCapture
from otel_correlate._sensitive import Scrubber

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"  # the Visa test number: Luhn-valid
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

tracer = trace.get_tracer("tests.scrub")


@pytest.fixture(autouse=True)
def _default_scrubber() -> Iterator[None]:
    """Every test starts from the settings' scrubber and leaves it so."""
    _scrub.reload()
    yield
    _scrub.reload()


# --- the scrubber ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"reach {EMAIL} today", "reach [REDACTED:email] today"),
        ("jo.o+tag@mail.example.co.uk", "[REDACTED:email]"),
        (f"call {PHONE} now", "call [REDACTED:phone] now"),
        ("+1 (555) 123-4567", "[REDACTED:phone]"),
        ("+4915112345678", "[REDACTED:phone]"),
        ("+33 6 12 34 56 78", "[REDACTED:phone]"),
        (
            "(555) 123-4567 or 555-123-4567 or 555.123.4567",
            "[REDACTED:phone] or [REDACTED:phone] or [REDACTED:phone]",
        ),
        (f"card {CARD} charged", "card [REDACTED:card] charged"),
        ("4111-1111-1111-1111", "[REDACTED:card]"),
        ("4111111111111111", "[REDACTED:card]"),
        ("amex 3782 822463 10005", "amex [REDACTED:card]"),
        ("mastercard 2223000048400011", "mastercard [REDACTED:card]"),
        ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer [REDACTED:token]"),
        (f"token {JWT}", "token [REDACTED:token]"),
        ("login?user=jane&password=hunter2&next=/", "login?user=jane&password=[REDACTED:secret]&next=/"),
        ('{"api_key": "k-123", "ok": true}', '{"api_key": "[REDACTED:secret]", "ok": true}'),
        ("DB_PASSWORD: s3cr3t", "DB_PASSWORD: [REDACTED:secret]"),
        (
            "secret_key=abc token:Bearer zyxwvutsrq",
            "secret_key=[REDACTED:secret] token:Bearer [REDACTED:token]",
        ),
    ],
)
def test_each_kind_of_sensitive_value_becomes_a_marker_naming_the_kind(text: str, masked: str) -> None:
    assert Scrubber().text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # 16 digits that fail the Luhn check: an order id
        "order 1234567812345670 shipped",  # Luhn-valid, but no card starts with 1
        "at 1746780000123",  # epoch milliseconds
        "at 1746780000123456 and 1746780000123456789",  # epoch micro- and nanoseconds
        "batch 20260509073525123",  # a compact timestamp: 2026 is not a Mastercard range
        "2026-05-09T07:35:25+00:00",
        "GET http://127.0.0.1:8002/notify from 10.0.0.1:55512",
        "ORD-1a2b3c4d created, amount 42.0, otel 1.45.1",
        "tokens: 512, api: v1",
        "trace 5b8aa5a2d2c872e8321cf37308d69df2",
    ],
)
def test_ids_timestamps_and_ordinary_text_are_not_masked(text: str) -> None:
    assert Scrubber().text(text) is text


def test_sensitive_keys_match_their_last_segment_ignoring_case_and_separators() -> None:
    scrubber = Scrubber(sensitive_keys=(*_sensitive.DEFAULT_SENSITIVE_KEYS, "loyalty*"))
    attributes = {
        "password": "p",
        "user.password": "p",
        "userPassword": "p",
        "http.request.header.authorization": ("Basic dXNlcjpwYXNz",),
        "http.request.header.x-api-key": ("k",),
        "http.response.header.set-cookie": ("a=1", "b=2"),
        "customer_email": "not-even-an-address",
        "e-mail": "x",
        "phoneNumber": 4420794609,  # a number under a sensitive key is masked too
        "cardNumber": "4111",
        "loyalty.LoyaltyId": "L-77",
        "email_verified": True,  # booleans never reveal anything
        "card_type": "visa",
        "span": "not a pan",
        "token_count": 7,
    }
    assert scrubber.attributes(attributes) == {
        "password": "[REDACTED:password]",
        "user.password": "[REDACTED:password]",
        "userPassword": "[REDACTED:password]",
        "http.request.header.authorization": ("[REDACTED:authorization]",),
        "http.request.header.x-api-key": ("[REDACTED:apikey]",),
        "http.response.header.set-cookie": ("[REDACTED:cookie]", "[REDACTED:cookie]"),
        "customer_email": "[REDACTED:email]",
        "e-mail": "[REDACTED:email]",
        "phoneNumber": "[REDACTED:phonenumber]",
        "cardNumber": "[REDACTED:cardnumber]",
        "loyalty.LoyaltyId": "[REDACTED:loyalty]",
        "email_verified": True,
        "card_type": "visa",
        "span": "not a pan",
        "token_count": 7,
    }


def test_business_keys_and_ids_are_never_rewritten_even_when_they_look_sensitive() -> None:
    scrubber = Scrubber(sensitive_keys=("orderid", "*id"))
    attributes = {
        "orderId": "4111111111111111",
        "requestId": EMAIL,
        "trace_id": "4111111111111111",
        "span_id": "555-123-4567",
    }
    assert scrubber.attributes(attributes) is attributes


def test_numbers_and_booleans_under_ordinary_keys_stay_as_they_are() -> None:
    attributes = {"amount_cents": 4111111111111111, "paid": True, "ratio": 0.5, "raw": b"4111111111111111"}
    assert Scrubber().attributes(attributes) is attributes


def test_sequences_are_masked_item_by_item() -> None:
    assert Scrubber().attributes({"recipients": ("ops@example.com", "team", EMAIL)}) == {
        "recipients": ("[REDACTED:email]", "team", "[REDACTED:email]")
    }


def test_structured_log_bodies_are_masked_by_key_and_by_value_at_every_depth() -> None:
    body = {
        "event": "signup",
        "user": {"email": "a@b.io", "name": "Jane", "contact": [f"call {PHONE}", {"password": "pw"}]},
        "orderId": "4111111111111111",
        "count": 3,
    }
    assert Scrubber().body(body) == {
        "event": "signup",
        "user": {
            "email": "[REDACTED:email]",
            "name": "Jane",
            "contact": ["call [REDACTED:phone]", {"password": "[REDACTED:password]"}],
        },
        "orderId": "4111111111111111",
        "count": 3,
    }
    assert Scrubber().body([f"to {EMAIL}", 4]) == ["to [REDACTED:email]", 4]


def test_value_kinds_can_be_chosen() -> None:
    text = f"{EMAIL} {PHONE} {CARD} Bearer abcdefghijkl password=x"
    assert Scrubber(value_kinds=["card", "phone"]).text(text) == (
        f"{EMAIL} [REDACTED:phone] [REDACTED:card] Bearer abcdefghijkl password=x"
    )
    assert Scrubber(value_kinds=[]).text(text) is text
    with pytest.raises(ValueError, match=r"unknown value kinds \['iban'\]"):
        Scrubber(value_kinds=["iban"])


def test_verdict_caches_stay_bounded() -> None:
    scrubber = Scrubber(cache_size=64)
    for index in range(1000):
        scrubber.attributes({f"key{index}": f"value {index}", "note": f"mail u{index}@example.com"})
    assert len(scrubber._keys) <= 64
    assert len(scrubber._texts) <= 64
    assert scrubber.text("mail u999@example.com") == "mail [REDACTED:email]"


def test_settings_configure_the_exporters_scrubber(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_SENSITIVE_KEYS", "loyalty_id, *nickname")
    monkeypatch.setenv("OTEL_CORRELATE_SENSITIVE_VALUES", "email")
    monkeypatch.setenv("OTEL_CORRELATE_KEYS", "orderId,requestId,tenantId")
    scrubber = Scrubber.from_settings()
    assert scrubber is not None
    assert scrubber.attributes(
        {
            "loyaltyId": "L-1",
            "user.nickname": "JJ",
            "password": "pw",
            "tenantId": EMAIL,
            "note": f"{EMAIL} {PHONE}",
        }
    ) == {
        "loyaltyId": "[REDACTED:loyalty_id]",
        "user.nickname": "[REDACTED:nickname]",
        "password": "[REDACTED:password]",  # the built-in keys always stay
        "tenantId": EMAIL,
        "note": f"[REDACTED:email] {PHONE}",
    }
    monkeypatch.setenv("OTEL_CORRELATE_SCRUB", "false")
    assert Scrubber.from_settings() is None


def test_the_setting_offers_every_value_kind_by_default() -> None:
    assert sorted(_settings.SENSITIVE_VALUES.get()) == sorted(_sensitive.VALUE_KINDS)


def test_an_unknown_value_kind_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_SENSITIVE_VALUES", "email,iban")
    with pytest.raises(_settings.SettingError, match=r"unknown kind\(s\) iban; expected some of email,phone"):
        _settings.SENSITIVE_VALUES.get()


# --- SDK objects: copies only when something changed -------------------------------------


def _finished_spans(build: Any) -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "unit"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("unit"))
    return list(exporter.get_finished_spans())


def test_clean_spans_come_back_as_the_same_objects() -> None:
    def build(unit_tracer: Any) -> None:
        with unit_tracer.start_as_current_span(
            "GET /orders/{order_id}", attributes={"http.route": "/orders"}
        ):
            pass

    spans = _finished_spans(build)
    assert _scrub.span(Scrubber(), spans[0]) is spans[0]
    _scrub.configure(Scrubber())
    assert _scrub.spans(spans) is spans


def test_a_masked_span_is_a_copy_that_keeps_ids_times_dropped_counts_and_the_original() -> None:
    link = trace.SpanContext(0x1, 0x2, is_remote=True)

    def build(unit_tracer: Any) -> None:
        with unit_tracer.start_as_current_span(
            f"notify {EMAIL}", links=[Link(link, {"from": EMAIL})], attributes={"orderId": "O-1"}
        ) as span:
            span.set_attribute("contact", PHONE)
            span.add_event("sent", {"to": EMAIL})
            span.set_status(Status(StatusCode.ERROR, f"card {CARD} declined"))

    [span] = _finished_spans(build)
    span._attributes = BoundedAttributes(maxlen=2, attributes={"a": 1, "b": 2, "contact": PHONE})
    scrubbed = _scrub.span(Scrubber(), span)
    assert scrubbed is not span
    assert (scrubbed.name, dict(scrubbed.attributes), scrubbed.dropped_attributes) == (
        "notify [REDACTED:email]",
        {"b": 2, "contact": "[REDACTED:phone]"},
        1,
    )
    assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in scrubbed.events] == [
        ("sent", {"to": "[REDACTED:email]"}, span.events[0].timestamp)
    ]
    assert [(li.context, dict(li.attributes or {})) for li in scrubbed.links] == [
        (link, {"from": "[REDACTED:email]"})
    ]
    assert (scrubbed.status.status_code, scrubbed.status.description) == (
        StatusCode.ERROR,
        "card [REDACTED:card] declined",
    )
    assert (scrubbed.context, scrubbed.parent, scrubbed.start_time, scrubbed.end_time, scrubbed.resource) == (
        span.context,
        span.parent,
        span.start_time,
        span.end_time,
        span.resource,
    )
    assert span.attributes["contact"] == PHONE and span.name == f"notify {EMAIL}"  # the original is untouched


def test_log_records_are_copied_only_when_masked() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "unit"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    otel_logger = provider.get_logger("unit")
    otel_logger.emit(LogRecord(body="order created", attributes={"orderId": "O-1"}))
    otel_logger.emit(LogRecord(body=f"mail {EMAIL}", attributes={"orderId": "O-1", "card": CARD}))
    clean, dirty = exporter.get_finished_logs()
    assert _scrub.log_record(Scrubber(), clean) is clean
    scrubbed = _scrub.log_record(Scrubber(), dirty)
    assert (scrubbed.log_record.body, dict(scrubbed.log_record.attributes or {})) == (
        "mail [REDACTED:email]",
        {"orderId": "O-1", "card": "[REDACTED:card]"},
    )
    assert (scrubbed.resource, scrubbed.log_record.timestamp) == (dirty.resource, dirty.log_record.timestamp)
    assert dirty.log_record.body == f"mail {EMAIL}"


def test_queued_log_records_are_masked_like_the_sdks_records() -> None:
    """The fast processor's compact records (what reaches the OTLP exporter) are masked the same way."""
    from otel_correlate import _fastlogs

    otel_logger = LoggerProvider(resource=Resource.create({"service.name": "unit"})).get_logger("unit")

    def queued(body: str, attributes: dict[str, Any]) -> _fastlogs.QueuedLogRecord:
        return _fastlogs.QueuedLogRecord(5, 6, 0xFEED, 0xBEEF, 1, "INFO", None, body, attributes, otel_logger)

    clean = queued("order created", {"orderId": "O-1"})
    dirty = queued(f"mail {EMAIL}", {"orderId": "O-1", "card": CARD})
    assert _scrub.log_record(Scrubber(), clean) is clean  # type: ignore[arg-type]
    scrubbed = _scrub.log_record(Scrubber(), dirty)  # type: ignore[arg-type]
    assert scrubbed == queued("mail [REDACTED:email]", {"orderId": "O-1", "card": "[REDACTED:card]"})
    assert type(scrubbed) is _fastlogs.QueuedLogRecord
    assert dirty.body == f"mail {EMAIL}" and dirty.attributes["card"] == CARD  # the original is untouched
    # through the exporters' wrapper, as a whole batch, and as the SDK's record for other exporters
    exporter = InMemoryLogRecordExporter()
    counting = _pipeline._CountingLogExporter(exporter)
    _scrub.configure(Scrubber())
    try:
        counting.export([dirty, clean])  # type: ignore[list-item]
    finally:
        _scrub.reload()
    got = [(r.log_record.body, dict(r.log_record.attributes or {})) for r in exporter.get_finished_logs()]
    assert got == [
        ("mail [REDACTED:email]", {"orderId": "O-1", "card": "[REDACTED:card]"}),
        ("order created", {"orderId": "O-1"}),
    ]


def test_a_scrubber_that_fails_drops_the_batch_instead_of_exporting_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Scrubber):
        def text(self, text: str) -> str:
            raise RuntimeError("boom")

    _scrub.configure(Broken())
    spans = _finished_spans(lambda t: t.start_span("x").end())
    with caplog.at_level(logging.WARNING, logger="otel_correlate"):
        assert _scrub.spans(spans) == ()
    assert "masking sensitive data in traces failed, so the batch was dropped" in caplog.text


# --- through the real pipeline -------------------------------------------------------------


def test_spans_through_the_pipeline_are_masked_and_keep_their_business_keys(
    otel_capture: TelemetryCapture,
) -> None:
    with business_context(orderId="ORD-S1", requestId="req-s1"):
        with tracer.start_as_current_span("charge") as span:
            span.set_attributes({"customer.email": EMAIL, "note": f"call {PHONE}", "payment": CARD})
            try:
                raise ValueError(f"card {CARD} declined for {EMAIL}")
            except ValueError as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
    [exported] = otel_capture.spans()
    assert dict(exported.attributes) == {
        "orderId": "ORD-S1",
        "requestId": "req-s1",
        "customer.email": "[REDACTED:email]",
        "note": "call [REDACTED:phone]",
        "payment": "[REDACTED:card]",
    }
    [event] = exported.events
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "card [REDACTED:card] declined for [REDACTED:email]"
    assert CARD not in str(event.attributes["exception.stacktrace"])
    assert exported.status.description == "card [REDACTED:card] declined for [REDACTED:email]"


def _log_records(capture: TelemetryCapture) -> list[tuple[Any, dict[str, Any]]]:
    return [
        (
            r.log_record.body,
            {k: v for k, v in (r.log_record.attributes or {}).items() if not k.startswith("code.")},
        )
        for r in capture.logs()
    ]


def test_loguru_and_stdlib_lines_are_masked_in_body_extra_and_exception(
    otel_capture: TelemetryCapture,
) -> None:
    stdlib = logging.getLogger("tests.scrub")
    stdlib.setLevel(logging.INFO)
    with business_context(orderId="ORD-L1", requestId="req-l1"):
        logger.bind(customer={"email": EMAIL, "tier": "gold"}, auth=f"Bearer {JWT}").info(
            "order for {} paid with {}", EMAIL, CARD
        )
        stdlib.warning("sms to %s failed", PHONE)
        try:
            raise RuntimeError(f"password=hunter2 rejected for {EMAIL}")
        except RuntimeError:
            logger.exception("login failed")
    records = _log_records(otel_capture)
    assert records[:2] == [
        (
            "order for [REDACTED:email] paid with [REDACTED:card]",
            {
                "customer.email": "[REDACTED:email]",
                "customer.tier": "gold",
                "auth": "Bearer [REDACTED:token]",
                "orderId": "ORD-L1",
                "requestId": "req-l1",
            },
        ),
        ("sms to [REDACTED:phone] failed", {"orderId": "ORD-L1", "requestId": "req-l1"}),
    ]
    body, attributes = records[2]
    assert (body, attributes["exception.message"]) == (
        "login failed",
        "password=[REDACTED:secret] rejected for [REDACTED:email]",
    )
    assert (
        "hunter2" not in attributes["exception.stacktrace"]
        and EMAIL not in attributes["exception.stacktrace"]
    )


class _Collecting(MetricExporter):
    """Keeps every exported batch (the SDK has no in-memory push exporter)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _points(batches: Sequence[MetricsData], name: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return [
        (dict(point.attributes or {}), [dict(e.filtered_attributes or {}) for e in point.exemplars])
        for data in batches
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_metric_points_and_exemplars_are_masked_and_exemplars_keep_the_business_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # customer.email is dropped from the points by the metric view, so it lands on the exemplar.
    monkeypatch.setenv("OTEL_CORRELATE_METRIC_DENY_KEYS", "customer.email")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
    exporter = _Collecting()
    providers = _pipeline.build_providers(
        resource=Resource.create({"service.name": "unit"}), metric_exporters=[exporter]
    )
    try:
        duration = providers.meter_provider.get_meter("unit").create_histogram("checkout.duration", unit="s")
        with providers.tracer_provider.get_tracer("unit").start_as_current_span("pay"):
            duration.record(
                0.2,
                {
                    "channel": "web",
                    "note": f"card {CARD}",
                    "phone": "unknown",
                    "customer.email": EMAIL,
                    "orderId": "ORD-M1",
                    "requestId": "req-m1",
                },
            )
        providers.force_flush()
    finally:
        providers.shutdown()
    [(attributes, exemplars)] = _points(exporter.batches[:1], "checkout.duration")
    assert attributes == {"channel": "web", "note": "card [REDACTED:card]", "phone": "[REDACTED:phone]"}
    assert exemplars == [{"customer.email": "[REDACTED:email]", "orderId": "ORD-M1", "requestId": "req-m1"}]


def test_metrics_without_sensitive_data_come_back_as_the_same_object() -> None:
    clean = MetricsData(resource_metrics=[])
    assert _scrub.metrics_data(Scrubber(), clean) is clean


# --- the batch check in C ------------------------------------------------------------------


def _queued(body: Any, attributes: dict[str, Any]) -> Any:
    from otel_correlate import _fastlogs

    otel_logger = LoggerProvider(resource=Resource.create({"service.name": "unit"})).get_logger("unit")
    return _fastlogs.QueuedLogRecord(5, 6, 0xFEED, 0xBEEF, 1, "INFO", None, body, attributes, otel_logger)


def _random_batch(draw: random.Random) -> tuple[list[Any], list[Any]]:
    """Ended spans (as our pipeline queues them) and queued log records, now and then with something to mask."""
    from otel_correlate import _fastsdk

    texts = ["GET /orders/{order_id}", "order created", "", "id 1234", EMAIL, f"card {CARD}", JWT]
    values = ["O-1", "wrk", 7, 1.5, True, "", PHONE, EMAIL, ["a", EMAIL], ("x",)]
    exporter = InMemorySpanExporter()
    provider = _fastsdk.FastTracerProvider(resource=Resource.create({"service.name": "unit"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    unit_tracer = provider.get_tracer("unit")
    logs = []
    for _ in range(draw.randint(1, 12)):
        clean = draw.random() < 0.7
        attributes = {
            f"k{i}": draw.choice(values[:6] if clean else values) for i in range(draw.randint(0, 4))
        }
        if draw.random() < 0.3:
            attributes[draw.choice(["password", "orderId", "requestId"])] = draw.choice(values[:2])
        span = unit_tracer.start_span(draw.choice(texts[:4] if clean else texts), attributes=attributes)
        if draw.random() < 0.2:
            span.set_status(Status(StatusCode.ERROR, draw.choice(texts)))
        if draw.random() < 0.1:
            span.add_event("sent", {"to": draw.choice(values)})
        if draw.random() < 0.1:
            span.add_link(trace.SpanContext(0x1, 0x2, is_remote=True), {"from": draw.choice(values)})
        span.end()
        logs.append(_queued(draw.choice(texts[:4] if clean else texts), dict(attributes)))
    return list(exporter.get_finished_spans()), logs


def _exported(items: Sequence[Any]) -> list[Any]:
    return [
        (
            item.name,
            dict(item.attributes),
            item.status.description,
            [dict(e.attributes or {}) for e in item.events],
            [dict(link.attributes or {}) for link in item.links],
        )
        if hasattr(item, "name")
        else (item.body, item.attributes)
        for item in items
    ]


def test_the_batch_check_in_c_masks_what_the_item_by_item_code_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _sensitive._BATCH_SETTLED is not None, "the C extension is built in this venv"
    draw = random.Random(11)
    unchanged = 0
    for _ in range(300):
        spans, logs = _random_batch(draw)
        for scrub in (_scrub.spans, _scrub.log_records):
            batch = spans if scrub is _scrub.spans else logs
            _scrub.configure(Scrubber())
            with monkeypatch.context() as python_only:
                python_only.setattr(_sensitive, "_BATCH_SETTLED", None)
                expected = scrub(batch)
            _scrub.configure(Scrubber())  # fresh caches: the C check fills them as the Python code does
            got = scrub(batch)
            assert _exported(got) == _exported(expected)
            assert (got is batch) == (expected is batch)
            unchanged += got is batch
    assert 50 < unchanged < 550  # both outcomes, many times


def test_a_clean_batch_is_checked_in_c_without_going_item_by_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_correlate import _fastsdk

    exporter = InMemorySpanExporter()
    provider = _fastsdk.FastTracerProvider(resource=Resource.create({"service.name": "unit"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("unit").start_span("GET /orders", attributes={"orderId": "O-1", "n": 1}).end()
    spans = list(exporter.get_finished_spans())
    logs = [_queued("order created", {"orderId": "O-1"}), _queued("id 7", {})]

    walked: list[int] = []
    each = _scrub._each

    def item_by_item(items: Any, scrub: Any) -> Any:
        walked.append(len(items))
        return each(items, scrub)

    _scrub.configure(Scrubber())
    monkeypatch.setattr(_scrub, "_each", item_by_item)
    assert _scrub.spans(spans) is spans and _scrub.log_records(logs) is logs
    assert walked == []
    # one sensitive item sends the batch to the Python code, which masks that item
    masked = _scrub.log_records([*logs, _queued(EMAIL, {})])
    assert (walked, [r.body for r in masked]) == ([3], ["order created", "id 7", "[REDACTED:email]"])
