"""The backup folder's format: a manifest of SHA-256 sums, hashed copies, and the check before a restore.

A backup folder ``otel-correlate-backup-<UTC timestamp>`` holds a data folder per
engine (``prometheus/``, ``loki/``, ``tempo/``, ``alertmanager/``), ``configs/``
and ``manifest.json``::

    {"format": "otel-correlate-backup/1", "created": "2026-02-08T02:00:00Z",
     "state_dir": "/root/.local/state/otel-correlate",
     "components": {"prometheus": "snapshot API", "loki": "flushed, then copied", ...},
     "files": [{"path": "prometheus/01J.../index", "sha256": "5daa...", "size": 1234}, ...]}

Example:
    >>> backup_name(dt.datetime(2026, 2, 8, 2, 0, tzinfo=dt.UTC))
    'otel-correlate-backup-20260208T020000Z'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

#: Folder name of every backup: this prefix and the UTC time it was started.
NAME_PREFIX = "otel-correlate-backup-"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"
FORMAT = "otel-correlate-backup/1"
#: Data folders of the state directory a backup holds, in the order they are taken.
COMPONENTS = ("prometheus", "loki", "tempo", "alertmanager")
#: Never copied: Prometheus' own snapshots and lock, Alertmanager's rendered config (it holds secrets
#: and ``stack up`` renders it again).
SKIPPED = {
    "prometheus": ("snapshots", "lock"),
    "alertmanager": ("alertmanager.yml",),
}
_CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup cannot be made, verified or restored; the message says why and what to do."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a backup: its path inside the backup folder, SHA-256 and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Backup:
    """A finished, verified backup folder."""

    path: Path
    created: dt.datetime
    files: tuple[ManifestEntry, ...]
    components: dict[str, str]

    @property
    def size_bytes(self) -> int:
        """Bytes of every file the manifest lists."""
        return sum(entry.size for entry in self.files)


def _utc(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)


def backup_name(created: dt.datetime) -> str:
    """The folder name of a backup started at ``created``.

    Example:
        >>> backup_name(dt.datetime(2026, 2, 8, 2, 0, tzinfo=dt.UTC))
        'otel-correlate-backup-20260208T020000Z'
    """
    return NAME_PREFIX + created.astimezone(dt.UTC).strftime(STAMP_FORMAT)


def created_from_name(name: str) -> dt.datetime | None:
    """The start time a backup folder's name carries, or None when it is not a backup's name."""
    if not name.startswith(NAME_PREFIX):
        return None
    try:
        return dt.datetime.strptime(name.removeprefix(NAME_PREFIX), STAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def copy_hashed(source: Path, target: Path) -> tuple[str, int]:
    """Copy one file and return the SHA-256 and size of what was written."""
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    shutil.copystat(source, target)
    return digest.hexdigest(), size


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(root: Path, skipped: Iterable[str] = ()) -> Iterator[Path]:
    """Regular files under ``root``, sorted; top-level names in ``skipped`` are left out."""
    skip = set(skipped)
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        found += [here / name for name in files if (here / name).is_file() and not (here / name).is_symlink()]
    yield from sorted(found, key=lambda path: path.as_posix())


def copy_tree(source: Path, target: Path, skipped: Iterable[str] = ()) -> list[tuple[Path, str, int]]:
    """Copy the regular files under ``source`` to ``target``; returns ``(target file, sha256, size)``.

    A file that disappears while the folder is copied (an engine compacted or
    rotated it) is left out: the copy holds what existed at the time it was read.
    """
    copied = []
    for path in _files_under(source, skipped):
        destination = target / path.relative_to(source)
        try:
            sha, size = copy_hashed(path, destination)
        except FileNotFoundError:
            destination.unlink(missing_ok=True)
            continue
        copied.append((destination, sha, size))
    return copied


def _safe_relative(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and path != MANIFEST


def read_manifest(path: Path) -> tuple[dict[str, Any], tuple[ManifestEntry, ...]]:
    """The manifest of the backup folder ``path`` and its file entries.

    Raises:
        BackupError: The folder or manifest is missing, unreadable or not ours.
    """
    if not path.is_dir():
        raise BackupError(
            f"{path} is not a folder. Pass a backup folder, e.g. `otel-correlate restore latest`."
        )
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise BackupError(
            f"{path} has no {MANIFEST}: it is a partial backup (interrupted while being written) or not a "
            "backup at all. Nothing was changed. Restore another backup."
        )
    try:
        manifest = json.loads(manifest_file.read_text())
        entries = tuple(ManifestEntry(f["path"], f["sha256"], int(f["size"])) for f in manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(
            f"{manifest_file} is damaged ({exc}). Nothing was changed. Restore another backup."
        ) from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{manifest_file} has format {manifest.get('format')!r}; this otel-correlate reads {FORMAT!r}."
        )
    return manifest, entries


def verify_backup(path: Path) -> Backup:
    """Check every file of a backup against its manifest; returns the backup when all match.

    Example:
        >>> verify_backup(Path("/backups/otel-correlate-backup-20260208T020000Z"))  # doctest: +SKIP

    Raises:
        BackupError: Files are missing, changed, or not in the manifest; the message
            lists them and says what to do. Nothing is changed.
    """
    manifest, entries = read_manifest(path)
    problems = []
    for entry in entries:
        if not _safe_relative(entry.path):
            problems.append(f"{entry.path}: a path outside the backup folder")
            continue
        file = path / entry.path
        if not file.is_file():
            problems.append(f"{entry.path}: missing")
        elif file.stat().st_size != entry.size:
            problems.append(f"{entry.path}: {file.stat().st_size} bytes, the manifest says {entry.size}")
        elif file_sha256(file) != entry.sha256:
            problems.append(f"{entry.path}: SHA-256 differs from the manifest")
    listed = {entry.path for entry in entries} | {MANIFEST}
    problems += [
        f"{p.relative_to(path).as_posix()}: not in the manifest"
        for p in _files_under(path)
        if p.relative_to(path).as_posix() not in listed
    ]
    if problems:
        shown = "\n  ".join(problems[:20]) + (
            f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        raise BackupError(
            f"backup {path} is damaged or incomplete; {len(problems)} problem(s):\n  {shown}\n"
            "Nothing was changed. Restore another backup (or fetch this one again from S3)."
        )
    created = created_from_name(path.name) or dt.datetime.strptime(
        manifest["created"], "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=dt.UTC)
    return Backup(path, created, entries, dict(manifest.get("components", {})))
