"""Dead letters: messages that failed for good, kept durably so they can be replayed.

Recording one does three things: a CRITICAL loguru line starting with
``DEAD_LETTER`` that carries requestId, orderId, target and error (alert and
search on it); one count in the ``dead_letters`` counter (attribute ``target``);
and one JSON line appended to the dead-letter file and fsynced before
:meth:`DeadLetterStore.record` returns.

``otel-correlate dead-letters list`` shows the file and ``otel-correlate
dead-letters replay`` re-sends its messages; delivered ones leave the file,
the others stay. Delivery is at least once: a crash between sending and
rewriting the file sends a message again on the next replay.

Example:
    >>> import pathlib, tempfile
    >>> store = DeadLetterStore(pathlib.Path(tempfile.mkdtemp()) / "dead-letters.jsonl")
    >>> letter = store.record(target="telegram", payload={"chat_id": "1", "text": "hi"}, error="HTTP 500")
    >>> [item.id for item in store.letters()] == [letter.id]
    True
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from loguru import logger
from opentelemetry import metrics, trace

from otel_correlate import _settings
from otel_correlate._context import current_business_keys

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the in-process lock is all we have
    fcntl = None  # type: ignore[assignment]


def utc_now_iso() -> str:
    """Now as ISO 8601 UTC with milliseconds, e.g. ``2025-10-12T10:30:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class DeadLetter:
    """One message that failed for good, as one line of the dead-letter file.

    Attributes:
        id: Unique id, used by replay to remove delivered letters.
        timestamp: When it was dead-lettered (ISO 8601 UTC).
        target: Where it was going, e.g. ``telegram``; replay picks the sender by it.
        payload: The message itself, enough to send it again.
        error: Why the last attempt failed.
        attempts: How many attempts were made.
        requestId: The request that produced the message, when known.
        orderId: The order it is about, when known.
    """

    id: str
    timestamp: str
    target: str
    payload: dict[str, Any]
    error: str
    attempts: int = 0
    requestId: str | None = None  # the business key, named as in logs and spans
    orderId: str | None = None

    def to_json(self) -> str:
        """The letter as one compact JSON line (without the newline)."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> DeadLetter:
        """Parse one line of the dead-letter file.

        Raises:
            ValueError: The line is not a dead letter; the message quotes its start.
        """
        try:
            data = json.loads(line)
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a dead letter: {line[:80]!r} ({exc})") from exc


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: letters delivered and removed, letters kept for next time."""

    delivered: tuple[DeadLetter, ...] = field(default=())
    kept: tuple[DeadLetter, ...] = field(default=())


class DeadLetterStore:
    """The durable JSON-lines dead-letter file, its log line and its counter.

    Safe for threads of one process and, where ``fcntl`` exists, for several
    processes sharing the file (a ``<file>.lock`` next to it serialises writers).

    Example:
        >>> DeadLetterStore("/var/lib/orders/dead-letters.jsonl").path.name
        'dead-letters.jsonl'

    Args:
        path: The file; falls back to ``OTEL_CORRELATE_DEAD_LETTER_FILE`` (``dead-letters.jsonl``).
        meter_provider: Where ``dead_letters`` is counted; the global provider by default.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.path = Path(path if path is not None else _settings.DEAD_LETTER_FILE.get())
        self._lock = threading.Lock()
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_correlate")
        self._counter = meter.create_counter(
            "dead_letters", unit="{message}", description="Messages that failed for good, by target."
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if fcntl is None:  # pragma: no cover
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(lock_fd)  # closing releases the flock

    def record(
        self,
        *,
        target: str,
        payload: Mapping[str, Any],
        error: str,
        attempts: int = 0,
        keys: Mapping[str, str] | None = None,
    ) -> DeadLetter:
        """Log, count and durably store one message that failed for good.

        Args:
            target: Where it was going (``telegram``); a metric attribute, keep it low-cardinality.
            payload: The message, JSON-serialisable, enough to send it again.
            error: Why it failed.
            attempts: Attempts made before giving up.
            keys: Business keys; the current context's (``current_business_keys()``) by default.

        Raises:
            OSError: The file could not be written (the log line and counter happened already).
        """
        keys = current_business_keys() if keys is None else keys
        letter = DeadLetter(
            id=secrets.token_hex(8),
            timestamp=utc_now_iso(),
            target=target,
            payload=dict(payload),
            error=error,
            attempts=attempts,
            requestId=keys.get("requestId"),
            orderId=keys.get("orderId"),
        )
        context: dict[str, Any] = {"requestId": letter.requestId, "orderId": letter.orderId}
        logger.bind(
            **{key: value for key, value in context.items() if value is not None},
            target=target,
            error=error,
            attempts=attempts,
            dead_letter_id=letter.id,
        ).critical(
            "DEAD_LETTER requestId={} orderId={} target={} error={}",
            letter.requestId or "-",
            letter.orderId or "-",
            target,
            error,
        )
        self._counter.add(1, {"target": target})
        trace.get_current_span().add_event(
            "dead_letter", {"dead_letter.id": letter.id, "dead_letter.target": target}
        )
        self._append(letter.to_json() + "\n")
        return letter

    def _append(self, line: str) -> None:
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def letters(self) -> list[DeadLetter]:
        """Every letter in the file, oldest first; an absent file means none.

        Raises:
            ValueError: A line is not a dead letter; the message names the file and line.
        """
        with self._locked():
            return self._read()

    def _read(self) -> list[DeadLetter]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        letters = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                letters.append(DeadLetter.from_json(line))
            except ValueError as exc:
                raise ValueError(f"{self.path}:{number}: {exc}. Fix or remove that line.") from exc
        return letters

    def replay(self, send: Callable[[DeadLetter], bool]) -> ReplayResult:
        """Send every letter with ``send`` and remove those it delivered from the file.

        ``send`` returns ``True`` when delivered; ``False`` or an exception keeps the
        letter. Sending happens outside the file lock, so the application keeps
        appending new letters meanwhile; they are kept.
        """
        delivered: list[DeadLetter] = []
        kept: list[DeadLetter] = []
        for letter in self.letters():
            try:
                ok = send(letter)
            except Exception as exc:
                logger.bind(dead_letter_id=letter.id, target=letter.target).error(
                    "replaying dead letter {} failed: {}", letter.id, exc
                )
                ok = False
            (delivered if ok else kept).append(letter)
        if delivered:
            self._remove({letter.id for letter in delivered})
        return ReplayResult(tuple(delivered), tuple(kept))

    def _remove(self, ids: set[str]) -> None:
        with self._locked():
            remaining = [letter for letter in self._read() if letter.id not in ids]
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, "".join(letter.to_json() + "\n" for letter in remaining).encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            with contextlib.suppress(OSError):  # make the rename durable where directories can be fsynced
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)


# --- CLI -------------------------------------------------------------------------


class _Sender(Protocol):
    def deliver(self, letter: DeadLetter) -> bool: ...
    def close(self) -> None: ...


def _senders() -> dict[str, Callable[[], _Sender]]:
    """Replay senders by target, configured from the environment when first used."""

    def telegram() -> _Sender:
        from otel_correlate._notify import TelegramNotifier

        return TelegramNotifier(enabled=True)

    return {"telegram": telegram}


def _cmd_list(args: argparse.Namespace) -> int:
    letters = DeadLetterStore(args.file).letters()
    for letter in letters:
        if args.json:
            print(letter.to_json())
        else:
            print(
                f"{letter.timestamp}  {letter.id}  target={letter.target}  requestId={letter.requestId or '-'}  "
                f"orderId={letter.orderId or '-'}  attempts={letter.attempts}  error={letter.error}"
            )
    if not args.json:
        print(f"{len(letters)} dead letter(s) in {DeadLetterStore(args.file).path}", file=sys.stderr)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    store = DeadLetterStore(args.file)
    factories = _senders()
    senders: dict[str, _Sender] = {}

    def send(letter: DeadLetter) -> bool:
        if letter.target not in factories:
            print(
                f"dead letter {letter.id}: unknown target {letter.target!r}; kept. "
                f"Known targets: {', '.join(sorted(factories))}.",
                file=sys.stderr,
            )
            return False
        if letter.target not in senders:
            senders[letter.target] = factories[letter.target]()
        return senders[letter.target].deliver(letter)

    try:
        result = store.replay(send)
    finally:
        for sender in senders.values():
            sender.close()
    print(f"replayed {len(result.delivered)} dead letter(s); {len(result.kept)} kept in {store.path}")
    return 0 if not result.kept else 1


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``dead-letters list|replay`` to the ``otel-correlate`` command.

    Example:
        >>> parser = argparse.ArgumentParser(prog="otel-correlate")
        >>> add_cli(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["dead-letters", "list", "--json"]).json
        True
    """
    command = subparsers.add_parser("dead-letters", help="list or re-send messages that failed for good")
    actions = command.add_subparsers(dest="dead_letters_command", required=True, metavar="ACTION")
    file_help = "dead-letter file (default: $OTEL_CORRELATE_DEAD_LETTER_FILE or dead-letters.jsonl)"
    listing = actions.add_parser("list", help="print every dead letter, oldest first")
    listing.add_argument("--file", help=file_help)
    listing.add_argument("--json", action="store_true", help="print the raw JSON lines")
    listing.set_defaults(handler=_cmd_list)
    replay = actions.add_parser(
        "replay",
        help="re-send every dead letter (targets configured from OTEL_CORRELATE_*); delivered ones are removed",
    )
    replay.add_argument("--file", help=file_help)
    replay.set_defaults(handler=_cmd_replay)
