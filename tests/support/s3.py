"""A local S3 for tests: moto's server mode on 127.0.0.1 and a free port; the real boto3 talks to it.

Pytest use: the `s3` fixture gives an `S3Stand` with a bucket made, its endpoint and the
credentials to give the bot (`ORCHESTRATOR_BACKUP_S3_*`), and `client()` to read what arrived.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ACCESS_KEY = "AKIATESTBACKUPS"


@dataclass(frozen=True)
class S3Stand:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def objects(self) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def env(self) -> dict[str, str]:
        return {
            "ORCHESTRATOR_BACKUP_S3_ENDPOINT": self.endpoint,
            "ORCHESTRATOR_BACKUP_S3_BUCKET": self.bucket,
            "ORCHESTRATOR_BACKUP_S3_ACCESS_KEY": self.access_key,
            "ORCHESTRATOR_BACKUP_S3_SECRET_KEY": self.secret_key,
        }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3Stand:
    stand = S3Stand(s3_endpoint, f"backups-{secrets.token_hex(4)}", ACCESS_KEY, "s3cr3t-" + secrets.token_urlsafe(18))
    stand.client().create_bucket(Bucket=stand.bucket)
    return stand
