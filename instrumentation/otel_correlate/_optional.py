"""Optional integrations: import a framework lazily, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


def require_extra(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise an ImportError naming the extra that provides it.

    Example:
        >>> require_extra("json", extra="core", feature="JSON").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{feature} needs {module}: pip install 'otel-correlate[{extra}]'") from exc
