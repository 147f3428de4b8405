"""What counts as personal data or a secret in telemetry, and how it is masked.

:class:`Scrubber` holds the two rules; ``_scrub`` applies it to the spans, log
records and metrics of each export.

- **Sensitive keys** (``DEFAULT_SENSITIVE_KEYS`` plus
  ``OTEL_CORRELATE_SENSITIVE_KEYS``): the whole value of such an attribute is
  replaced. A key is compared on its last dotted segment, case-insensitively,
  with ``_`` and ``-`` ignored (``http.request.header.x-api-key`` -> ``xapikey``,
  ``customerEmail`` -> ``customeremail``); an entry may use ``*`` as a wildcard
  (``*token`` matches ``token``, ``accesstoken``, ``csrftoken``). Booleans stay.
- **Sensitive values** (``OTEL_CORRELATE_SENSITIVE_VALUES``) are found inside any
  string under any other key: e-mail addresses, phone numbers (``+`` and an
  international number, or North-American ``(555) 123-4567`` / ``555-123-4567``),
  payment card numbers (13-19 digits that pass the Luhn check and start like a
  card: 3-6, or 2221-2720; so order ids and epoch timestamps stay), bearer tokens
  and JWTs, and ``password=...``-style pairs. Numbers and booleans are not
  strings and stay as they are.

Masked text becomes a marker naming the kind, never any part of the value:
``[REDACTED:email]``, ``[REDACTED:phone]``, ``[REDACTED:card]``,
``[REDACTED:token]``, ``password=[REDACTED:secret]``, and for a sensitive key
the entry it matched (``[REDACTED:email]``, ``[REDACTED:authorization]``).

Business keys (``OTEL_CORRELATE_KEYS``, ``orderId`` and ``requestId`` by default)
and trace/span ids are never rewritten. Verdicts on keys and repeated strings
are cached in bounded dicts, and a string is searched only by the patterns a
cheap test says can match ('@', ``eyJ``, ``bearer``, a key word, eight digits),
combined into one regular expression per set of patterns. Nothing changed means
the same object comes back.

Example:
    >>> scrubber = Scrubber()
    >>> scrubber.text("mail jane.doe@example.com, card 4111 1111 1111 1111")
    'mail [REDACTED:email], card [REDACTED:card]'
    >>> scrubber.attributes({"orderId": "4111111111111111", "user.email": "x", "n": 4111111111111111})
    {'orderId': '4111111111111111', 'user.email': '[REDACTED:email]', 'n': 4111111111111111}
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.trace import Status

from otel_correlate import _native, _settings

#: Keys whose values are masked whole (see the module docstring for the matching rule).
DEFAULT_SENSITIVE_KEYS: tuple[str, ...] = (
    "*password",
    "*passwd",
    "pwd",
    "*secret",
    "*token",
    "*apikey",
    "*privatekey",
    "*authorization",
    "*cookie",
    "*email",
    "*emailaddress",
    "*phone",
    "*phonenumber",
    "mobile",
    "*cardnumber",
    "pan",
    "cvv",
    "cvc",
    "ssn",
    "iban",
)
#: Kinds of values found inside strings (OTEL_CORRELATE_SENSITIVE_VALUES).
VALUE_KINDS: tuple[str, ...] = ("token", "secret", "email", "card", "phone")
#: Keys never rewritten besides the business keys: trace and span ids, dotted aliases.
ID_KEYS: frozenset[str] = frozenset({"trace_id", "span_id", "order.id", "request.id"})

# The parts of the value patterns. Each starts with a literal or a character class,
# so that alone it is searched quickly, and each is tried only when a cheap test
# says it can match (Scrubber._pattern_for). Named groups tell _replace what matched.
_PARTS: dict[str, str] = {
    # JWTs: three base64url parts, the first a JSON header.
    "jwt": r"(?P<jwt>eyJ(?<![\w-]eyJ)[\w-]{4,}\.[\w-]{4,}\.[\w-]*)",
    # Bearer credentials; the word "Bearer" stays.
    "bearer": r"(?P<bearer>[Bb](?<!\w[Bb])(?i:earer)\s+)(?P<bearer_value>[\w.~+/=-]{8,})",
    # password=..., "api_key": "...", token: ...; a bearer value after it is left to "bearer".
    "secret": (
        r"(?P<pair>(?<![a-zA-Z0-9])(?i:(?:passw(?:or)?d|pwd|secret|token)(?:[_-]?key)?|api[_-]?key)"
        r"[\"']?\s*[=:]\s*[\"']?)(?!(?i:bearer)\s)(?P<pair_value>[^\s\"',;&]+)"
    ),
    "email": r"(?P<email>[\w.%+-](?<![\w.%+-][\w.%+-])[\w.%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})",
    # +<country> <number>: 8-15 digits in all, checked in _replace.
    "phone_intl": r"(?P<phone>\+(?<![\w+]\+)[0-9]{1,3}(?:[ .-]?\([0-9]{1,4}\))?(?:[ .-]?[0-9]{1,5}){1,5}+(?!\w))",
    # (555) 123-4567
    "phone_paren": r"(?P<phone_paren>\((?<!\w\()[0-9]{3}\)\s?[0-9]{3}[.-][0-9]{4}(?!\w))",
}
# Runs of digits: cards (13-19 digits, contiguous or in groups of 3-6 such as
# 4111 1111 1111 1111 or 3782 822463 10005; Luhn and the first digits checked in
# _replace) and North-American numbers (555-123-4567, 555.123.4567).
_DIGIT_RUNS = {
    "card": r"(?P<card>[0-9]{12,18}(?!\w)|[0-9]{3}(?:[ -][0-9]{3,6}){2,4}(?!\w))",
    "phone": r"(?P<phone_dash>[0-9]{2}[.-][0-9]{3}[.-][0-9]{4}(?!\w))",
}
_PART_KINDS = {
    "jwt": "token",
    "bearer": "token",
    "secret": "secret",
    "email": "email",
    "phone_intl": "phone",
    "phone_paren": "phone",
}
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key")
_DIGITS = b"0123456789"
_PHONE_GROUPS = re.compile(r"[^0-9]*([0-9]+)")  # the digit groups of a phone number, with what precedes each


def _count_digits(text: str) -> int:
    return len(text) - len(text.encode().translate(None, _DIGITS))


_CACHED_TEXT_MAX = 1024
_KEEP = "\x00keep"  # key verdict: never rewrite
_SCAN = ""  # key verdict: search the value for sensitive text
_MISS = object()
_SETTLED = _native.helper("settled")
_BATCH_SETTLED = _native.helper("batch_settled")


def marker(kind: str) -> str:
    """The text a masked value becomes: ``[REDACTED:<kind>]``."""
    return f"[REDACTED:{kind}]"


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn checksum of payment card numbers.

    Example:
        >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
        (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _looks_like_card(digits: str) -> bool:
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456":
        return False
    if digits[0] == "2" and not 2221 <= int(digits[:4]) <= 2720:  # Mastercard's 2-series only
        return False
    return luhn_valid(digits)


def _normalise_key(key: str) -> str:
    return key.rpartition(".")[2].lower().replace("_", "").replace("-", "")


class Scrubber:
    """Masks sensitive keys and values in attributes, text and structured bodies (see the module docstring).

    Thread-safe for the export threads: its caches are plain dicts, bounded by
    clearing them when full.

    Args:
        sensitive_keys: Key entries masked whole (``*`` wildcards, see the module docstring).
        value_kinds: Kinds of values searched in strings, a subset of :data:`VALUE_KINDS`.
        keep_keys: Keys never rewritten (business keys and ids).
        cache_size: Entries each verdict cache holds before it is cleared.

    Example:
        >>> Scrubber(value_kinds=["email"]).text("call +44 20 7946 0958 or a@b.io")
        'call +44 20 7946 0958 or [REDACTED:email]'
    """

    def __init__(
        self,
        *,
        sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS,
        value_kinds: Iterable[str] = VALUE_KINDS,
        keep_keys: Iterable[str] = ("orderId", "requestId", *ID_KEYS),
        cache_size: int = 4096,
    ) -> None:
        kinds = set(value_kinds)
        unknown = kinds - set(VALUE_KINDS)
        if unknown:
            raise ValueError(f"unknown value kinds {sorted(unknown)}; known: {', '.join(VALUE_KINDS)}")
        self._key_patterns = [
            (re.compile(fnmatch.translate(_normalise_key(entry))), entry.strip("*").lower() or "key")
            for entry in sensitive_keys
            if entry.strip()
        ]
        self._keep = frozenset(keep_keys)
        self._parts = {name: pattern for name, pattern in _PARTS.items() if _PART_KINDS[name] in kinds}
        runs = [pattern for kind, pattern in _DIGIT_RUNS.items() if kind in kinds]
        if runs:  # one run of digits, whatever it turns out to be
            self._parts["digits"] = "[0-9](?<!\\w[0-9])(?:" + "|".join(runs) + ")"
        self._digits = "card" in kinds or "phone" in kinds
        self._combined: dict[tuple[str, ...], re.Pattern[str]] = {}
        self._cache_size = cache_size
        self._keys: dict[str, str] = {}
        self._texts: dict[str, str | None] = {}

    @classmethod
    def from_settings(cls) -> Scrubber | None:
        """The scrubber ``OTEL_CORRELATE_SCRUB``, ``OTEL_CORRELATE_SENSITIVE_KEYS`` and
        ``OTEL_CORRELATE_SENSITIVE_VALUES`` describe; ``None`` when scrubbing is off."""
        if not _settings.SCRUB.get():
            return None
        return cls(
            sensitive_keys=(*DEFAULT_SENSITIVE_KEYS, *_settings.SENSITIVE_KEYS.get()),
            value_kinds=_settings.SENSITIVE_VALUES.get(),
            keep_keys=(*_settings.CORRELATION_KEYS.get(), *ID_KEYS),
        )

    # --- verdicts -----------------------------------------------------------------

    def key_kind(self, key: str) -> str | None:
        """The kind a sensitive key is masked as, or ``None`` for an ordinary or kept key."""
        verdict = self._key_verdict(key)
        return verdict if verdict not in (_KEEP, _SCAN) else None

    def _key_verdict(self, key: str) -> str:
        verdict = self._keys.get(key)
        if verdict is None:
            verdict = _SCAN
            if key in self._keep:
                verdict = _KEEP
            else:
                normal = _normalise_key(key)
                for pattern, kind in self._key_patterns:
                    if pattern.match(normal):
                        verdict = kind
                        break
            if len(self._keys) >= self._cache_size:
                self._keys.clear()
            self._keys[key] = verdict
        return verdict

    def _pattern_for(self, text: str) -> re.Pattern[str] | None:
        """One pattern of the parts a cheap test says can match ``text``; ``None`` when none can."""
        parts = self._parts
        found = []
        if "eyJ" in text and "jwt" in parts:
            found.append("jwt")
        if ("earer" in text or "EARER" in text) and "bearer" in parts:
            found.append("bearer")
        if ("=" in text or ":" in text) and "secret" in parts:
            lower = text.lower()
            for word in _SECRET_WORDS:
                if word in lower:
                    found.append("secret")
                    break
        if "@" in text and "email" in parts:
            found.append("email")
        if self._digits and _count_digits(text) >= 8:
            if "digits" in parts:
                found.append("digits")
            if "+" in text and "phone_intl" in parts:
                found.append("phone_intl")
            if "(" in text and "phone_paren" in parts:
                found.append("phone_paren")
        if not found:
            return None
        key = tuple(found)
        pattern = self._combined.get(key)
        if pattern is None:
            pattern = self._combined[key] = re.compile("|".join(parts[name] for name in key))
        return pattern

    def _replace(self, match: re.Match[str]) -> tuple[str, int] | None:
        """The marker for ``match`` and where the masked text ends; ``None`` when it is not sensitive."""
        group = match.lastgroup
        found = match.group()
        end = match.end()
        if group == "card":
            card = found.replace(" ", "").replace("-", "")
            return (marker("card"), end) if _looks_like_card(card) else None
        if group == "phone":
            # "+44 20 7946 0958 4111 1111 ..." runs on into the next number: the phone
            # is the longest run of its groups that has at most 15 digits.
            count = length = 0
            for part in _PHONE_GROUPS.finditer(found):
                digits = count + len(part.group(1))
                if digits > 15:
                    break
                count, length = digits, part.end()
            return (marker("phone"), match.start() + length) if count >= 8 else None
        if group in ("phone_dash", "phone_paren"):
            return marker("phone"), end
        if group == "email":
            return marker("email"), end
        if group == "jwt":
            return marker("token"), end
        if group == "bearer_value":
            return match.group("bearer") + marker("token"), end
        if group == "pair_value":
            return match.group("pair") + marker("secret"), end
        return None  # pragma: no cover - every group is handled above

    def _substitute(self, pattern: re.Pattern[str], text: str) -> str | None:
        """``text`` with what ``pattern`` finds masked; ``None`` when nothing was.

        Like ``pattern.sub``, except that a candidate may end up shorter than its
        match (a phone number running into the next number), and the search goes
        on right after what was masked.
        """
        pieces: list[str] = []
        last = position = 0
        search = pattern.search
        while (match := search(text, position)) is not None:
            replaced = self._replace(match)
            if replaced is None:
                position = match.end()
                continue
            replacement, end = replaced
            pieces.append(text[last : match.start()])
            pieces.append(replacement)
            last = position = end
        if not pieces:
            return None
        pieces.append(text[last:])
        return "".join(pieces)

    # --- text and values ------------------------------------------------------------

    def text(self, text: str) -> str:
        """``text`` with every sensitive value in it masked (the same object when none is)."""
        hit = self._texts.get(text, _MISS)
        if hit is _MISS:
            hit = self._scan(text)
        return text if hit is None else hit  # type: ignore[return-value]

    def _scan(self, text: str) -> str | None:
        result = None
        pattern = self._pattern_for(text)
        if pattern is not None:
            result = self._substitute(pattern, text)
        if len(text) <= _CACHED_TEXT_MAX:
            if len(self._texts) >= self._cache_size:
                self._texts.clear()
            self._texts[text] = result
        return result

    def value(self, key: str, value: Any) -> Any:
        """``value`` of attribute ``key`` with sensitive data masked (the same object when none is)."""
        verdict = self._key_verdict(key)
        if verdict is _KEEP:
            return value
        if verdict:
            return self._mask_whole(value, verdict)
        return self._scan_value(value)

    def _mask_whole(self, value: Any, kind: str) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, Mapping):
            return {k: self._mask_whole(v, kind) for k, v in value.items()}
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            return tuple(self._mask_whole(v, kind) for v in value)
        return marker(kind)

    def _scan_value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is tuple or kind is list:
            items = [self._scan_value(v) for v in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return tuple(items) if kind is tuple else items
        if isinstance(value, Mapping):
            return self.attributes(value)
        return value  # numbers, booleans, bytes, None

    def attributes(self, attributes: Mapping[str, Any] | None) -> Any:
        """``attributes`` with sensitive data masked: the same mapping when nothing changed,
        else a new dict (a ``BoundedAttributes`` keeping the dropped count when there was one)."""
        if not attributes:
            return attributes
        # The SDK's BoundedAttributes iterates through a lock and __getitem__ per key;
        # its plain dict is four times faster to walk, and it is only read here.
        items = attributes if type(attributes) is dict else getattr(attributes, "_dict", attributes)
        keys, texts = self._keys, self._texts
        # the loop below in C, as far as no entry changes (the usual case: nothing is masked)
        settled = _SETTLED is not None and type(items) is dict
        if settled and _SETTLED(items, keys, texts, _KEEP, self._key_verdict, self._scan):
            return attributes
        changed: dict[str, Any] | None = None
        for key, value in items.items():
            verdict = keys.get(key)
            if verdict is None:
                verdict = self._key_verdict(key)
            if verdict is _KEEP:
                continue
            kind = type(value)
            if verdict:
                new = self._mask_whole(value, verdict)
            elif kind is str:
                hit = texts.get(value, _MISS)
                if hit is _MISS:
                    hit = self._scan(value)
                if hit is None:
                    continue
                new = hit
            elif kind is int or kind is float or kind is bool:
                continue
            else:
                new = self._scan_value(value)
            if new is value:
                continue
            if changed is None:
                changed = dict(items)
            changed[key] = new
        if changed is None:
            return attributes
        dropped = getattr(attributes, "dropped", 0)
        if dropped:
            bounded = BoundedAttributes(attributes=changed, immutable=True)
            bounded.dropped = dropped
            return bounded
        return changed

    def leaves_batch(self, batch: Sequence[Any], span_type: type, queued_type: type) -> bool:
        """True when every item of an export batch would come back as it is: nothing to mask.

        The check in C (``batch_settled``) of what ``_scrub.span`` and ``_scrub.log_record``
        check for an ended span of ``span_type`` and a queued log record of ``queued_type``,
        with the same caches; ``False`` when the extension is not built, for any other item,
        and as soon as one item would change: the caller then goes through the items.
        """
        if _BATCH_SETTLED is None:
            return False
        return bool(
            _BATCH_SETTLED(
                batch,
                self._keys,
                self._texts,
                _KEEP,
                self._key_verdict,
                self._scan,
                span_type,
                queued_type,
                Status,
            )
        )

    def body(self, body: Any) -> Any:
        """A log body (a string, a mapping or a sequence of them) with sensitive data masked."""
        if type(body) is str:  # nearly every body; the ABC check below is the slow part of a hit
            return self.text(body)
        if isinstance(body, Mapping):
            return self.attributes(body)
        return self._scan_value(body)
