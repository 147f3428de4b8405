"""What a backup sends away: its files to S3-compatible storage, its metrics over OTLP.

The upload needs boto3 (``pip install 'otel-correlate[s3]'``) and reads the
bucket, endpoint and prefix from ``OTEL_CORRELATE_BACKUP_S3_*`` and the
credentials from the standard ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
(and ``AWS_DEFAULT_REGION``; ``us-east-1`` when unset, which MinIO accepts).
Files go first, the manifest last, so a listing with a manifest is complete.

The metrics go to the stack's collector with a one-off MeterProvider, so
Prometheus gets (by remote write, units as suffixes):
``otel_correlate_backup_last_success_timestamp_seconds`` (only when the backup
and its upload succeeded: the BackupMissing alert watches it),
``otel_correlate_backup_duration_seconds`` and ``otel_correlate_backup_size_bytes``,
all with ``job="otel-correlate-backup"``.

Example:
    $ OTEL_CORRELATE_BACKUP_S3_BUCKET=backups OTEL_CORRELATE_BACKUP_S3_ENDPOINT=http://127.0.0.1:9000 \\
        AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... otel-correlate backup
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from otel_correlate import _settings
from otel_correlate._optional import require_extra

if TYPE_CHECKING:
    from otel_correlate._backup_files import Backup

#: The ``service.name`` (so the ``job`` label) of the backup metrics.
METRICS_SERVICE = "otel-correlate-backup"


class UploadError(RuntimeError):
    """The upload failed; the local backup is kept and the message says what to check."""


class MetricsPushError(RuntimeError):
    """The collector did not take the backup metrics."""


def upload(backup: Backup) -> str:
    """Upload every file of ``backup`` and then its manifest; returns ``s3://bucket/prefix/name/``.

    Example:
        >>> upload(verify_backup(path))  # doctest: +SKIP
        's3://backups/otel-correlate/backups/otel-correlate-backup-20260208T020000Z/'

    Raises:
        UploadError: The store is unreachable, refused the credentials or the bucket
            does not exist; the local backup is untouched.
        ImportError: boto3 is missing; the message names the extra.
    """
    from otel_correlate._backup_files import MANIFEST

    boto3 = require_extra("boto3", extra="s3", feature="Uploading backups to S3")
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = _settings.BACKUP_S3_BUCKET.get()
    endpoint = _settings.BACKUP_S3_ENDPOINT.get() or None
    prefix = f"{_settings.BACKUP_S3_PREFIX.get()}/{backup.path.name}".lstrip("/")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint else {},
        ),
    )
    where = f"s3://{bucket}/{prefix}/"
    try:
        for entry in backup.files:
            client.upload_file(str(backup.path / entry.path), bucket, f"{prefix}/{entry.path}")
        client.upload_file(str(backup.path / MANIFEST), bucket, f"{prefix}/{MANIFEST}")
    except (BotoCoreError, ClientError, OSError) as exc:
        raise UploadError(
            f"upload of {backup.path.name} to {where} (endpoint {endpoint or 'AWS'}) failed: {exc}. "
            f"The local backup {backup.path} is kept. Check OTEL_CORRELATE_BACKUP_S3_ENDPOINT, "
            "OTEL_CORRELATE_BACKUP_S3_BUCKET and the AWS_* credentials, then upload it again."
        ) from exc
    return where


def push_metrics(
    backup: Backup, *, duration_seconds: float, succeeded: bool, endpoint: str = "", timeout: float = 10
) -> None:
    """Send the backup's duration, size and (when ``succeeded``) timestamp to an OTLP/HTTP endpoint.

    ``endpoint`` falls back to ``OTEL_CORRELATE_BACKUP_METRICS_ENDPOINT``, then to
    the collector of the stack at ``OTEL_CORRELATE_PORT_OFFSET``; ``timeout`` bounds
    the export, retries included. Headers such as
    an auth token come from the standard ``OTEL_EXPORTER_OTLP_HEADERS``.

    Example:
        >>> push_metrics(backup, duration_seconds=3.1, succeeded=True)  # doctest: +SKIP

    Raises:
        MetricsPushError: The endpoint did not accept the export.
    """
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
    from opentelemetry.sdk.resources import Resource

    from otel_correlate import _stack

    base = endpoint or _settings.BACKUP_METRICS_ENDPOINT.get() or _stack.endpoints()["otlp"]
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create(
            {"service.name": METRICS_SERVICE, "service.instance.id": socket.gethostname()}
        ),
        metric_readers=[reader],
    )
    meter = provider.get_meter("otel_correlate.backup")
    meter.create_gauge(
        "otel_correlate.backup.duration", unit="s", description="Seconds the last backup took."
    ).set(duration_seconds)
    meter.create_gauge(
        "otel_correlate.backup.size", unit="By", description="Bytes of the files of the last backup."
    ).set(backup.size_bytes)
    if succeeded:
        meter.create_gauge(
            "otel_correlate.backup.last_success_timestamp",
            unit="s",
            description="Unix time of the last backup that was written, verified and uploaded (when configured).",
        ).set(backup.created.timestamp())
    data = reader.get_metrics_data()
    provider.shutdown()
    # The exporter retries transient failures with backoff until ``timeout`` runs out.
    exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=timeout)
    try:
        result = exporter.export(data) if data is not None else MetricExportResult.FAILURE
    finally:
        exporter.shutdown()
    if result != MetricExportResult.SUCCESS:
        raise MetricsPushError(
            f"the backup metrics were not accepted by {base}/v1/metrics; BackupMissing will fire although "
            "the backup exists. Start the stack (`otel-correlate stack up`) or set "
            "OTEL_CORRELATE_BACKUP_METRICS_ENDPOINT to a reachable collector."
        )
