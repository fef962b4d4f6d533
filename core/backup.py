"""Backups of the system the bot looks after: PostgreSQL dumps, configuration tarballs, the Ollama model list.

Each backup is one file in the backup directory (`<data dir>/backups/system` by default) with a
`<file>.sha256` sidecar in `sha256sum` format (`sha256sum -c` checks it by hand). Names sort by
time within a kind: `postgres-20261203-020000-000000-shop.dump`, `configs-….tar.gz`,
`ollama-….json`. Retention keeps the newest `keep` of each kind and source; what is beyond it is
only *listed* here (`beyond_retention`) and deleted by `prune`, which callers gate as a write.

Nothing here blocks the event loop: pg_dump runs through `core.process.run_process` (argv only,
the password in PGPASSWORD, never in argv), hashing and tar run in worker threads, and boto3 (a
sync SDK, imported only when an upload runs) in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from core.errors import ToolError
from core.process import run_process

Kind = Literal["postgres", "configs", "ollama"]
KINDS: tuple[Kind, ...] = ("postgres", "configs", "ollama")
EXTENSIONS: dict[Kind, str] = {"postgres": "dump", "configs": "tar.gz", "ollama": "json"}
SIDECAR = ".sha256"
PARTIAL = ".partial"
_NAME = re.compile(
    r"^(?P<kind>postgres|configs|ollama)-(?P<stamp>\d{8}-\d{6}-\d{6})(?:-(?P<label>[A-Za-z0-9_]+))?"
    r"\.(?P<ext>dump|tar\.gz|json)$"
)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Target:
    """Where `upload` sends backups: an S3 or MinIO endpoint, a bucket and a key prefix."""

    bucket: str
    endpoint: str = ""  # empty: AWS itself
    region: str = "us-east-1"
    prefix: str = ""
    access_key: str = ""
    secret_key: str = field(default="", repr=False)  # never shown: not in repr, plans, results or logs

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")


@dataclass(frozen=True)
class BackupConfig:
    directory: Path
    keep: int = 7
    databases: tuple[str, ...] = ()  # postgresql:// URLs or database names (local socket, libpq defaults)
    paths: tuple[Path, ...] = ()
    ollama_host: str = ""  # empty: the Ollama model list is not backed up
    s3: S3Target | None = None
    pg_dump: str = "pg_dump"
    timeout: float = 3600.0


@dataclass(frozen=True)
class BackupFile:
    path: Path
    kind: Kind
    label: str
    stamp: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class PartResult:
    """One part of a backup run: a file written, or why it could not be."""

    kind: Kind
    source: str
    file: BackupFile | None = None
    error: str = ""
    note: str = ""


@dataclass(frozen=True)
class Database:
    label: str
    dbname: str
    host: str = ""
    port: str = ""
    user: str = ""
    password: str = field(default="", repr=False)

    def shown(self) -> str:
        """The database as a person may read it: no password."""
        where = f"{self.host}:{self.port}" if self.port else self.host
        who = f"{self.user}@" if self.user else ""
        return f"{who}{where}/{self.dbname}" if where else self.dbname


def parse_database(entry: str) -> Database:
    """`postgresql://user:pw@host:5432/shop` (also `postgresql+psycopg://`), or a bare database name."""
    entry = entry.strip()
    if "://" not in entry:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", entry):
            raise ValueError(f"not a database name or postgresql:// URL: {entry!r}")
        return Database(label=_label(entry), dbname=entry)
    parts = urlsplit(entry)
    if not parts.scheme.startswith(("postgresql", "postgres")):
        raise ValueError(f"only PostgreSQL databases are dumped, not {parts.scheme}://")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ValueError("the database URL names no database (…/DBNAME)")
    return Database(
        label=_label(dbname),
        dbname=dbname,
        host=parts.hostname or "",
        port=str(parts.port or ""),
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:60] or "db"


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now * 1e6) % 1_000_000:06d}"


def sha256_of(path: Path) -> str:
    """The file's sha256 (blocking: call it in a thread)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


class BackupEngine:
    """Takes, lists, verifies, prunes and uploads backups under one directory."""

    def __init__(self, config: BackupConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock

    @property
    def directory(self) -> Path:
        return self.config.directory

    def configured(self) -> list[Kind]:
        kinds: list[Kind] = []
        if self.config.databases:
            kinds.append("postgres")
        if self.config.paths:
            kinds.append("configs")
        if self.config.ollama_host:
            kinds.append("ollama")
        return kinds

    # ---- taking backups ------------------------------------------------------------------
    async def backup_postgres(self, only: str = "") -> list[PartResult]:
        databases = [parse_database(entry) for entry in self.config.databases]
        if only:
            databases = [d for d in databases if only in (d.dbname, d.label)]
            if not databases:
                names = ", ".join(parse_database(e).dbname for e in self.config.databases) or "none"
                raise ToolError(f"{only!r} is not a configured database (configured: {names})")
        return [await self._dump(db) for db in databases]

    async def _dump(self, db: Database) -> PartResult:
        target = self._new_path("postgres", db.label)
        partial = target.with_name(target.name + PARTIAL)
        argv = [self.config.pg_dump, "--format=custom", "--no-password", f"--file={partial}"]
        argv += [f"--host={db.host}"] if db.host else []
        argv += [f"--port={db.port}"] if db.port else []
        argv += [f"--username={db.user}"] if db.user else []
        argv += [f"--dbname={db.dbname}"]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PGSSLMODE")}
        if db.password:
            env["PGPASSWORD"] = db.password  # the environment, never argv: `ps` shows argv to every user
        await asyncio.to_thread(self.directory.mkdir, mode=0o700, parents=True, exist_ok=True)
        result = await run_process(argv, timeout=self.config.timeout, output_cap=4000, env=env)
        if result.exit_status != 0:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            why = " ".join(line.strip() for line in result.stderr.splitlines() if line.strip())[:400]
            why = why or f"exit status {result.exit_status}"
            if result.not_found:
                why = f"{self.config.pg_dump} is not installed (install the postgresql-client package)"
            return PartResult("postgres", db.shown(), error=why.replace(db.password, "***") if db.password else why)
        return PartResult("postgres", db.shown(), file=await self._seal(partial, target))

    async def backup_configs(self) -> PartResult:
        target = self._new_path("configs", "")
        partial = target.with_name(target.name + PARTIAL)
        paths = tuple(p.expanduser().resolve() for p in self.config.paths)
        shown = ", ".join(str(p) for p in paths)
        await asyncio.to_thread(self.directory.mkdir, mode=0o700, parents=True, exist_ok=True)
        try:
            skipped = await asyncio.to_thread(_write_tarball, partial, paths, self.directory.resolve())
        except OSError as exc:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            return PartResult("configs", shown, error=f"cannot write the tarball: {exc.strerror or exc}")
        note = f"skipped (unreadable or missing): {', '.join(skipped[:10])}" if skipped else ""
        return PartResult("configs", shown, file=await self._seal(partial, target), note=note)

    async def backup_ollama_models(self) -> PartResult:
        import ollama

        host = self.config.ollama_host
        client = ollama.AsyncClient(host=host, timeout=30)
        try:
            listed = await client.list()
        except Exception as exc:  # the server down, a proxy's error page: said, never raised
            return PartResult("ollama", host, error=f"cannot list the models at {host}: {exc}")
        finally:
            await client.close()  # type: ignore[no-untyped-call]  # the ollama client leaves it unannotated
        models = [
            {
                "name": m.model,
                "digest": m.digest,
                "size": m.size,
                "modified_at": m.modified_at.isoformat() if m.modified_at else None,
            }
            for m in listed.models
        ]
        body = {"host": host, "taken_at": self._clock(), "models": models, "restore": "ollama pull NAME (each name)"}
        target = self._new_path("ollama", "")
        partial = target.with_name(target.name + PARTIAL)
        text = json.dumps(body, indent=2, sort_keys=True) + "\n"
        await asyncio.to_thread(self.directory.mkdir, mode=0o700, parents=True, exist_ok=True)
        await asyncio.to_thread(partial.write_text, text, encoding="utf-8")
        return PartResult("ollama", host, file=await self._seal(partial, target), note=f"{len(models)} model(s)")

    async def backup_full(self) -> list[PartResult]:
        parts: list[PartResult] = []
        if self.config.databases:
            parts += await self.backup_postgres()
        if self.config.paths:
            parts.append(await self.backup_configs())
        if self.config.ollama_host:
            parts.append(await self.backup_ollama_models())
        return parts

    def _new_path(self, kind: Kind, label: str) -> Path:
        stamp = _stamp(self._clock())
        suffix = f"-{label}" if label else ""
        return self.directory / f"{kind}-{stamp}{suffix}.{EXTENSIONS[kind]}"

    async def _seal(self, partial: Path, target: Path) -> BackupFile:
        """The finished file under its real name, with its checksum beside it."""
        digest = await asyncio.to_thread(sha256_of, partial)
        await asyncio.to_thread(partial.chmod, 0o600)  # dumps and configs hold data other users must not read
        await asyncio.to_thread(partial.replace, target)
        sidecar = target.with_name(target.name + SIDECAR)
        await asyncio.to_thread(sidecar.write_text, f"{digest}  {target.name}\n", encoding="ascii")
        found = await asyncio.to_thread(_read_entry, target)
        assert found is not None
        return found

    # ---- what is there ------------------------------------------------------------------
    async def entries(self) -> list[BackupFile]:
        """Every backup, oldest first within each kind and source."""
        return await asyncio.to_thread(_list_dir, self.directory)

    async def verify(self, backup: BackupFile) -> bool:
        """True when the file's content still has the checksum written beside it."""
        try:
            return await asyncio.to_thread(sha256_of, backup.path) == backup.sha256
        except OSError:
            return False

    async def beyond_retention(self) -> list[BackupFile]:
        """Backups older than the newest `keep` of their kind and source: what `prune` would delete."""
        groups: dict[tuple[str, str], list[BackupFile]] = {}
        for backup in await self.entries():
            groups.setdefault((backup.kind, backup.label), []).append(backup)
        old: list[BackupFile] = []
        for items in groups.values():
            items.sort(key=lambda b: b.stamp)
            old += items[: max(0, len(items) - self.config.keep)]
        return sorted(old, key=lambda b: b.name)

    async def prune(self, backups: Sequence[BackupFile]) -> list[str]:
        """Delete these backups and their checksums; the names deleted."""

        def work() -> list[str]:
            gone = []
            for backup in backups:
                if backup.path.parent != self.directory or not _NAME.match(backup.name):
                    continue  # only our own files, in our own directory
                backup.path.unlink(missing_ok=True)
                backup.path.with_name(backup.name + SIDECAR).unlink(missing_ok=True)
                gone.append(backup.name)
            return gone

        return await asyncio.to_thread(work)

    # ---- S3 -----------------------------------------------------------------------------
    def s3_key(self, backup: BackupFile) -> str:
        assert self.config.s3 is not None
        prefix = self.config.s3.prefix
        return f"{prefix.rstrip('/')}/{backup.name}" if prefix else backup.name

    async def upload(self, backups: Sequence[BackupFile]) -> list[str]:
        """Upload each backup and its checksum file; the `s3://bucket/key` of each backup."""
        target = self.config.s3
        if target is None:
            raise ToolError("no S3 bucket is configured")
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ToolError("boto3 is not installed: pip install boto3 in the bot's environment") from None

        def work() -> list[str]:
            client = boto3.client(
                "s3",
                endpoint_url=target.endpoint or None,
                region_name=target.region or None,
                aws_access_key_id=target.access_key or None,
                aws_secret_access_key=target.secret_key or None,
                config=Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=120),
            )
            done = []
            for backup in backups:
                key = self.s3_key(backup)
                client.upload_file(
                    str(backup.path), target.bucket, key, ExtraArgs={"Metadata": {"sha256": backup.sha256}}
                )
                client.upload_file(str(backup.path) + SIDECAR, target.bucket, key + SIDECAR)
                done.append(f"s3://{target.bucket}/{key}")
            return done

        try:
            return await asyncio.to_thread(work)
        except Exception as exc:
            raise ToolError(f"upload to {target.where()} failed: {_without(str(exc), target.secret_key)}") from None

    async def latest(self) -> list[BackupFile]:
        """The newest backup of each kind and source."""
        newest: dict[tuple[str, str], BackupFile] = {}
        for backup in await self.entries():
            key = (backup.kind, backup.label)
            if key not in newest or backup.stamp > newest[key].stamp:
                newest[key] = backup
        return sorted(newest.values(), key=lambda b: b.name)


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _read_entry(path: Path) -> BackupFile | None:
    m = _NAME.match(path.name)
    if m is None:
        return None
    try:
        size = path.stat().st_size
        recorded = path.with_name(path.name + SIDECAR).read_text(encoding="ascii").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        recorded = ""
        if not path.exists():
            return None
        size = path.stat().st_size
    kind: Kind = m.group("kind")  # type: ignore[assignment]
    return BackupFile(path, kind, m.group("label") or "", m.group("stamp"), size, recorded)


def _list_dir(directory: Path) -> list[BackupFile]:
    if not directory.is_dir():
        return []
    found = [entry for p in directory.iterdir() if (entry := _read_entry(p)) is not None]
    return sorted(found, key=lambda b: (b.kind, b.label, b.stamp))


def _write_tarball(target: Path, paths: Sequence[Path], exclude: Path) -> list[str]:
    """A gzip tarball of `paths` (members named by their absolute path without the leading /).
    What cannot be read is skipped and named; the backup directory itself is never included."""
    skipped: list[str] = []

    def members(root: Path) -> list[Path]:
        if root.is_dir() and not root.is_symlink():
            out = [root]
            for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: skipped.append(str(e.filename))):
                here = Path(dirpath)
                dirnames[:] = sorted(d for d in dirnames if not (here / d).resolve().is_relative_to(exclude))
                out += [here / d for d in dirnames] + [here / f for f in sorted(filenames)]
            return out
        return [root]

    with tarfile.open(target, "w:gz") as tar:
        for root in paths:
            if not root.exists():
                skipped.append(str(root))
                continue
            for path in members(root):
                try:
                    tar.add(path, arcname=str(path.relative_to(path.anchor)), recursive=False)
                except OSError:
                    skipped.append(str(path))
    return skipped


def describe(part: PartResult) -> dict[str, Any]:
    """A part as data, for tool results and reports."""
    if part.file is None:
        return {"kind": part.kind, "source": part.source, "error": part.error}
    out: dict[str, Any] = {
        "kind": part.kind,
        "source": part.source,
        "file": str(part.file.path),
        "size": human_size(part.file.size),
        "sha256": part.file.sha256,
    }
    if part.note:
        out["note"] = part.note
    return out
