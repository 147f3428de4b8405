"""The dead-letter file, its DEAD_LETTER line and counter, replay, and the `dead-letters` CLI."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.telegram_stub import TelegramStub

from otel_correlate import business_context
from otel_correlate._capture import TelemetryCapture
from otel_correlate._dead_letters import DeadLetter, DeadLetterStore, add_cli

TOKEN = "42:dead-letter-token"


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub(token=TOKEN) as server:
        yield server


def test_record_logs_counts_and_fsyncs_one_json_line(
    tmp_path: Path, otel_capture: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    store = DeadLetterStore(tmp_path / "nested" / "dl.jsonl")
    with business_context(orderId="D-1", requestId="req-d1"):
        letter = store.record(
            target="telegram", payload={"chat_id": "9", "text": "Привет"}, error="HTTP 500", attempts=4
        )
    assert synced, "the line must be fsynced before record() returns"
    assert json.loads((tmp_path / "nested" / "dl.jsonl").read_text(encoding="utf-8")) == {
        "id": letter.id,
        "timestamp": letter.timestamp,
        "target": "telegram",
        "payload": {"chat_id": "9", "text": "Привет"},
        "error": "HTTP 500",
        "attempts": 4,
        "requestId": "req-d1",
        "orderId": "D-1",
    }
    assert letter.timestamp.endswith("Z") and len(letter.timestamp) == 24
    [record] = otel_capture.logs()
    assert (record.log_record.severity_text, record.log_record.body) == (
        "FATAL",
        "DEAD_LETTER requestId=req-d1 orderId=D-1 target=telegram error=HTTP 500",
    )
    assert {k: v for k, v in (record.log_record.attributes or {}).items() if not k.startswith("code.")} == {
        "requestId": "req-d1",
        "orderId": "D-1",
        "target": "telegram",
        "error": "HTTP 500",
        "attempts": 4,
        "dead_letter_id": letter.id,
    }
    counted = [
        (p.name, p.unit, p.attributes, p.value) for p in otel_capture.metrics() if p.name == "dead_letters"
    ]
    assert counted == [("dead_letters", "{message}", {"target": "telegram"}, 1)]


def test_explicit_keys_win_and_missing_keys_are_left_out(
    tmp_path: Path, otel_capture: TelemetryCapture
) -> None:
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    letter = store.record(target="email", payload={"to": "x"}, error="boom", keys={"orderId": "K-1"})
    assert (letter.orderId, letter.requestId) == ("K-1", None)
    [record] = otel_capture.logs()
    assert record.log_record.body == "DEAD_LETTER requestId=- orderId=K-1 target=email error=boom"
    assert "requestId" not in (record.log_record.attributes or {})


def test_path_falls_back_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_DEAD_LETTER_FILE", str(tmp_path / "env.jsonl"))
    assert DeadLetterStore().path == tmp_path / "env.jsonl"
    assert DeadLetterStore().letters() == []


def test_replay_removes_delivered_keeps_failed_and_new_letters(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    letters = [
        store.record(target="telegram", payload={"text": f"m{i}"}, error="x", keys={}) for i in range(3)
    ]
    arrived_meanwhile: list[DeadLetter] = []

    def send(letter: DeadLetter) -> bool:
        if letter.payload["text"] == "m0":
            arrived_meanwhile.append(
                store.record(target="telegram", payload={"text": "new"}, error="y", keys={})
            )
        if letter.payload["text"] == "m1":
            raise RuntimeError("still down")
        return letter.payload["text"] != "m2"

    result = store.replay(send)
    assert [letter.id for letter in result.delivered] == [letters[0].id]
    assert [letter.id for letter in result.kept] == [letters[1].id, letters[2].id]
    assert store.letters() == [letters[1], letters[2], arrived_meanwhile[0]]


def test_a_corrupt_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store = DeadLetterStore(path)
    store.record(target="telegram", payload={}, error="x", keys={})
    with path.open("a") as file:
        file.write("{not json\n")
    with pytest.raises(
        ValueError, match=r"dl\.jsonl:2: not a dead letter: '\{not json'.*Fix or remove that line"
    ):
        store.letters()


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="otel-correlate")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_cli_lists_and_replays_to_the_real_stub(
    stub: TelegramStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dl.jsonl"
    store = DeadLetterStore(path)
    first = store.record(
        target="telegram", payload={"chat_id": "5", "text": "one"}, error="e1", keys={"orderId": "C-1"}
    )
    second = store.record(target="telegram", payload={"chat_id": "5", "text": "two"}, error="e2", keys={})
    stray = store.record(target="pager", payload={"text": "?"}, error="e3", keys={})

    assert run_cli(["dead-letters", "list", "--file", str(path), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [DeadLetter.from_json(line) for line in lines] == [first, second, stray]
    assert run_cli(["dead-letters", "list", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{first.id}  target=telegram  requestId=-  orderId=C-1  attempts=0  error=e1" in out
    assert err.strip() == f"3 dead letter(s) in {path}"

    for name, value in {
        "OTEL_CORRELATE_TELEGRAM_API_URL": stub.url,
        "OTEL_CORRELATE_TELEGRAM_BOT_TOKEN": TOKEN,
        "OTEL_CORRELATE_RETRY_MAX": "0",
        "OTEL_CORRELATE_DEAD_LETTER_FILE": str(tmp_path / "replay-failures.jsonl"),
    }.items():
        monkeypatch.setenv(name, value)
    assert run_cli(["dead-letters", "replay", "--file", str(path)]) == 1  # the pager letter has no sender
    out, err = capsys.readouterr()
    assert out.strip() == f"replayed 2 dead letter(s); 1 kept in {path}"
    assert "unknown target 'pager'; kept. Known targets: telegram." in err
    messages: list[dict[str, Any]] = httpx.get(f"{stub.url}/_stub/messages", timeout=5).json()["messages"]
    assert [(m["chat_id"], m["text"]) for m in messages] == [("5", "one"), ("5", "two")]
    assert store.letters() == [stray]
    assert not (tmp_path / "replay-failures.jsonl").exists()  # replay never dead-letters again
