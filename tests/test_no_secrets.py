"""No secret is committed: every tracked file outside tests/ is scanned for credentials.

Secrets come from environment variables or files outside the repository (README,
"Operating it"); this keeps it so. Test fixtures under tests/ carry fake tokens on
purpose (the scrubber and the Telegram stub need them) and are not scanned.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Credential shapes: what a leaked secret looks like, whatever file it is in.
PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Slack webhook": re.compile(r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),
    "Telegram bot token": re.compile(r"\b[0-9]{8,10}:[A-Za-z0-9_-]{35}\b"),
    "PagerDuty routing key": re.compile(r"routing_key:\s*['\"]?[0-9a-f]{32}\b"),
    # A quoted literal of 12+ characters assigned to a password-like name (in code
    # the unquoted right-hand side is an expression, not a value).
    "literal password": re.compile(
        r"(?i)\b(password|passwd|secret|token|api[_-]?key)\w*['\"]?\s*[:=]\s*['\"](?!\$\{)[^'\"\s$]{12,}['\"]"
    ),
}
#: Configuration files, where a value needs no quotes: the literal-password rule without them.
#: ``RENDERED_FROM_SECRETS_<name>`` is the native Alertmanager's placeholder, replaced at start
#: from the secrets directory (``_stack.render_alertmanager_config``).
CONFIG_SUFFIXES = {".yml", ".yaml", ".env", ".ini", ".toml", ".conf", ".service", ".timer"}
UNQUOTED_LITERAL = re.compile(
    r"(?i)^\s*-?\s*\w*(password|passwd|secret|token|api[_-]?key)\w*\s*[:=]\s*(?!\$\{)(?!/)(?!RENDERED_FROM_SECRETS_)[A-Za-z0-9+_.-]{12,}\s*$"
)


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in listed.splitlines() if not name.startswith("tests/")]


def test_the_scanner_recognises_each_kind_of_secret() -> None:
    samples = {
        "private key": "-----BEGIN OPENSSH PRIVATE KEY-----",
        "AWS access key id": "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
        "GitHub token": "ghp_" + "a1" * 18,
        "Slack token": "xoxb-1234567890-abcdefghij",
        "Slack webhook": "https://hooks.slack.com/services/T0123/B0456/abcdefXYZ",
        "Telegram bot token": "123456789:" + "A" * 35,
        "PagerDuty routing key": "routing_key: " + "0f" * 16,
        "literal password": 'password: "hunter2hunter2"',
    }
    assert set(samples) == set(PATTERNS)
    for kind, sample in samples.items():
        assert PATTERNS[kind].search(sample), kind
    assert UNQUOTED_LITERAL.search("  bot_token: hunter2hunter2")
    assert not UNQUOTED_LITERAL.search("  - bot_token: RENDERED_FROM_SECRETS_telegram_bot_token")
    for harmless in ("password_file: /run/secrets/x", 'token: "${env:TOKEN}"', "token = context.attach(ctx)"):
        assert not PATTERNS["literal password"].search(harmless), harmless
        assert not UNQUOTED_LITERAL.search(harmless), harmless


@pytest.mark.parametrize("kind", sorted(PATTERNS))
def test_no_tracked_file_holds_a_secret(kind: str) -> None:
    found = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        unquoted = kind == "literal password" and path.suffix in CONFIG_SUFFIXES
        for number, line in enumerate(text.splitlines(), 1):
            if PATTERNS[kind].search(line) or (unquoted and UNQUOTED_LITERAL.search(line)):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, f"{kind} committed; move it to an environment variable or a secret file:\n" + "\n".join(
        found
    )
