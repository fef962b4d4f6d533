"""`orchestrator doctor`: check each dependency and say how to fix what is wrong."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass

import ollama

from bot import texts
from bot.app import (
    make_sandbox,
    memory_path,
    memory_problem,
    model_name,
    unwritable,
)
from bot.platforms import PLATFORMS, People, configured, people
from bot.settings import Settings, where_set
from core.errors import ConfigurationError, ServiceUnavailable
from core.llm import LLMError, OllamaLLM
from core.store import Store


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


async def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    # data dir
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.data_dir):
            pass
        checks.append(Check("data dir", True, str(settings.data_dir)))
    except OSError as exc:
        checks.append(
            Check("data dir", False, f"{settings.data_dir}: {exc.strerror}",
                  f"set {where_set('data_dir')} to a directory this user can write")
        )  # fmt: skip
    # database: the URL probed on its own (bot.app.open_store would first create the default file root,
    # which the next check reports on)
    try:
        store = Store(settings.db_url)
        await store.init()
        await store.close()
        checks.append(Check("database", True, _safe_url(settings.db_url)))
    except (ConfigurationError, ServiceUnavailable) as exc:  # the message names the database and the fix
        checks.append(
            Check("database", False, str(exc), "check DATABASE_URL, or unset it to use SQLite in the data dir")
        )
    except Exception as exc:
        checks.append(
            Check("database", False, f"{_safe_url(settings.db_url)}: {type(exc).__name__}: {str(exc)[:200]}",
                  "check DATABASE_URL (e.g. sqlite:////path/to/orchestrator.db or postgresql+psycopg://user@host/db)")
        )  # fmt: skip
    # file roots: the default one (nothing configured) is the bot's own to create
    created = ""
    if not settings.file_roots and not settings.roots[0].is_dir():
        try:
            settings.roots[0].mkdir(parents=True, mode=0o750)
            created = f" (created {settings.roots[0]}: the default, as ORCHESTRATOR_FILE_ROOTS is not set)"
        except OSError as exc:
            created = f" (could not create it: {exc.strerror})"
    missing = [str(r) for r in settings.roots if not r.is_dir()]
    if missing:
        checks.append(
            Check("file roots", False, f"missing: {', '.join(missing)}{created}",
                  f"create them or fix ORCHESTRATOR_FILE_ROOTS ({os.pathsep}-separated)")
        )  # fmt: skip
    else:
        checks.append(Check("file roots", True, ", ".join(str(r) for r in settings.roots) + created))
    checks.append(await _sandbox_check(settings))
    checks.append(await _memory_check(settings))
    checks.append(await _docker_check(settings))
    checks.append(_systemd_check(settings))
    checks.extend(_access_checks(settings))
    # ollama and the model
    llm = OllamaLLM(host=settings.ollama_host, model=settings.model, timeout=min(settings.llm_timeout, 10))
    try:
        models = await llm.list_models()
    except LLMError as exc:
        checks.append(Check("ollama", False, str(exc), "start Ollama (`ollama serve`) or set OLLAMA_HOST"))
        return checks
    checks.append(Check("ollama", True, f"{settings.ollama_host} ({len(models)} models)"))
    # the main model, and the models a job uses instead when they are set
    checks.append(await _model_check(settings, models, "model", settings.model, "ORCHESTRATOR_MODEL", "tools"))
    if settings.code_model:
        checks.append(
            await _model_check(settings, models, "code model", settings.code_model, "ORCHESTRATOR_CODE_MODEL", "tools")
        )
    if settings.vision_model:
        checks.append(
            await _model_check(
                settings, models, "vision model", settings.vision_model, "ORCHESTRATOR_VISION_MODEL", "vision"
            )
        )
    return checks


_EXAMPLES = {
    "tools": "pick a tool-capable model, e.g. qwen3:8b or llama3.1:8b",
    "vision": "pick a vision model, e.g. qwen2.5vl:7b or llava:7b",
}
_NEEDED_FOR = {"tools": "tool calling", "vision": "images"}


async def _model_check(
    settings: Settings, models: list[str], label: str, model: str, setting: str, needs: str
) -> Check:
    """`model` is pulled and, when Ollama says what it can do, can do what its job needs."""
    wanted = model if ":" in model else model + ":latest"
    if wanted not in models and model not in models:
        return Check(label, False, f"{model} is not pulled (have: {', '.join(models) or 'none'})",
                     f"run `ollama pull {model}` or set {setting}")  # fmt: skip
    try:
        info = await ollama.AsyncClient(host=settings.ollama_host, timeout=10).show(model)
        caps = list(info.capabilities or [])
    except (ollama.ResponseError, OSError, Exception):
        caps = []
    if caps and needs not in caps:
        return Check(label, False, f"{model} does not support {_NEEDED_FOR[needs]} ({', '.join(caps)})",
                     f"{_EXAMPLES[needs]}, with {setting}")  # fmt: skip
    return Check(label, True, model + (f" ({', '.join(caps)})" if caps else ""))


async def _sandbox_check(settings: Settings) -> Check:
    status = await make_sandbox(settings).probe()
    if status.available:
        return Check("sandbox", True, f"{status.reason}: read-only commands run freely, inside it")
    # auto: the bot still works, every command asks; bwrap: the operator required the sandbox
    return Check(
        "sandbox",
        False,
        f"{status.reason}: nothing runs freely, every command needs approval",
        status.fix,
        warning=settings.sandbox != "bwrap",
    )


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.split("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


async def _memory_check(settings: Settings) -> Check:
    """The memory store opens, takes writes, and was built by the embedding model the settings name.

    A memory that fails here is switched off when the bot starts (with one line in the log):
    the bot runs, without memory, so the detail says so."""
    if not settings.memory:
        return Check("memory", True, "off (ORCHESTRATOR_MEMORY=off)")
    from core.memory.store import MemoryStore

    host = settings.chroma_host or None
    path = memory_path(settings)
    if not host and (reason := unwritable(path)):
        return Check(
            "memory",
            False,
            texts.MEMORY_UNWRITABLE.format(path=path, reason=reason) + MEMORY_OFF,
            texts.MEMORY_FIX_UNWRITABLE,
        )
    try:
        where = None if host else path
        info = await asyncio.to_thread(MemoryStore.inspect, where, host=host, port=settings.chroma_port)
    except Exception as exc:  # chromadb raises several kinds for a damaged store or an unreachable server
        problem = memory_problem(settings, exc)
        return Check("memory", False, problem.detail + MEMORY_OFF, problem.fix)
    wanted = model_name(settings)
    fallback = _offline_fallback(settings)
    if not info.exists:
        detail = f"{info.location} (empty; embedding model {wanted}{'; ' + fallback if fallback else ''})"
        return Check("memory", True, detail, texts.MEMORY_FIX_FALLBACK if fallback else "", warning=bool(fallback))
    if info.model != wanted:
        built = info.model or "an unknown model"
        return Check(
            "memory", True,
            f"{info.location} ({info.count} memories built with {built}; the settings name {wanted}, "
            f"so the next start re-embeds them, which nothing loses)",
            "run `orchestrator memory reindex` now to see it done, or set ORCHESTRATOR_EMBEDDING back",
            warning=True,
        )  # fmt: skip
    if fallback:
        return Check(
            "memory", True,
            f"{info.location} ({info.count} memories, built with embedding model {wanted}; {fallback})",
            texts.MEMORY_FIX_FALLBACK,
            warning=True,
        )  # fmt: skip
    return Check("memory", True, f"{info.location} ({info.count} memories, built with embedding model {wanted})")


def _offline_fallback(settings: Settings) -> str:
    """Why ``offline`` runs USE alone here (empty: it runs the pair)."""
    from core.memory.embeddings import e5_unavailable

    why = e5_unavailable() if settings.embedding == "offline" else None
    return f"USE multilingual alone, a little weaker in French, because {why}" if why else ""


MEMORY_OFF = " (the bot starts without memory)"


async def _docker_check(settings: Settings) -> Check:
    """The local Docker engine: optional, so a host without one passes, and one that does not answer warns
    (Docker tools then fail with that reason, and the health check reports it), unless it is required."""
    from core.health.engine import DockerEngineProbe

    mode = settings.reports.checks.docker
    if mode == "off":
        return Check("docker", True, "off (ORCHESTRATOR_DOCKER_CHECK=off): not checked")
    probe = DockerEngineProbe()
    where = probe.describe()
    if not probe.configured():
        detail = f"no Docker engine on this host (no DOCKER_HOST, no {where}): the Docker tools have nothing to manage"
        if mode == "required":
            return Check("docker", False, detail, "start Docker, or set DOCKER_HOST, or ORCHESTRATOR_DOCKER_CHECK=auto")
        return Check("docker", True, detail)
    try:
        await asyncio.wait_for(probe.ping(), probe.timeout + 5)
    except Exception as exc:  # the SDK raises requests', urllib3's and its own errors
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160] or type(exc).__name__
        return Check(
            "docker", mode != "required", f"{where} does not answer ({error}): Docker tools fail until it does",
            "start the Docker daemon or fix DOCKER_HOST; ORCHESTRATOR_DOCKER_CHECK=off if this host has none",
            warning=mode != "required",
        )  # fmt: skip
    return Check("docker", True, f"answers at {where}")


def _systemd_check(settings: Settings) -> Check:
    """systemd: optional too; without it the failed-units check is skipped and local service tools fail."""
    from core.health.checks import SystemdCheck

    if settings.reports.checks.systemd == "off":
        return Check("systemd", True, "off (ORCHESTRATOR_SYSTEMD_CHECK=off): not checked")
    check = SystemdCheck()
    if not check.marker.exists():
        return Check("systemd", True, f"not running on this host (no {check.marker}): failed units are not checked")
    if shutil.which(check.systemctl) is None:
        return Check("systemd", True, f"runs, but {check.systemctl} is not on PATH: failed units cannot be checked",
                     "install systemctl or add it to PATH; ORCHESTRATOR_SYSTEMD_CHECK=off stops the check",
                     warning=True)  # fmt: skip
    return Check("systemd", True, "runs: failed units are checked")


def _access_checks(settings: Settings) -> list[Check]:
    """Per configured platform: somebody may approve, and `*` askers are said out loud."""
    return [
        check
        for platform in PLATFORMS
        if configured(settings, platform)
        for check in _who_may_ask(people(settings, platform), dm_policy=settings.dm_policy)
    ]


def _who_may_ask(who: People, *, dm_policy: str) -> list[Check]:
    approvers = [*who.approvers, *who.approver_groups]
    users, roles, channels = who.allowed_users, who.allowed_roles, who.allowed_channels
    approver_settings, everyone = who.approver_settings, who.everyone
    name, env = f"{who.platform} access", who.platform.upper()
    out: list[Check] = []
    if not approvers:
        also = "" if users or roles else "; with no allowlist either, only paired people may ask"
        detail = f"nobody may approve ({approver_settings} unset): risky actions will expire{also}"
        out.append(Check(name, True, detail, f"set {env}_APPROVERS to the ids of the people who decide", warning=True))
    if "*" in users:
        detail = f"{env}_ALLOWED_USERS=* lets {everyone} ask (read-only tools run for them without approval)"
        fix = f"list user ids in {env}_ALLOWED_USERS instead, unless that is meant"
        out.append(Check(name, True, detail, fix, warning=True))
    if not out:
        askers = (
            "the approvers" if not users and not roles else f"the approvers, {len(users)} user(s), {len(roles)} role(s)"
        )
        where = f"in {len(channels)} channel(s)" if channels else "in any channel"
        out.append(Check(name, True, f"{askers} may ask {where}; strangers' DMs: {dm_policy}"))
    return out
