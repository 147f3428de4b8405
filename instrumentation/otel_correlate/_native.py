"""The C helpers built from ``_otlp_native.c``, when they were built and are switched on.

``pip install`` compiles the extension when a compiler is there; without one, or
with ``OTEL_CORRELATE_NATIVE_ENCODER=false``, every caller uses its Python code,
which stays the definition of what the C code does (the tests compare the two).
"""

from __future__ import annotations

from typing import Any

from otel_correlate import _settings

__all__ = ["built", "helper"]

try:
    from otel_correlate import _otlp_native as built
except ImportError:  # pragma: no cover - an install without a compiler
    built = None  # type: ignore[assignment]


def helper(name: str) -> Any:
    """The C function ``name``, or ``None``: not built, switched off, or a stale build without it."""
    if built is None or not _settings.NATIVE_ENCODER.get():
        return None
    return getattr(built, name, None)
