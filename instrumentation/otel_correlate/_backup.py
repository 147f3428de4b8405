"""``otel-correlate backup`` and ``otel-correlate restore``: the stack's data in one checked folder.

A backup is one folder ``otel-correlate-backup-<UTC timestamp>`` under
``OTEL_CORRELATE_BACKUP_DIR`` holding Prometheus' TSDB (a snapshot taken through
its admin API while it runs), Loki's and Tempo's data (flushed through their
``/flush`` endpoints first), Alertmanager's silences and notification log, and
the config files the stack ran with, plus ``manifest.json``: the SHA-256 and
size of every file. The folder is written under a ``.partial`` name and renamed
only after the manifest is complete, so a folder without a manifest is never a
finished backup.

``restore`` checks every file against the manifest before it touches anything,
refuses a damaged or partial backup and a running stack, then moves the current
data aside (``<state>/replaced-by-restore-<timestamp>/``) and copies the backup in.

Example:
    $ otel-correlate backup
    backup /root/.local/share/otel-correlate/backups/otel-correlate-backup-20260208T020000Z (41.2 MB, 812 files, 3.1s)
    $ otel-correlate stack down
    $ otel-correlate restore latest
    $ otel-correlate stack up
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from otel_correlate import _settings
from otel_correlate._backup_files import (
    COMPONENTS,
    FORMAT,
    MANIFEST,
    SKIPPED,
    STAMP_FORMAT,
    Backup,
    BackupError,
    ManifestEntry,
    _files_under,
    _utc,
    backup_name,
    copy_hashed,
    copy_tree,
    created_from_name,
    verify_backup,
)


def _post(url: str, *, timeout: float = 60) -> bytes:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[:300]
        raise BackupError(f"POST {url} answered {exc.code}: {body}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise BackupError(f"POST {url} failed: {exc}") from exc


def prometheus_snapshot(prometheus_url: str, data_dir: Path) -> Path:
    """Ask a running Prometheus for a TSDB snapshot (head included); returns its folder.

    Raises:
        BackupError: The admin API is off or the snapshot failed; the message says how to fix it.
    """
    url = f"{prometheus_url}/api/v1/admin/tsdb/snapshot"
    try:
        answer = json.loads(_post(url))
    except BackupError as exc:
        raise BackupError(
            f"Prometheus refused the snapshot ({exc}). It needs --web.enable-admin-api, which "
            "`otel-correlate stack up` passes: restart an older stack with `otel-correlate stack down` "
            "and `otel-correlate stack up`, then run the backup again."
        ) from exc
    name = str(answer.get("data", {}).get("name", ""))
    snapshot = data_dir / "snapshots" / name
    if answer.get("status") != "success" or not name or not snapshot.is_dir():
        raise BackupError(f"Prometheus answered {answer} to {url}, but no snapshot folder {snapshot} exists.")
    return snapshot


def flush(engine_url: str) -> None:
    """Ask Loki or Tempo to write what its ingester holds in memory to disk (``POST /flush``)."""
    _post(f"{engine_url}/flush")


def _running_engines(state: Path) -> list[str]:
    from otel_correlate import _stack

    return [engine.name for engine in _stack.ENGINES if _stack._running_pid(state, engine) is not None]


def _config_files() -> list[tuple[Path, str]]:
    """``(file, path inside the backup)`` of every config the stack runs with."""
    from otel_correlate._procs import ROOT

    files = []
    for folder in ("collector", "stack", "alerts"):
        for path in _files_under(ROOT / folder):
            if path.suffix in (".yml", ".yaml"):
                files.append((path, f"configs/{path.relative_to(ROOT).as_posix()}"))
    return files


def create_backup(
    *,
    state: Path,
    backup_dir: Path,
    urls: dict[str, str],
    now: dt.datetime | None = None,
    progress: Callable[[str], None] = print,
) -> Backup:
    """Back up the stack of ``state`` into a new folder under ``backup_dir``.

    Engines that run are asked first: Prometheus for a snapshot, Loki and Tempo to
    flush. The data of a stopped engine is copied as it lies.

    Example:
        >>> create_backup(state=Path("~/.local/state/otel-correlate").expanduser(),
        ...               backup_dir=Path("/backups"), urls=_stack.endpoints())  # doctest: +SKIP
        Backup(path=PosixPath('/backups/otel-correlate-backup-20260208T020000Z'), ...)

    Raises:
        BackupError: A running engine refused its snapshot or flush, the state
            directory holds no data, or the backup folder exists already.
    """
    created = _utc(now)
    final = backup_dir / backup_name(created)
    partial = backup_dir / f".{final.name}.partial"
    if final.exists():
        raise BackupError(f"{final} exists already; wait a second and run the backup again.")
    if not any((state / c).is_dir() for c in COMPONENTS):
        raise BackupError(
            f"{state} holds none of {', '.join(COMPONENTS)}: nothing to back up. "
            "Is OTEL_CORRELATE_STATE_DIR the state directory of your stack?"
        )
    running = set(_running_engines(state))
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    entries: list[ManifestEntry] = []
    components: dict[str, str] = {}
    try:
        for component in COMPONENTS:
            source = state / component
            if not source.is_dir():
                continue
            copied: list[tuple[Path, str, int]]
            if component == "prometheus" and component in running:
                snapshot = prometheus_snapshot(urls["prometheus"], source)
                try:
                    copied = copy_tree(snapshot, partial / component)
                finally:
                    shutil.rmtree(snapshot, ignore_errors=True)
                components[component] = "snapshot API"
            else:
                if component in ("loki", "tempo") and component in running:
                    flush(urls[component])
                    components[component] = "flushed, then copied"
                else:
                    components[component] = "copied while running" if component in running else "copied"
                copied = copy_tree(source, partial / component, SKIPPED.get(component, ()))
            entries += [
                ManifestEntry(p.relative_to(partial).as_posix(), sha, size) for p, sha, size in copied
            ]
            progress(f"[backup] {component}: {len(copied)} files ({components[component]})")
        for source_file, inside in _config_files():
            sha, size = copy_hashed(source_file, partial / inside)
            entries.append(ManifestEntry(inside, sha, size))
        components["configs"] = "copied"
        manifest = {
            "format": FORMAT,
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "state_dir": str(state),
            "components": components,
            "files": [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in entries],
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Backup(final, created, tuple(entries), components)


def list_backups(backup_dir: Path) -> list[tuple[dt.datetime, Path]]:
    """Finished backup folders under ``backup_dir`` (named as backups, with a manifest), oldest first."""
    if not backup_dir.is_dir():
        return []
    found = []
    for child in backup_dir.iterdir():
        created = created_from_name(child.name)
        if created is not None and child.is_dir() and (child / MANIFEST).is_file():
            found.append((created, child))
    return sorted(found)


def latest_backup(backup_dir: Path) -> Path:
    """The newest finished backup under ``backup_dir``.

    Raises:
        BackupError: There is none.
    """
    backups = list_backups(backup_dir)
    if not backups:
        raise BackupError(
            f"no backup in {backup_dir} (OTEL_CORRELATE_BACKUP_DIR). Run `otel-correlate backup` first, "
            "or pass the backup folder."
        )
    return backups[-1][1]


def rotate_backups(backup_dir: Path, *, max_age_days: float, now: dt.datetime | None = None) -> list[Path]:
    """Delete backups older than ``max_age_days``, never the newest one; returns what was deleted.

    Leftover ``.partial`` folders of interrupted backups older than the same age go too.

    Example:
        >>> rotate_backups(Path("/backups"), max_age_days=30)  # doctest: +SKIP
        [PosixPath('/backups/otel-correlate-backup-20260101T020000Z')]
    """
    cutoff = _utc(now) - dt.timedelta(days=max_age_days)
    backups = list_backups(backup_dir)
    doomed = [path for created, path in backups[:-1] if created < cutoff]
    if backup_dir.is_dir():
        for child in backup_dir.iterdir():
            created = created_from_name(child.name.removeprefix(".").removesuffix(".partial"))
            if child.name.endswith(".partial") and created is not None and created < cutoff:
                doomed.append(child)
    for path in doomed:
        shutil.rmtree(path)
    return sorted(doomed)


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did: the backup, the state directory and where the replaced data went."""

    backup: Backup
    state: Path
    replaced: Path | None
    components: tuple[str, ...]


def restore_backup(path: Path, *, state: Path, now: dt.datetime | None = None) -> RestoreReport:
    """Verify a backup, then put its data into the stopped stack of ``state``.

    The data the backup replaces is moved to ``<state>/replaced-by-restore-<timestamp>/``
    (delete it once the restored stack looks right). Configs are not restored: the
    stack runs with the repository's; the backup's copies under ``configs/`` are
    there to compare.

    Example:
        >>> restore_backup(latest_backup(Path("/backups")), state=_stack.state_dir())  # doctest: +SKIP

    Raises:
        BackupError: The backup is damaged or partial, or an engine of ``state``
            still runs; nothing is changed in either case.
    """
    backup = verify_backup(path)
    running = _running_engines(state)
    if running:
        raise BackupError(
            f"the stack of {state} is running ({', '.join(running)}). Stop it with `otel-correlate stack down` "
            f"(OTEL_CORRELATE_STATE_DIR={state}) and run the restore again. Nothing was changed."
        )
    components = tuple(c for c in COMPONENTS if (path / c).is_dir())
    replaced = state / f"replaced-by-restore-{_utc(now).strftime(STAMP_FORMAT)}"
    moved = False
    state.mkdir(parents=True, exist_ok=True)
    for component in components:
        if (state / component).exists():
            replaced.mkdir(exist_ok=True)
            (state / component).rename(replaced / component)
            moved = True
    expected = {entry.path: entry.sha256 for entry in backup.files}
    for component in components:
        for target, sha, _size in copy_tree(path / component, state / component):
            inside = f"{component}/{target.relative_to(state / component).as_posix()}"
            if expected.get(inside) != sha:
                raise BackupError(
                    f"{inside} changed while it was restored (disk error?). The data before the restore is in "
                    f"{replaced}; move it back or restore again."
                )
    return RestoreReport(backup, state, replaced if moved else None, components)


def _human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"


def backup_dir() -> Path:
    """``OTEL_CORRELATE_BACKUP_DIR``, absolute."""
    return Path(os.path.expanduser(_settings.BACKUP_DIR.get())).resolve()


def add_cli(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``backup`` and ``restore`` to the ``otel-correlate`` command."""
    backup = commands.add_parser(
        "backup",
        help="back up Prometheus, Loki, Tempo, Alertmanager and the configs into one checked folder",
    )
    backup.add_argument("--dir", type=Path, help="where backups go (default OTEL_CORRELATE_BACKUP_DIR)")
    backup.add_argument(
        "--max-age-days",
        type=float,
        help="delete backups older than this, never the newest (default OTEL_CORRELATE_BACKUP_MAX_AGE_DAYS)",
    )
    backup.add_argument("--no-upload", action="store_true", help="skip the S3 upload even if a bucket is set")
    backup.add_argument("--no-metrics", action="store_true", help="do not push the backup metrics over OTLP")
    backup.set_defaults(handler=_cmd_backup)

    restore = commands.add_parser(
        "restore", help="verify a backup and restore it into the stopped stack of OTEL_CORRELATE_STATE_DIR"
    )
    restore.add_argument(
        "backup", help="a backup folder, or `latest` (the newest in OTEL_CORRELATE_BACKUP_DIR)"
    )
    restore.add_argument(
        "--dir", type=Path, help="where `latest` is looked for (default OTEL_CORRELATE_BACKUP_DIR)"
    )
    restore.add_argument(
        "--verify-only", action="store_true", help="check every checksum and stop; change nothing"
    )
    restore.set_defaults(handler=_cmd_restore)


def _cmd_backup(args: argparse.Namespace) -> int:
    from otel_correlate import _backup_offsite, _stack

    started = time.monotonic()
    target = args.dir.resolve() if args.dir else backup_dir()
    made = create_backup(state=_stack.state_dir(), backup_dir=target, urls=_stack.endpoints())
    duration = time.monotonic() - started
    print(
        f"backup {made.path} ({_human_size(made.size_bytes)}, {len(made.files)} files, {duration:.1f}s); "
        f"restore it with `otel-correlate restore {made.path}`"
    )
    max_age = args.max_age_days if args.max_age_days is not None else _settings.BACKUP_MAX_AGE_DAYS.get()
    for deleted in rotate_backups(target, max_age_days=max_age):
        print(f"rotation: deleted {deleted} (older than {max_age:g} days)")
    code = 0
    uploaded = True
    if _settings.BACKUP_S3_BUCKET.get() and not args.no_upload:
        try:
            where = _backup_offsite.upload(made)
            print(f"uploaded to {where}")
        except _backup_offsite.UploadError as exc:
            print(f"otel-correlate backup: {exc}", file=sys.stderr)
            uploaded, code = False, 2
    if not args.no_metrics:
        try:
            _backup_offsite.push_metrics(made, duration_seconds=duration, succeeded=uploaded)
        except _backup_offsite.MetricsPushError as exc:
            print(f"otel-correlate backup: warning: {exc}", file=sys.stderr)
    return code


def _cmd_restore(args: argparse.Namespace) -> int:
    from otel_correlate import _stack

    source = latest_backup(args.dir or backup_dir()) if args.backup == "latest" else Path(args.backup)
    if args.verify_only:
        checked = verify_backup(source.resolve())
        print(f"backup {checked.path}: all {len(checked.files)} files match the manifest")
        return 0
    report = restore_backup(source.resolve(), state=_stack.state_dir())
    print(f"restored {', '.join(report.components)} from {report.backup.path} into {report.state}")
    if report.replaced:
        print(f"the data it replaced is in {report.replaced}; delete it once the restored stack looks right")
    print("start the stack with `otel-correlate stack up`")
    return 0
