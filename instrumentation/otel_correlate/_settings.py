"""Every setting of otel-correlate, declared once.

Each :class:`Setting` names its environment variable, its default, how the raw
string is parsed and what it is for. The README's configuration table is
generated from :data:`SETTINGS` (``python -m otel_correlate._settings``) and a
test fails when the two drift apart.

Example:
    >>> from otel_correlate._settings import CORRELATION_KEYS
    >>> CORRELATION_KEYS.get()
    ('orderId', 'requestId')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """An environment variable holds a value otel-correlate cannot use."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable, its default and its parser.

    Attributes:
        env: The environment variable read.
        default: The value used when the variable is unset or empty.
        parse: Turns the raw string into a value; raises ``ValueError`` on bad input.
        doc: One sentence for the README table.
        shown_default: How the default is written in the README, when ``str(default)`` is not it.
    """

    env: str
    default: T
    parse: Callable[[str], T]
    doc: str
    shown_default: str | None = None

    def get(self) -> T:
        """The current value: the environment's when set, else the default.

        Raises:
            SettingError: The variable is set to something :attr:`parse` rejects; the
                message names the variable, the value and what is expected.
        """
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise SettingError(
                f"{self.env}={raw!r} is not valid: {exc}. Unset it to use the default "
                f"({self.default_text()})."
            ) from exc

    def default_text(self) -> str:
        """The default as the README shows it."""
        if self.shown_default is not None:
            return self.shown_default
        if isinstance(self.default, tuple):
            return ",".join(str(v) for v in self.default)
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


def parse_bool(raw: str) -> bool:
    """``true/1/yes/on`` or ``false/0/no/off``, any case."""
    value = raw.lower()
    if value in {"true", "1", "yes", "on"}:
        return True
    if value in {"false", "0", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_csv(raw: str) -> tuple[str, ...]:
    """A comma-separated list; blanks are dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_mapping(raw: str) -> tuple[tuple[str, str], ...]:
    """``a=b,c=d`` pairs, e.g. a path parameter and the key it fills."""
    pairs = []
    for item in parse_csv(raw):
        name, sep, key = item.partition("=")
        if not sep or not name.strip() or not key.strip():
            raise ValueError(f"{item!r} is not of the form path_param=key")
        pairs.append((name.strip(), key.strip()))
    return tuple(pairs)


#: RFC 9110 token characters: what an HTTP header name may be made of.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_header_name(raw: str) -> str:
    """An HTTP header name (an RFC 9110 token), e.g. ``X-Request-ID``."""
    bad = sorted(set(raw) - _TOKEN_CHARS)
    if bad:
        raise ValueError(
            f"{''.join(bad)!r} cannot be in an HTTP header name; use letters, digits and !#$%&'*+-.^_`|~"
        )
    return raw


def parse_positive_int(raw: str) -> int:
    """An integer of at least 1."""
    value = int(raw)
    if value < 1:
        raise ValueError("expected an integer of at least 1")
    return value


def parse_positive_float(raw: str) -> float:
    """A number greater than 0."""
    value = float(raw)
    if not value > 0:
        raise ValueError("expected a number greater than 0")
    return value


CORRELATION_KEYS: Setting[tuple[str, ...]] = Setting(
    env="OTEL_CORRELATE_KEYS",
    default=("orderId", "requestId"),
    parse=parse_csv,
    doc="Business keys carried in baggage and put on every span and log record.",
)
ROUTE_PARAMS: Setting[tuple[tuple[str, str], ...]] = Setting(
    env="OTEL_CORRELATE_ROUTE_PARAMS",
    default=(("order_id", "orderId"),),
    parse=parse_mapping,
    doc="Route path parameters that set a business key, as `param=key` pairs.",
    shown_default="order_id=orderId",
)
REQUEST_ID_HEADER = Setting(
    env="OTEL_CORRELATE_REQUEST_ID_HEADER",
    default="X-Request-ID",
    parse=parse_header_name,
    doc="Inbound header accepted as the requestId and echoed on the response.",
)
MAX_VALUE_LENGTH = Setting(
    env="OTEL_CORRELATE_MAX_VALUE_LENGTH",
    default=128,
    parse=parse_positive_int,
    doc="Longest business-key value accepted; longer ones are rejected and counted.",
)
METRIC_DENY_KEYS: Setting[tuple[str, ...]] = Setting(
    env="OTEL_CORRELATE_METRIC_DENY_KEYS",
    default=(),
    parse=parse_csv,
    doc="Extra high-cardinality attribute keys dropped from every metric (the business keys always are).",
    shown_default="(none)",
)
HTTP_BODY_SIZE_METRICS = Setting(
    env="OTEL_CORRELATE_HTTP_BODY_SIZE_METRICS",
    default=False,
    parse=parse_bool,
    doc="Also record `http.server.request.body.size` and `http.server.response.body.size` (experimental in semconv; off to save a histogram measurement per request).",
)
CONSOLE_LOG = Setting(
    env="OTEL_CORRELATE_CONSOLE_LOG",
    default=True,
    parse=parse_bool,
    doc="Replace loguru's default stderr sink with one that prefixes `[requestId=…] [orderId=…]`.",
)
LOG_LEVEL = Setting(
    env="OTEL_CORRELATE_LOG_LEVEL",
    default="INFO",
    parse=str.upper,
    doc="Lowest loguru level exported over OTLP and written to the console.",
)
NATIVE_ENCODER = Setting(
    env="OTEL_CORRELATE_NATIVE_ENCODER",
    default=True,
    parse=parse_bool,
    doc="Use the C extension, when it was built, to encode OTLP spans and log records and to check their attributes; `false` does all of it in Python (the same results, a few µs more per span).",
)
EXPORT_ERROR_INTERVAL = Setting(
    env="OTEL_CORRELATE_EXPORT_ERROR_INTERVAL",
    default=60.0,
    parse=parse_positive_float,
    doc="Seconds between two log lines about the same telemetry export failure; the rest are counted.",
)
# --- health endpoints (issue 5) ---
HEALTH_ENABLED = Setting(
    env="OTEL_CORRELATE_HEALTH_ENABLED",
    default=True,
    parse=parse_bool,
    doc="Mount the `/health`, `/health/deployment` and `/monitoring/*` endpoints.",
)
HEALTH_PREFIX = Setting(
    env="OTEL_CORRELATE_HEALTH_PREFIX",
    default="",
    parse=lambda raw: "/" + raw.strip("/"),
    doc="Path prefix put before the health and monitoring endpoints.",
    shown_default="(none)",
)
HEALTH_CHECK_TIMEOUT = Setting(
    env="OTEL_CORRELATE_HEALTH_CHECK_TIMEOUT",
    default=5.0,
    parse=parse_positive_float,
    doc="Seconds a deployment health check may take before it counts as failed.",
)
DEPLOYMENT_VERSION = Setting(
    env="OTEL_CORRELATE_DEPLOYMENT_VERSION",
    default="unknown",
    parse=str,
    doc="Version reported by `/health/deployment`.",
)
DEPLOYMENT_ID = Setting(
    env="OTEL_CORRELATE_DEPLOYMENT_ID",
    default="local",
    parse=str,
    doc="Deployment id reported by `/health/deployment`.",
)
DEPLOYMENT_REGION = Setting(
    env="OTEL_CORRELATE_REGION",
    default="local",
    parse=str,
    doc="Region reported by `/health/deployment`.",
)
# --- resilience and notifications (issue 5) ---
BREAKER_FAILURE_THRESHOLD = Setting(
    env="OTEL_CORRELATE_BREAKER_FAILURE_THRESHOLD",
    default=10,
    parse=parse_positive_int,
    doc="Consecutive failures that open a circuit breaker.",
)
BREAKER_RECOVERY_TIMEOUT = Setting(
    env="OTEL_CORRELATE_BREAKER_RECOVERY_TIMEOUT",
    default=120.0,
    parse=parse_positive_float,
    doc="Seconds an open circuit breaker waits before letting trial calls through.",
)
BREAKER_SUCCESS_THRESHOLD = Setting(
    env="OTEL_CORRELATE_BREAKER_SUCCESS_THRESHOLD",
    default=3,
    parse=parse_positive_int,
    doc="Successful trial calls that close a half-open circuit breaker.",
)
RETRY_MAX_ATTEMPTS = Setting(
    env="OTEL_CORRELATE_RETRY_MAX",
    default=3,
    parse=int,
    doc="Retries after the first attempt of a notification.",
)
RETRY_BASE_DELAY = Setting(
    env="OTEL_CORRELATE_RETRY_BASE_DELAY",
    default=1.0,
    parse=parse_positive_float,
    doc="First retry delay in seconds; it doubles on each retry.",
)
RETRY_JITTER = Setting(
    env="OTEL_CORRELATE_RETRY_JITTER",
    default=False,
    parse=parse_bool,
    doc="Randomise retry delays (full jitter) to spread retries of many clients.",
)
DEAD_LETTER_FILE = Setting(
    env="OTEL_CORRELATE_DEAD_LETTER_FILE",
    default="dead-letters.jsonl",
    parse=str,
    doc="JSON-lines file that keeps messages that failed for good, for `otel-correlate dead-letters replay`.",
)
TELEGRAM_ENABLED = Setting(
    env="OTEL_CORRELATE_TELEGRAM_ENABLED",
    default=False,
    parse=parse_bool,
    doc="Feature flag: send notifications through the Telegram Bot API.",
)
TELEGRAM_API_URL = Setting(
    env="OTEL_CORRELATE_TELEGRAM_API_URL",
    default="https://api.telegram.org",
    parse=lambda raw: raw.rstrip("/"),
    doc="Base URL of the Telegram Bot API (or a compatible endpoint).",
)
TELEGRAM_BOT_TOKEN = Setting(
    env="OTEL_CORRELATE_TELEGRAM_BOT_TOKEN",
    default="",
    parse=str,
    doc="Bot token; prefer `OTEL_CORRELATE_TELEGRAM_BOT_TOKEN_FILE` in production.",
    shown_default="(none)",
)
TELEGRAM_BOT_TOKEN_FILE = Setting(
    env="OTEL_CORRELATE_TELEGRAM_BOT_TOKEN_FILE",
    default="",
    parse=str,
    doc="File holding the bot token (a mounted secret).",
    shown_default="(none)",
)
TELEGRAM_CHAT_ID = Setting(
    env="OTEL_CORRELATE_TELEGRAM_CHAT_ID",
    default="",
    parse=str,
    doc="Chat the notifications go to.",
    shown_default="(none)",
)
TELEGRAM_TIMEOUT = Setting(
    env="OTEL_CORRELATE_TELEGRAM_TIMEOUT",
    default=10.0,
    parse=parse_positive_float,
    doc="Seconds one Telegram API call may take.",
)

# --- the native stack (issue 3) ---
STATE_DIR = Setting(
    env="OTEL_CORRELATE_STATE_DIR",
    default="~/.local/state/otel-correlate",
    parse=str,
    doc="Folder of the native stack's data, logs and pid files (`otel-correlate stack`).",
)
CACHE_DIR = Setting(
    env="OTEL_CORRELATE_CACHE_DIR",
    default="~/.cache/otel-correlate",
    parse=str,
    doc="Folder of the built engine binaries, shared by every clone on the machine.",
    shown_default="${XDG_CACHE_HOME:-~/.cache}/otel-correlate",
)
STACK_READY_TIMEOUT = Setting(
    env="OTEL_CORRELATE_STACK_READY_TIMEOUT",
    default=180.0,
    parse=parse_positive_float,
    doc="Seconds `otel-correlate stack up` waits for an engine to answer ready before it gives up.",
)

PORT_OFFSET = Setting(
    env="OTEL_CORRELATE_PORT_OFFSET",
    default=0,
    parse=int,
    doc="Added to every port of the native stack, so a second stack (a test run) can run beside the first.",
)
SECRETS_DIR = Setting(
    env="OTEL_CORRELATE_SECRETS_DIR",
    default="/etc/otel-correlate/secrets",
    parse=str,
    doc="Folder of the stack's secret files (Slack URL, PagerDuty keys, SMTP and Telegram credentials).",
)

# --- backup and restore (issue 7) ---
BACKUP_DIR = Setting(
    env="OTEL_CORRELATE_BACKUP_DIR",
    default="~/.local/share/otel-correlate/backups",
    parse=str,
    doc="Folder `otel-correlate backup` writes timestamped backups to (keep it outside the state directory).",
)
BACKUP_MAX_AGE_DAYS = Setting(
    env="OTEL_CORRELATE_BACKUP_MAX_AGE_DAYS",
    default=30.0,
    parse=parse_positive_float,
    doc="Backups older than this many days are deleted after each backup; the newest one never is.",
    shown_default="30",
)
BACKUP_S3_BUCKET = Setting(
    env="OTEL_CORRELATE_BACKUP_S3_BUCKET",
    default="",
    parse=str,
    doc="Upload each backup to this S3 bucket (needs `otel-correlate[s3]`; credentials from the standard `AWS_*` variables).",
    shown_default="(none: no upload)",
)
BACKUP_S3_ENDPOINT = Setting(
    env="OTEL_CORRELATE_BACKUP_S3_ENDPOINT",
    default="",
    parse=lambda raw: raw.rstrip("/"),
    doc="Endpoint URL of an S3-compatible store such as MinIO; empty means AWS S3.",
    shown_default="(AWS)",
)
BACKUP_S3_PREFIX = Setting(
    env="OTEL_CORRELATE_BACKUP_S3_PREFIX",
    default="otel-correlate/backups",
    parse=lambda raw: raw.strip("/"),
    doc="Key prefix the backups are uploaded under, one folder per backup.",
)
BACKUP_METRICS_ENDPOINT = Setting(
    env="OTEL_CORRELATE_BACKUP_METRICS_ENDPOINT",
    default="",
    parse=lambda raw: raw.rstrip("/"),
    doc="OTLP/HTTP endpoint that receives each backup's duration, size and timestamp; empty means the stack's collector.",
    shown_default="(the stack's collector)",
)

# --- personal data (issue 7) ---
SCRUB = Setting(
    env="OTEL_CORRELATE_SCRUB",
    default=True,
    parse=parse_bool,
    doc="Mask personal data and secrets in every span, log record and metric before export (see Data protection); the collector's redaction is the second net.",
)
SENSITIVE_KEYS: Setting[tuple[str, ...]] = Setting(
    env="OTEL_CORRELATE_SENSITIVE_KEYS",
    default=(),
    parse=parse_csv,
    doc="Extra attribute keys whose values are masked whole, besides the built-in ones (password, token, email, phone, card number …); `*` is a wildcard, case, `_` and `-` are ignored.",
    shown_default="(none)",
)


def parse_value_kinds(raw: str) -> tuple[str, ...]:
    """Kinds of sensitive values, from ``email,phone,card,token,secret``; ``none`` for none."""
    kinds = parse_csv(raw.lower())
    if kinds == ("none",):
        return ()
    known = ("email", "phone", "card", "token", "secret")
    unknown = [kind for kind in kinds if kind not in known]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; expected some of {','.join(known)} or none")
    return kinds


SENSITIVE_VALUES: Setting[tuple[str, ...]] = Setting(
    env="OTEL_CORRELATE_SENSITIVE_VALUES",
    default=("email", "phone", "card", "token", "secret"),
    parse=parse_value_kinds,
    doc="Kinds of values masked inside any string: e-mail addresses, phone numbers, Luhn-valid card numbers, bearer tokens and JWTs, `password=…` pairs (`none` for none).",
)

SETTINGS: tuple[Setting[object], ...] = tuple(  # every Setting defined in this module
    value for value in list(globals().values()) if isinstance(value, Setting)
)


def markdown_table() -> str:
    """The README's configuration table, one row per setting."""
    rows = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for setting in sorted(SETTINGS, key=lambda s: s.env):
        rows.append(f"| `{setting.env}` | `{setting.default_text()}` | {setting.doc} |")
    return "\n".join(rows) + "\n"


README_START, README_END = "<!-- settings:start -->\n", "<!-- settings:end -->"


def update_readme(path: str) -> bool:
    """Rewrite the configuration table between the README's settings markers; True when it changed."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    head, sep, rest = text.partition(README_START)
    _, sep_end, tail = rest.partition(README_END)
    if not sep or not sep_end:
        raise ValueError(f"{path} has no {README_START.strip()} ... {README_END} block to fill")
    updated = head + README_START + markdown_table() + README_END + tail
    if updated != text:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(updated)
    return updated != text
