"""The backup tools: take backups (read: free once configured), upload them and prune old ones (write).

Taking a backup changes nothing on the system: it reads databases, files and the model list,
and writes only under the bot's own backup directory. Uploading to S3 and deleting backups
beyond retention are writes: the approver sees exactly which files go where (never a secret),
and the approval is bound to the files' checksums, so a file changed in between is not sent.
"""

from __future__ import annotations

import json
from typing import Any

from core.backup import BackupEngine, BackupFile, PartResult, describe, human_size
from core.errors import ToolError
from core.events import Risk
from core.tools.registry import Plan, ToolContext, ToolSpec, tool

NOT_CONFIGURED = (
    "nothing to back up: no {what} is configured. Set {setting} in the bot's environment or orchestrator.toml "
    "(docs/tools.md#backups) and restart the bot"
)
S3_NOT_CONFIGURED = (
    "no S3 bucket is configured: set ORCHESTRATOR_BACKUP_S3_BUCKET (and ORCHESTRATOR_BACKUP_S3_ENDPOINT for MinIO, "
    "ORCHESTRATOR_BACKUP_S3_ACCESS_KEY, ORCHESTRATOR_BACKUP_S3_SECRET_KEY) and restart the bot"
)


def _result(parts: list[PartResult], engine: BackupEngine) -> str:
    body: dict[str, Any] = {"directory": str(engine.directory), "backups": [describe(p) for p in parts]}
    if any(p.error for p in parts):
        body["failed"] = sum(1 for p in parts if p.error)
    return json.dumps(body, indent=1)


def _listing(backups: list[BackupFile], engine: BackupEngine, *, upload: bool = False) -> list[str]:
    s3 = engine.config.s3
    return [
        f"{b.name}  {human_size(b.size)}  sha256 {b.sha256[:16]}…  →  s3://{s3.bucket}/{engine.s3_key(b)}"
        if upload and s3 is not None
        else f"{b.name}  {human_size(b.size)}"
        for b in backups
    ]


def backup_tools(engine: BackupEngine) -> list[ToolSpec]:
    @tool(risk=Risk.READ)
    async def backup_postgres(database: str = "") -> str:
        """Dump the configured PostgreSQL databases (pg_dump, custom format) into the backup directory,
        each with its sha256. Changes nothing on the system.

        Args:
            database: one configured database by name; empty: all of them.
        """
        if not engine.config.databases:
            raise ToolError(NOT_CONFIGURED.format(what="database", setting="ORCHESTRATOR_BACKUP_DATABASES"))
        return _result(await engine.backup_postgres(database), engine)

    @tool(risk=Risk.READ)
    async def backup_configs() -> str:
        """A tarball (tar.gz) of the configured configuration paths (e.g. /etc/nginx, compose directories),
        with its sha256. Changes nothing on the system."""
        if not engine.config.paths:
            raise ToolError(NOT_CONFIGURED.format(what="path", setting="ORCHESTRATOR_BACKUP_PATHS"))
        return _result([await engine.backup_configs()], engine)

    @tool(risk=Risk.READ)
    async def backup_ollama_models() -> str:
        """The list of Ollama models with their digests (JSON), so they can be pulled again."""
        if not engine.config.ollama_host:
            raise ToolError(NOT_CONFIGURED.format(what="Ollama host", setting="ORCHESTRATOR_BACKUP_OLLAMA"))
        return _result([await engine.backup_ollama_models()], engine)

    @tool(risk=Risk.READ)
    async def backup_full() -> str:
        """Every configured backup at once: the databases, the configuration paths and the Ollama model list."""
        if not engine.configured():
            raise ToolError(
                NOT_CONFIGURED.format(
                    what="database, path or Ollama host",
                    setting="ORCHESTRATOR_BACKUP_DATABASES, ORCHESTRATOR_BACKUP_PATHS or ORCHESTRATOR_BACKUP_OLLAMA",
                )
            )
        parts = await engine.backup_full()
        old = await engine.beyond_retention()
        text = _result(parts, engine)
        if old:
            text += (
                f"\n{len(old)} older backup(s) are beyond retention (keep {engine.config.keep}); "
                "backup_prune deletes them (with approval)"
            )
        return text

    @tool(risk=Risk.READ)
    async def backup_list() -> str:
        """The backups in the backup directory: name, size, sha256, and whether the checksum still matches."""
        rows = []
        for b in await engine.entries():
            ok = await engine.verify(b)
            rows.append({"name": b.name, "size": human_size(b.size), "sha256": b.sha256, "checksum_ok": ok})
        return json.dumps({"directory": str(engine.directory), "keep": engine.config.keep, "backups": rows}, indent=1)

    @tool(risk=Risk.WRITE)
    async def backup_s3(ctx: ToolContext, names: list[str] | None = None) -> str:
        """Upload backups and their checksum files to the configured S3 or MinIO bucket. A person approves it first.

        Args:
            names: backup file names (from backup_list); empty: the newest backup of each kind.
        """
        chosen = await _chosen(names)
        ctx.check_unchanged(tuple(f"{b.name}:{b.sha256}" for b in chosen))  # exactly the approved files
        done = await engine.upload(chosen)
        return json.dumps({"uploaded": done, "endpoint": engine.config.s3.endpoint if engine.config.s3 else ""})

    async def _chosen(names: list[str] | None) -> list[BackupFile]:
        if engine.config.s3 is None:
            raise ToolError(S3_NOT_CONFIGURED)
        if not names:
            chosen = await engine.latest()
            if not chosen:
                raise ToolError("there is no backup to upload yet: take one with backup_full")
            return chosen
        by_name = {b.name: b for b in await engine.entries()}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ToolError(f"no backup named {', '.join(missing)} in {engine.directory}; backup_list shows them")
        return [by_name[n] for n in names]

    @backup_s3.plan
    async def _plan_s3(args: dict[str, Any]) -> Plan:
        chosen = await _chosen(args.get("names"))
        assert engine.config.s3 is not None
        detail = "\n".join([f"upload to {engine.config.s3.where()}:", *_listing(chosen, engine, upload=True)])
        return Plan(
            risk=Risk.WRITE,
            summary=f"upload {len(chosen)} backup(s) to {engine.config.s3.where()}",
            detail=detail,
            fingerprint_parts=tuple(f"{b.name}:{b.sha256}" for b in chosen),
        )

    @backup_s3.check_fresh
    async def _fresh_s3(args: dict[str, Any]) -> tuple[str, ...]:
        chosen = await _chosen(args.get("names"))
        for b in chosen:
            if not await engine.verify(b):
                raise ToolError(f"{b.name} no longer matches its checksum: not uploaded")
        return tuple(f"{b.name}:{b.sha256}" for b in chosen)

    @tool(risk=Risk.WRITE)
    async def backup_prune(ctx: ToolContext) -> str:
        """Delete the backups beyond retention (the newest ORCHESTRATOR_BACKUP_KEEP of each kind are kept).
        A person approves the exact list first."""
        old = await engine.beyond_retention()
        if not old:
            return "nothing to prune: no backup is beyond retention"
        ctx.check_unchanged(tuple(b.name for b in old))  # exactly the approved list
        gone = await engine.prune(old)
        return json.dumps({"deleted": gone, "keep": engine.config.keep})

    @backup_prune.plan
    async def _plan_prune(args: dict[str, Any]) -> Plan:
        old = await engine.beyond_retention()
        lines = _listing(old, engine) or ["(nothing)"]
        return Plan(
            risk=Risk.WRITE,
            summary=f"delete {len(old)} backup(s) beyond retention (keep {engine.config.keep}) in {engine.directory}",
            detail="\n".join(["delete:", *lines]),
            fingerprint_parts=tuple(b.name for b in old),
        )

    @backup_prune.check_fresh
    async def _fresh_prune(args: dict[str, Any]) -> tuple[str, ...]:
        return tuple(b.name for b in await engine.beyond_retention())

    return [backup_postgres, backup_configs, backup_ollama_models, backup_full, backup_list, backup_s3, backup_prune]
