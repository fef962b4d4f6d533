"""Backups: a real PostgreSQL dumped and restored, a tarball restored, checksums, retention, and an
upload to a local S3 (moto's server mode) with the real boto3, the secret never shown."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.backup import BackupConfig, BackupEngine, S3Target, parse_database
from core.errors import ToolError
from core.events import Request, Risk
from core.tools.backup import backup_tools
from core.tools.registry import ToolContext, ToolRegistry
from tests.fakes.ollama import FakeOllama
from tests.support.postgres import PostgresServer, libpq, pg_program, restored_rows
from tests.support.s3 import S3Stand

PASSWORD = "pg-Pa55word-never-shown"
REQUEST = Request(platform="console", user_id="tester", user_name="tester", channel="console", text="back up")


def with_password(url: str) -> str:
    """The test server trusts everyone; a password in the URL is still passed the way a real one is."""
    return libpq(url).replace("postgres@", f"postgres:{PASSWORD}@", 1)


def rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq(url)) as conn:
        return conn.execute("SELECT id, name, price FROM products ORDER BY id").fetchall()


def fill(url: str) -> None:
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("CREATE TABLE products (id serial PRIMARY KEY, name text NOT NULL, price numeric(8,2))")
        conn.execute("INSERT INTO products (name, price) SELECT 'item ' || g, g * 1.25 FROM generate_series(1, 50) g")


def engine_for(tmp_path: Path, **kw: Any) -> BackupEngine:
    return BackupEngine(BackupConfig(directory=tmp_path / "backups", pg_dump=pg_program("pg_dump"), **kw))


def tools(engine: BackupEngine) -> ToolRegistry:
    return ToolRegistry(backup_tools(engine))


@pytest.mark.asyncio
@pytest.mark.postgres
async def test_a_dump_restores_into_a_fresh_database(
    postgres_url: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    fill(postgres_url)
    engine = engine_for(tmp_path, databases=(with_password(postgres_url),))
    registry = tools(engine)
    spec = registry.get("backup_postgres")
    assert spec is not None and spec.risk is Risk.READ
    text = await spec.fn()
    assert PASSWORD not in text
    [part] = json.loads(text)["backups"]
    assert part["kind"] == "postgres" and "error" not in part, part
    [backup] = await engine.entries()
    assert backup.name.endswith(".dump") and backup.sha256 == part["sha256"] and await engine.verify(backup)
    assert backup.path.read_bytes()[:5] == b"PGDMP"  # the custom format

    restored = f"restored_{backup.stamp.replace('-', '_')}"
    query = "SELECT id, name, price FROM products ORDER BY id"
    assert restored_rows(backup.path, postgres_url, restored, query) == rows(postgres_url)
    assert len(rows(postgres_url)) == 50


@pytest.mark.asyncio
async def test_a_database_that_does_not_answer_is_one_line_without_the_password(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, databases=(f"postgresql://bot:{PASSWORD}@127.0.0.1:9/shop",))
    [part] = await engine.backup_postgres()
    assert part.file is None and part.error and PASSWORD not in part.error and "\n" not in part.error
    assert PASSWORD not in part.source and part.source == "bot@127.0.0.1:9/shop"
    assert await engine.entries() == []  # nothing half-written is left as a backup
    assert not list((tmp_path / "backups").glob("*.partial"))


def test_database_entries() -> None:
    assert parse_database("shop").dbname == "shop"
    db = parse_database("postgresql+psycopg://u:p%40ss@db.lan:5433/app")
    assert (db.host, db.port, db.user, db.password, db.dbname) == ("db.lan", "5433", "u", "p@ss", "app")
    assert "p@ss" not in repr(db) and "p@ss" not in db.shown()
    with pytest.raises(ValueError):
        parse_database("mysql://u@h/db")


@pytest.mark.asyncio
async def test_the_configs_tarball_restores_the_files(tmp_path: Path) -> None:
    nginx = tmp_path / "etc" / "nginx"
    (nginx / "sites").mkdir(parents=True)
    (nginx / "nginx.conf").write_text("worker_processes 2;\n")
    (nginx / "sites" / "shop.conf").write_text("server { listen 443; }\n")
    compose = tmp_path / "srv" / "shop" / "compose.yaml"
    compose.parent.mkdir(parents=True)
    compose.write_text("services: {web: {image: nginx}}\n")
    engine = engine_for(tmp_path, paths=(nginx, compose, tmp_path / "missing"))
    out = json.loads(await tools(engine).get("backup_configs").fn())  # type: ignore[union-attr]
    [part] = out["backups"]
    assert "missing" in part["note"]
    [backup] = await engine.entries()
    assert backup.name.endswith(".tar.gz") and await engine.verify(backup)
    assert backup.path.stat().st_mode & 0o077 == 0  # only the bot's user reads it
    into = tmp_path / "restore"
    with tarfile.open(backup.path) as tar:
        tar.extractall(into, filter="data")
    for original in (nginx / "nginx.conf", nginx / "sites" / "shop.conf", compose):
        assert (into / original.relative_to("/")).read_text() == original.read_text()


@pytest.mark.asyncio
async def test_the_model_list_has_the_digests(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    engine = engine_for(tmp_path, ollama_host=fake_ollama.url)
    await tools(engine).get("backup_ollama_models").fn()  # type: ignore[union-attr]
    [backup] = await engine.entries()
    listed = json.loads(backup.path.read_text())
    names = {m["name"]: m["digest"] for m in listed["models"]}
    assert names and all(len(d) == 64 for d in names.values())
    assert set(names) == set(fake_ollama.models)


@pytest.mark.asyncio
async def test_a_damaged_backup_is_detected(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.conf").write_text("a=1\n")
    engine = engine_for(tmp_path, paths=(tmp_path / "conf",))
    await engine.backup_configs()
    [backup] = await engine.entries()
    assert await engine.verify(backup)
    data = bytearray(backup.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.path.write_bytes(bytes(data))
    assert not await engine.verify(backup)
    listed = json.loads(await tools(engine).get("backup_list").fn())  # type: ignore[union-attr]
    assert listed["backups"][0]["checksum_ok"] is False


@pytest.mark.asyncio
async def test_retention_keeps_the_newest_and_prune_needs_approval(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.conf").write_text("a=1\n")
    clock = iter(float(1_800_000_000 + i * 86400) for i in range(100))
    engine = BackupEngine(
        BackupConfig(directory=tmp_path / "backups", keep=3, paths=(tmp_path / "conf",)), clock=lambda: next(clock)
    )
    for _ in range(5):
        await engine.backup_configs()
    everything = await engine.entries()
    old = await engine.beyond_retention()
    assert [b.name for b in old] == [b.name for b in everything[:2]]
    spec = tools(engine).get("backup_prune")
    assert spec is not None and spec.risk is Risk.WRITE
    plan = await spec.make_plan({})
    assert plan.risk is Risk.WRITE and all(b.name in plan.detail for b in old)
    assert plan.fingerprint_parts == tuple(b.name for b in old)
    await spec.run({}, ToolContext(request=REQUEST, plan=plan, approval_id=1))
    left = await engine.entries()
    assert [b.name for b in left] == [b.name for b in everything[2:]]
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(
        [b.name for b in left] + [b.name + ".sha256" for b in left]
    )


@pytest.mark.asyncio
async def test_nothing_configured_says_how_to_configure(tmp_path: Path) -> None:
    registry = tools(BackupEngine(BackupConfig(directory=tmp_path / "b")))
    for name, setting in [
        ("backup_postgres", "ORCHESTRATOR_BACKUP_DATABASES"),
        ("backup_configs", "ORCHESTRATOR_BACKUP_PATHS"),
        ("backup_full", "ORCHESTRATOR_BACKUP_PATHS"),
        ("backup_s3", "ORCHESTRATOR_BACKUP_S3_BUCKET"),
    ]:
        spec = registry.get(name)
        assert spec is not None
        with pytest.raises(ToolError, match=setting):
            await (spec.make_plan({"names": None}) if name == "backup_s3" else spec.fn())


@pytest.mark.asyncio
async def test_upload_to_s3_with_the_real_boto3(tmp_path: Path, s3: S3Stand) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.conf").write_text("a=1\n")
    target = S3Target(
        bucket=s3.bucket, endpoint=s3.endpoint, prefix="host1", access_key=s3.access_key, secret_key=s3.secret_key
    )
    engine = engine_for(tmp_path, paths=(tmp_path / "conf",), s3=target)
    await engine.backup_configs()
    [backup] = await engine.entries()
    spec = tools(engine).get("backup_s3")
    assert spec is not None and spec.risk is Risk.WRITE
    plan = await spec.make_plan({"names": None})
    assert f"s3://{s3.bucket}/host1/{backup.name}" in plan.detail and s3.endpoint in plan.detail
    assert s3.secret_key not in plan.detail + plan.summary and s3.secret_key not in repr(target)
    assert await spec.fresh_parts({"names": None}) == plan.fingerprint_parts
    text = await spec.run({"names": None}, ToolContext(request=REQUEST, plan=plan, approval_id=1))
    assert s3.secret_key not in text
    assert s3.objects() == [f"host1/{backup.name}", f"host1/{backup.name}.sha256"]
    body = s3.client().get_object(Bucket=s3.bucket, Key=f"host1/{backup.name}")["Body"].read()
    assert body == backup.path.read_bytes()

    # a newer backup taken after the approval was asked: the approved set is not what would go
    await engine.backup_configs()
    with pytest.raises(ToolError, match="changed after the approval"):
        await spec.run({"names": None}, ToolContext(request=REQUEST, plan=plan, approval_id=1))
    assert len(s3.objects()) == 2

    # a file changed after the plan was made is not uploaded
    [newest] = await engine.latest()
    newest.path.write_bytes(b"changed")
    with pytest.raises(ToolError, match="checksum"):
        await spec.fresh_parts({"names": None})


@pytest.mark.asyncio
async def test_a_wrong_secret_is_an_error_without_the_secret(tmp_path: Path, s3: S3Stand) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.conf").write_text("a=1\n")
    target = S3Target(bucket="no-such-bucket", endpoint=s3.endpoint, access_key="x", secret_key=s3.secret_key)
    engine = engine_for(tmp_path, paths=(tmp_path / "conf",), s3=target)
    await engine.backup_configs()
    with pytest.raises(ToolError) as info:
        await engine.upload(await engine.entries())
    assert "no-such-bucket" in str(info.value) and s3.secret_key not in str(info.value)
