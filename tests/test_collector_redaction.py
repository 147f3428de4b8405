"""The collector's redaction, the second net behind the SDK's masking, as configured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
REDACTION = yaml.safe_load((Path(__file__).parents[1] / "collector" / "config.yaml").read_text())[
    "processors"
]["redaction"]


def _any(patterns: list[str], text: str) -> bool:
    # The patterns are RE2; these ones mean the same in Python's re.
    return any(re.search(pattern, text) for pattern in patterns)


def test_business_keys_are_never_redacted() -> None:
    assert {"orderId", "requestId", "order.id", "request.id", "trace_id", "span_id"} <= set(
        REDACTION["ignored_keys"]
    )


@pytest.mark.parametrize(
    "text",
    [
        EMAIL,
        PHONE,
        "+1 (555) 123-4567",
        "(555) 123-4567",
        "555-123-4567",
        CARD,
        f"Bearer {JWT}",
        JWT,
        "password=x",
    ],
)
def test_values_of_every_kind_the_sdk_masks_are_blocked(text: str) -> None:
    assert _any(REDACTION["blocked_values"], text)


@pytest.mark.parametrize(
    "text", ["2026-05-09T07:35:25+00:00", "ORD-1a2b3c4d", "http://127.0.0.1:4318/v1/traces"]
)
def test_timestamps_ids_and_urls_are_not_blocked(text: str) -> None:
    assert not _any(REDACTION["blocked_values"], text)


@pytest.mark.parametrize(
    ("key", "blocked"),
    [
        ("password", True),
        ("http.request.header.authorization", True),
        ("userEmail", True),
        ("customer.phone", True),
        ("card_number", True),
        ("ssn", True),
        ("span", False),
        ("email_verified", False),
        ("http.route", False),
    ],
)
def test_personal_data_keys_are_masked_whole(key: str, blocked: bool) -> None:
    assert _any(REDACTION["blocked_key_patterns"], key) is blocked


def test_a_value_the_sdk_masked_keeps_its_marker() -> None:
    assert _any(REDACTION["allowed_values"], "[REDACTED:email]")
    assert not _any(REDACTION["allowed_values"], f"[REDACTED:email] {EMAIL}")
