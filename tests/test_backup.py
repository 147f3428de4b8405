"""Backup, verify, restore and rotation on fabricated state directories; S3 against moto's real HTTP server."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from otel_correlate import _backup, _backup_offsite, _cli
from otel_correlate._backup import BackupError
from otel_correlate._procs import ROOT, free_port
from otel_correlate._receiver import OTLPReceiver

T0 = dt.datetime(2026, 2, 8, 2, 0, 0, tzinfo=dt.UTC)
DATA = {
    "prometheus/01HBLOCK/index": b"prom-index",
    "prometheus/01HBLOCK/chunks/000001": b"prom-chunk" * 100,
    "prometheus/wal/00000000": b"prom-wal",
    "loki/chunks/fake/abc": b"loki-chunk",
    "loki/tsdb-shipper-active/index": b"loki-index",
    "tempo/blocks/single-tenant/meta.json": b'{"tempo": true}',
    "tempo/wal/block": b"tempo-wal",
    "alertmanager/silences": b"silence",
    "alertmanager/nflog": b"nflog",
}
#: Never part of a backup: Prometheus' lock and old snapshots, Alertmanager's rendered config (secrets).
LEFT_OUT = {
    "prometheus/lock": b"",
    "prometheus/snapshots/old/index": b"old",
    "alertmanager/alertmanager.yml": b"bot_token: secret",
    "collector/queue": b"queue",
}


def _fill(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


FOLDERS = ("collector", "stack", "alerts")


def _configs() -> dict[str, bytes]:
    files = {
        f"configs/{p.relative_to(ROOT).as_posix()}": p.read_bytes()
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and p.suffix in (".yml", ".yaml")
    }
    return {name: files[name] for name in sorted(files, key=lambda n: (FOLDERS.index(n.split("/")[1]), n))}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    _fill(root, DATA | LEFT_OUT)
    return root


@pytest.fixture
def made(state: Path, tmp_path: Path) -> _backup.Backup:
    return _backup.create_backup(
        state=state, backup_dir=tmp_path / "backups", urls={}, now=T0, progress=lambda _line: None
    )


def test_backup_of_a_stopped_stack_holds_data_configs_and_a_complete_manifest(
    made: _backup.Backup, state: Path, tmp_path: Path
) -> None:
    assert made.path == tmp_path / "backups" / "otel-correlate-backup-20260208T020000Z"
    expected = DATA | _configs()
    assert _tree(made.path) == expected | {"manifest.json": (made.path / "manifest.json").read_bytes()}
    manifest = json.loads((made.path / "manifest.json").read_text())
    assert manifest == {
        "format": "otel-correlate-backup/1",
        "created": "2026-02-08T02:00:00Z",
        "state_dir": str(state),
        "components": {
            "prometheus": "copied",
            "loki": "copied",
            "tempo": "copied",
            "alertmanager": "copied",
            "configs": "copied",
        },
        "files": [
            {"path": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
            for name, content in sorted(DATA.items(), key=lambda kv: (_component_rank(kv[0]), kv[0]))
        ]
        + [
            {"path": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
            for name, content in _configs().items()
        ],
    }
    assert made.size_bytes == sum(len(c) for c in expected.values())
    assert [p.name for p in (tmp_path / "backups").iterdir()] == [made.path.name]  # no .partial left


def _component_rank(path: str) -> int:
    return _backup.COMPONENTS.index(path.split("/")[0])


def test_restore_puts_the_backup_back_and_keeps_the_replaced_data(made: _backup.Backup, state: Path) -> None:
    before = _tree(state)
    (state / "loki" / "chunks" / "fake" / "abc").write_bytes(b"written after the backup")
    (state / "tempo" / "wal" / "newer").write_bytes(b"newer")

    report = _backup.restore_backup(made.path, state=state, now=T0 + dt.timedelta(hours=1))

    assert report.components == ("prometheus", "loki", "tempo", "alertmanager")
    assert report.replaced == state / "replaced-by-restore-20260208T030000Z"
    restored = {k: v for k, v in _tree(state).items() if not k.startswith("replaced-by-restore-")}
    assert restored == DATA | {"collector/queue": b"queue"}
    replaced = _tree(report.replaced)
    assert replaced["loki/chunks/fake/abc"] == b"written after the backup"
    assert replaced["tempo/wal/newer"] == b"newer"
    assert replaced["alertmanager/alertmanager.yml"] == before["alertmanager/alertmanager.yml"]


def _refused(made: _backup.Backup, state: Path) -> str:
    before = _tree(state)
    with pytest.raises(BackupError) as caught:
        _backup.restore_backup(made.path, state=state)
    assert _tree(state) == before, "a refused restore must not touch the state directory"
    return str(caught.value)


def test_restore_refuses_a_damaged_backup_naming_each_file_and_touches_nothing(
    made: _backup.Backup, state: Path
) -> None:
    (made.path / "loki/chunks/fake/abc").write_bytes(b"loki-chunX")  # same size, other bytes
    (made.path / "tempo/wal/block").write_bytes(b"short")
    (made.path / "prometheus/01HBLOCK/index").unlink()
    (made.path / "prometheus/smuggled").write_bytes(b"?")

    assert _refused(made, state) == (
        f"backup {made.path} is damaged or incomplete; 4 problem(s):\n"
        "  prometheus/01HBLOCK/index: missing\n"
        "  loki/chunks/fake/abc: SHA-256 differs from the manifest\n"
        "  tempo/wal/block: 5 bytes, the manifest says 9\n"
        "  prometheus/smuggled: not in the manifest\n"
        "Nothing was changed. Restore another backup (or fetch this one again from S3)."
    )


def test_restore_refuses_a_partial_backup_without_manifest(made: _backup.Backup, state: Path) -> None:
    (made.path / "manifest.json").unlink()
    assert _refused(made, state) == (
        f"{made.path} has no manifest.json: it is a partial backup (interrupted while being written) or not "
        "a backup at all. Nothing was changed. Restore another backup."
    )


def test_restore_refuses_a_damaged_manifest(made: _backup.Backup, state: Path) -> None:
    (made.path / "manifest.json").write_text('{"format": "otel-correlate-backup/1", "files": [')
    assert _refused(made, state).startswith(f"{made.path / 'manifest.json'} is damaged (")


def test_restore_refuses_while_the_stack_of_the_state_dir_runs(made: _backup.Backup, state: Path) -> None:
    (state / "pids").mkdir()
    (state / "pids" / "loki.pid").write_text(f"{os.getpid()}\n")  # a live process
    (state / "pids" / "tempo.pid").write_text("999999999\n")  # a stale pid file: not running
    assert _refused(made, state) == (
        f"the stack of {state} is running (loki). Stop it with `otel-correlate stack down` "
        f"(OTEL_CORRELATE_STATE_DIR={state}) and run the restore again. Nothing was changed."
    )


def test_backup_refuses_a_state_dir_without_data(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="holds none of prometheus, loki, tempo, alertmanager"):
        _backup.create_backup(state=tmp_path / "empty", backup_dir=tmp_path / "b", urls={}, now=T0)
    assert not (tmp_path / "b").exists() or list((tmp_path / "b").iterdir()) == []


class _FakeEngines:
    """Prometheus' snapshot API and Loki's/Tempo's /flush, recording the calls (a unit fake)."""

    def __init__(self, prometheus_data: Path, *, admin_api: bool = True) -> None:
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake.calls.append(f"{self.server.server_port - fake.base}:{self.path}")  # type: ignore[attr-defined]
                if self.path == "/api/v1/admin/tsdb/snapshot":
                    if not admin_api:
                        body = b'{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}'
                        self.send_response(503)
                    else:
                        _fill(
                            prometheus_data / "snapshots" / "20260208T020000Z-1", {"01HSNAP/index": b"snap"}
                        )
                        body = b'{"status":"success","data":{"name":"20260208T020000Z-1"}}'
                        self.send_response(200)
                else:
                    body = b""
                    self.send_response(204)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.base = 0
        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(3)]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        prom, loki, tempo = (f"http://127.0.0.1:{s.server_port}" for s in self.servers)
        self.urls = {"prometheus": prom, "loki": loki, "tempo": tempo}
        self.names = {
            s.server_port: n for s, n in zip(self.servers, ("prometheus", "loki", "tempo"), strict=True)
        }

    def named_calls(self) -> list[str]:
        return [f"{self.names[int(c.split(':')[0])]} {c.split(':', 1)[1]}" for c in self.calls]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def running_state(state: Path) -> Iterator[Path]:
    (state / "pids").mkdir()
    for name in ("prometheus", "loki", "tempo", "alertmanager", "collector"):
        (state / "pids" / f"{name}.pid").write_text(f"{os.getpid()}\n")
    yield state


def test_backup_of_a_running_stack_snapshots_prometheus_and_flushes_loki_and_tempo_first(
    running_state: Path, tmp_path: Path
) -> None:
    engines = _FakeEngines(running_state / "prometheus")
    try:
        made = _backup.create_backup(
            state=running_state,
            backup_dir=tmp_path / "b",
            urls=engines.urls,
            now=T0,
            progress=lambda _l: None,
        )
    finally:
        engines.close()
    assert engines.named_calls() == [
        "prometheus /api/v1/admin/tsdb/snapshot",
        "loki /flush",
        "tempo /flush",
    ]
    assert made.components == {
        "prometheus": "snapshot API",
        "loki": "flushed, then copied",
        "tempo": "flushed, then copied",
        "alertmanager": "copied while running",
        "configs": "copied",
    }
    backed_up = _tree(made.path)
    assert {k: v for k, v in backed_up.items() if k.startswith("prometheus/")} == {
        "prometheus/01HSNAP/index": b"snap"
    }
    assert not (running_state / "prometheus" / "snapshots" / "20260208T020000Z-1").exists()  # cleaned up
    _backup.verify_backup(made.path)


def test_backup_says_how_to_enable_the_admin_api_when_prometheus_refuses_the_snapshot(
    running_state: Path, tmp_path: Path
) -> None:
    engines = _FakeEngines(running_state / "prometheus", admin_api=False)
    try:
        with pytest.raises(BackupError) as caught:
            _backup.create_backup(state=running_state, backup_dir=tmp_path / "b", urls=engines.urls, now=T0)
    finally:
        engines.close()
    assert str(caught.value) == (
        f"Prometheus refused the snapshot (POST {engines.urls['prometheus']}/api/v1/admin/tsdb/snapshot answered "
        '503: {"status":"error","errorType":"unavailable","error":"admin APIs disabled"}). It needs '
        "--web.enable-admin-api, which `otel-correlate stack up` passes: restart an older stack with "
        "`otel-correlate stack down` and `otel-correlate stack up`, then run the backup again."
    )
    assert list((tmp_path / "b").iterdir()) == []  # the partial folder is removed


def _fake_backup(root: Path, created: dt.datetime) -> Path:
    path = root / _backup.backup_name(created)
    _fill(path, {"manifest.json": b"{}"})
    return path


def test_rotation_deletes_backups_past_the_age_but_never_the_newest(tmp_path: Path) -> None:
    old = [_fake_backup(tmp_path, T0 - dt.timedelta(days=d)) for d in (45, 31)]
    kept = [_fake_backup(tmp_path, T0 - dt.timedelta(days=d)) for d in (29, 1)]
    stale_partial = tmp_path / f".{_backup.backup_name(T0 - dt.timedelta(days=40))}.partial"
    stale_partial.mkdir()
    (tmp_path / "not-a-backup").mkdir()

    assert _backup.rotate_backups(tmp_path, max_age_days=30, now=T0) == sorted([*old, stale_partial])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in kept), "not-a-backup"])


def test_rotation_keeps_the_newest_backup_even_when_it_is_past_the_age(tmp_path: Path) -> None:
    older, newest = (_fake_backup(tmp_path, T0 - dt.timedelta(days=d)) for d in (90, 60))
    assert _backup.rotate_backups(tmp_path, max_age_days=30, now=T0) == [older]
    assert [p.name for p in tmp_path.iterdir()] == [newest.name]


def test_cli_backup_then_verify_and_restore_latest(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_CORRELATE_STATE_DIR", str(state))
    monkeypatch.setenv("OTEL_CORRELATE_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.delenv("OTEL_CORRELATE_BACKUP_S3_BUCKET", raising=False)
    assert _cli.main(["backup", "--no-metrics"]) == 0
    [made] = (tmp_path / "backups").iterdir()
    out = capsys.readouterr().out
    assert f"restore it with `otel-correlate restore {made}`" in out
    assert _cli.main(["restore", "--verify-only", "latest"]) == 0
    assert (
        capsys.readouterr().out
        == f"backup {made}: all {len(DATA) + len(_configs())} files match the manifest\n"
    )
    (made / "tempo/wal/block").write_bytes(b"broken!!!")
    assert _cli.main(["restore", "latest"]) == 1
    assert "tempo/wal/block: SHA-256 differs from the manifest" in capsys.readouterr().err


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("OTEL_CORRELATE_BACKUP_S3_BUCKET", "backups")
    monkeypatch.setenv("OTEL_CORRELATE_BACKUP_S3_PREFIX", "team/otel")


def test_upload_puts_every_file_and_the_manifest_into_the_bucket(
    made: _backup.Backup, moto_server: str, s3_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("OTEL_CORRELATE_BACKUP_S3_ENDPOINT", moto_server)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="backups")

    where = _backup_offsite.upload(made)

    prefix = f"team/otel/{made.path.name}/"
    assert where == f"s3://backups/{prefix}"
    listed = s3.list_objects_v2(Bucket="backups", Prefix=prefix)["Contents"]
    stored = {
        o["Key"].removeprefix(prefix): s3.get_object(Bucket="backups", Key=o["Key"])["Body"].read()
        for o in listed
    }
    assert stored == _tree(made.path)


def test_failed_upload_keeps_the_local_backup_and_the_command_exits_non_zero(
    state: Path,
    tmp_path: Path,
    s3_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OTEL_CORRELATE_BACKUP_S3_ENDPOINT", closed)
    monkeypatch.setenv("OTEL_CORRELATE_STATE_DIR", str(state))
    monkeypatch.setenv("OTEL_CORRELATE_BACKUP_DIR", str(tmp_path / "backups"))

    assert _cli.main(["backup", "--no-metrics"]) == 2

    [made] = (tmp_path / "backups").iterdir()
    _backup.verify_backup(made)
    err = capsys.readouterr().err
    assert err.startswith(
        f"otel-correlate backup: upload of {made.name} to s3://backups/team/otel/{made.name}/ "
    )
    assert f"The local backup {made} is kept." in err


def test_metrics_carry_duration_size_and_the_success_timestamp(made: _backup.Backup) -> None:
    with OTLPReceiver() as receiver:
        _backup_offsite.push_metrics(made, duration_seconds=3.5, succeeded=True, endpoint=receiver.endpoint)
    resource = {"service.name": "otel-correlate-backup"}
    points = sorted(
        ((m.name, m.unit, m.service, m.attributes, m.value) for m in receiver.metrics), key=lambda p: p[0]
    )
    assert points == [
        ("otel_correlate.backup.duration", "s", "otel-correlate-backup", {}, 3.5),
        ("otel_correlate.backup.last_success_timestamp", "s", "otel-correlate-backup", {}, T0.timestamp()),
        ("otel_correlate.backup.size", "By", "otel-correlate-backup", {}, float(made.size_bytes)),
    ]
    assert all(resource.items() <= m.resource.items() for m in receiver.metrics)


def test_a_failed_backup_sends_no_success_timestamp(made: _backup.Backup) -> None:
    with OTLPReceiver() as receiver:
        _backup_offsite.push_metrics(made, duration_seconds=1.0, succeeded=False, endpoint=receiver.endpoint)
    assert sorted(m.name for m in receiver.metrics) == [
        "otel_correlate.backup.duration",
        "otel_correlate.backup.size",
    ]


def test_metrics_push_to_a_closed_port_says_what_to_do(made: _backup.Backup) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(_backup_offsite.MetricsPushError) as caught:
        _backup_offsite.push_metrics(made, duration_seconds=1.0, succeeded=True, endpoint=closed, timeout=2)
    assert str(caught.value).startswith(f"the backup metrics were not accepted by {closed}/v1/metrics; ")
