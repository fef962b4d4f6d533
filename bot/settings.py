"""Settings: environment variables (and `.env`) over an optional `orchestrator.toml`.

Environment names are the ones users look for (`OLLAMA_HOST`, `DATABASE_URL`,
`SLACK_BOT_TOKEN`…); in the TOML file the same settings use the lower-case field
names (`model = "qwen3:8b"`). See docs/configuration.md.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import platformdirs
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from bot.config_check import CONFIG_ENV, Origins, check_keys, config_path, explain, read_toml
from core.grammar import Program
from core.llm import DEFAULT_FIRST_TOKEN_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_TIMEOUT


def _env(name: str, field_name: str) -> AliasChoices:
    return AliasChoices(name, field_name)


def _split(value: Any, sep: str = ",") -> Any:
    if isinstance(value, str):
        return [v.strip() for v in value.split(sep) if v.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class HealthCheckSettings(BaseModel):
    """Thresholds of the self-healing checks: `[reports.checks]` in orchestrator.toml (see docs/reports.md)."""

    disk_percent: float = Field(
        90.0, gt=0, le=100, validation_alias=_env("ORCHESTRATOR_DISK_THRESHOLD", "disk_percent")
    )
    ignore_mounts: list[str] = Field(
        default_factory=list, validation_alias=_env("ORCHESTRATOR_IGNORE_MOUNTS", "ignore_mounts")
    )
    memory_percent: float = Field(
        90.0, gt=0, le=100, validation_alias=_env("ORCHESTRATOR_MEMORY_THRESHOLD", "memory_percent")
    )
    memory_pressure: float = Field(
        10.0, ge=0, le=100, validation_alias=_env("ORCHESTRATOR_MEMORY_PRESSURE_THRESHOLD", "memory_pressure")
    )
    load_factor: float = Field(1.0, gt=0, validation_alias=_env("ORCHESTRATOR_LOAD_FACTOR", "load_factor"))
    load_minutes: float = Field(15.0, gt=0, validation_alias=_env("ORCHESTRATOR_LOAD_MINUTES", "load_minutes"))
    docker: str = Field(
        "auto", pattern="^(auto|required|off)$", validation_alias=_env("ORCHESTRATOR_DOCKER_CHECK", "docker")
    )
    restart_limit: int = Field(3, ge=1, validation_alias=_env("ORCHESTRATOR_RESTART_LIMIT", "restart_limit"))
    restart_window_minutes: float = Field(
        15.0, gt=0, validation_alias=_env("ORCHESTRATOR_RESTART_WINDOW_MINUTES", "restart_window_minutes")
    )
    systemd: str = Field("auto", pattern="^(auto|off)$", validation_alias=_env("ORCHESTRATOR_SYSTEMD_CHECK", "systemd"))
    disabled: list[str] = Field(default_factory=list, validation_alias=_env("ORCHESTRATOR_DISABLED_CHECKS", "disabled"))

    @field_validator("ignore_mounts", "disabled", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split(value)


class ReportSettings(BaseModel):
    """Scheduled reports, the self-healing checks and the scheduler: `[reports]` in orchestrator.toml.

    pydantic-settings only looks up top-level fields in the environment, and a `[reports]` table
    arrives here as a plain dict, so this model reads its own environment names (and `.env`);
    as everywhere else, the environment wins over the file.
    """

    slack_channel: str = Field("", validation_alias=_env("ORCHESTRATOR_REPORTS_SLACK_CHANNEL", "slack_channel"))
    discord_channel: str = Field("", validation_alias=_env("ORCHESTRATOR_REPORTS_DISCORD_CHANNEL", "discord_channel"))
    scheduler: bool = Field(True, validation_alias=_env("ORCHESTRATOR_SCHEDULER", "scheduler"))
    timezone: str = Field("", validation_alias=_env("ORCHESTRATOR_TIMEZONE", "timezone"))
    metrics_interval: int = Field(60, ge=1, validation_alias=_env("ORCHESTRATOR_METRICS_INTERVAL", "metrics_interval"))
    retention_days: float = Field(
        30.0, gt=0, validation_alias=_env("ORCHESTRATOR_METRICS_RETENTION_DAYS", "retention_days")
    )
    health_interval: int = Field(300, ge=1, validation_alias=_env("ORCHESTRATOR_HEALTH_INTERVAL", "health_interval"))
    health_cron: str = Field("", validation_alias=_env("ORCHESTRATOR_HEALTH_CRON", "health_cron"))
    daily_at: str = Field(
        "06:00", pattern=r"^([01]?\d|2[0-3]):[0-5]\d$", validation_alias=_env("ORCHESTRATOR_DAILY_AT", "daily_at")
    )
    daily_window_hours: float = Field(
        24.0, gt=0, le=24 * 31, validation_alias=_env("ORCHESTRATOR_DAILY_WINDOW_HOURS", "daily_window_hours")
    )
    daily_notebook: str = Field("", validation_alias=_env("ORCHESTRATOR_DAILY_NOTEBOOK", "daily_notebook"))
    misfire_grace: int = Field(300, ge=1, validation_alias=_env("ORCHESTRATOR_MISFIRE_GRACE", "misfire_grace"))
    daily_misfire_grace: int = Field(
        6 * 3600, ge=1, validation_alias=_env("ORCHESTRATOR_DAILY_MISFIRE_GRACE", "daily_misfire_grace")
    )
    scheduler_lease: float = Field(60.0, ge=5, validation_alias=_env("ORCHESTRATOR_SCHEDULER_LEASE", "scheduler_lease"))
    reopen_minutes: float = Field(
        30.0, ge=0, validation_alias=_env("ORCHESTRATOR_INCIDENT_REOPEN_MINUTES", "reopen_minutes")
    )
    checks: HealthCheckSettings = Field(default_factory=HealthCheckSettings)

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from dotenv import dotenv_values

        env = {k: v for k, v in dotenv_values(".env").items() if v is not None} | dict(os.environ)

        def overlay(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
            names = [f.validation_alias.choices[0] for f in model.model_fields.values()
                     if isinstance(f.validation_alias, AliasChoices)]  # fmt: skip
            return values | {n: env[n] for n in names if isinstance(n, str) and n in env}

        data = overlay(cls, data)
        checks = data.get("checks", {})
        if isinstance(checks, dict):
            data["checks"] = overlay(HealthCheckSettings, checks)
        return data


class HostSettings(BaseModel):
    """One machine of the inventory: `[hosts.web1] docker = "ssh://ops@web1"`, `ssh = "ops@web1"`."""

    model_config = ConfigDict(extra="forbid")

    docker: str = ""  # Docker base URL: ssh://user@host, unix:///path, tcp://host:port
    ssh: str = ""  # ssh destination for service tools: user@host
    ssh_port: int | None = Field(None, ge=1, le=65535)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        populate_by_name=True,
    )

    # ---- model ---------------------------------------------------------------
    ollama_host: str = Field("http://127.0.0.1:11434", validation_alias=_env("OLLAMA_HOST", "ollama_host"))
    model: str = Field("qwen3:8b", validation_alias=_env("ORCHESTRATOR_MODEL", "model"))
    # images attached to a message go to this model (a llava or qwen2.5vl tag); empty: mentioned by name only
    vision_model: str = Field("", validation_alias=_env("ORCHESTRATOR_VISION_MODEL", "vision_model"))
    # a change workflow (start_change) talks to this model once started; empty: the main model
    code_model: str = Field("", validation_alias=_env("ORCHESTRATOR_CODE_MODEL", "code_model"))
    think: bool = Field(True, validation_alias=_env("ORCHESTRATOR_THINK", "think"))
    # A model reply's limits (core/llm.py): the whole reply, the wait for its first chunk
    # (model load and prompt included), and the longest pause between two chunks.
    llm_timeout: float = Field(DEFAULT_TIMEOUT, gt=0, validation_alias=_env("ORCHESTRATOR_LLM_TIMEOUT", "llm_timeout"))
    llm_first_token_timeout: float = Field(
        DEFAULT_FIRST_TOKEN_TIMEOUT,
        gt=0,
        validation_alias=_env("ORCHESTRATOR_LLM_FIRST_TOKEN_TIMEOUT", "llm_first_token_timeout"),
    )
    llm_idle_timeout: float = Field(
        DEFAULT_IDLE_TIMEOUT, gt=0, validation_alias=_env("ORCHESTRATOR_LLM_IDLE_TIMEOUT", "llm_idle_timeout")
    )
    max_iterations: int = Field(
        15, ge=1, le=100, validation_alias=_env("ORCHESTRATOR_MAX_ITERATIONS", "max_iterations")
    )
    # ---- change workflows (core/workflow.py) -------------------------------------------------
    max_repair_cycles: int = Field(
        2, ge=0, le=10, validation_alias=_env("ORCHESTRATOR_MAX_REPAIR_CYCLES", "max_repair_cycles")
    )
    verify_required: bool = Field(False, validation_alias=_env("ORCHESTRATOR_VERIFY_REQUIRED", "verify_required"))
    qa_timeout: float = Field(600.0, gt=0, validation_alias=_env("ORCHESTRATOR_QA_TIMEOUT", "qa_timeout"))

    # ---- state ---------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("ai-orchestrator")),
        validation_alias=_env("ORCHESTRATOR_DATA_DIR", "data_dir"),
    )
    database_url: str = Field("", validation_alias=_env("DATABASE_URL", "database_url"))

    # ---- policy --------------------------------------------------------------
    file_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, validation_alias=_env("ORCHESTRATOR_FILE_ROOTS", "file_roots")
    )
    command_timeout: float = Field(60.0, gt=0, validation_alias=_env("ORCHESTRATOR_COMMAND_TIMEOUT", "command_timeout"))
    output_cap: int = Field(16_000, ge=1000, validation_alias=_env("ORCHESTRATOR_OUTPUT_CAP", "output_cap"))
    allow_etc_writes: bool = Field(False, validation_alias=_env("ORCHESTRATOR_ALLOW_ETC_WRITES", "allow_etc_writes"))
    read_commands: CsvList = Field(
        default_factory=list, validation_alias=_env("ORCHESTRATOR_READ_COMMANDS", "read_commands")
    )
    deny_commands: CsvList = Field(
        default_factory=list, validation_alias=_env("ORCHESTRATOR_DENY_COMMANDS", "deny_commands")
    )
    sandbox: str = Field("auto", pattern="^(auto|bwrap|off)$", validation_alias=_env("ORCHESTRATOR_SANDBOX", "sandbox"))
    sandbox_hide: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, validation_alias=_env("ORCHESTRATOR_SANDBOX_HIDE", "sandbox_hide")
    )
    # one long-lived sandbox for every free command (nothing writable), or a bubblewrap each (private /tmp)
    sandbox_session: bool = Field(True, validation_alias=_env("ORCHESTRATOR_SANDBOX_SESSION", "sandbox_session"))
    # directories kept in git: approved writes there are committed (core/tools/gitops.py, docs/tools.md#gitops)
    gitops_paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, validation_alias=_env("ORCHESTRATOR_GITOPS_PATHS", "gitops_paths")
    )
    # `[commands.NAME]` tables in orchestrator.toml: read-only programs in the format of
    # core/command_table.toml (docs/security.md, "Adding a program").
    commands: dict[str, dict[str, Any]] = Field(
        default_factory=dict, validation_alias=_env("ORCHESTRATOR_COMMANDS", "commands")
    )

    # ---- approvals -----------------------------------------------------------
    approval_timeout: float = Field(
        600.0, gt=0, validation_alias=_env("ORCHESTRATOR_APPROVAL_TIMEOUT", "approval_timeout")
    )
    allow_self_approval: bool = Field(
        True, validation_alias=_env("ORCHESTRATOR_ALLOW_SELF_APPROVAL", "allow_self_approval")
    )
    quorum_write: int = Field(1, ge=1, validation_alias=_env("ORCHESTRATOR_QUORUM_WRITE", "quorum_write"))
    quorum_exec: int = Field(1, ge=1, validation_alias=_env("ORCHESTRATOR_QUORUM_EXEC", "quorum_exec"))
    console_approvers: CsvList = Field(
        default_factory=lambda: [getpass.getuser()],
        validation_alias=_env("ORCHESTRATOR_CONSOLE_APPROVERS", "console_approvers"),
    )

    # ---- Slack ---------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN", "slack_bot_token"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN", "slack_app_token"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_SIGNING_SECRET", "slack_signing_secret")
    )
    slack_http_port: int = Field(3000, validation_alias=_env("SLACK_HTTP_PORT", "slack_http_port"))
    slack_approvers: CsvList = Field(default_factory=list, validation_alias=_env("SLACK_APPROVERS", "slack_approvers"))
    slack_approver_groups: CsvList = Field(
        default_factory=list, validation_alias=_env("SLACK_APPROVER_GROUPS", "slack_approver_groups")
    )
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL", "slack_api_url"))
    slack_allowed_users: CsvList = Field(  # user ids, or * for every member of the workspace
        default_factory=list, validation_alias=_env("SLACK_ALLOWED_USERS", "slack_allowed_users")
    )
    slack_streaming: Literal["auto", "off"] = Field(  # auto: Slack's agent stream where Slack allows it
        "auto", validation_alias=_env("ORCHESTRATOR_SLACK_STREAMING", "slack_streaming")
    )
    slack_allowed_channels: CsvList = Field(  # empty: any channel the bot is in
        default_factory=list, validation_alias=_env("SLACK_ALLOWED_CHANNELS", "slack_allowed_channels")
    )

    # ---- Discord -------------------------------------------------------------
    discord_token: SecretStr | None = Field(None, validation_alias=_env("DISCORD_TOKEN", "discord_token"))
    discord_approvers: CsvList = Field(
        default_factory=list, validation_alias=_env("DISCORD_APPROVERS", "discord_approvers")
    )
    discord_approver_roles: CsvList = Field(
        default_factory=list, validation_alias=_env("DISCORD_APPROVER_ROLES", "discord_approver_roles")
    )
    discord_api_url: str = Field(
        "https://discord.com/api/v10", validation_alias=_env("DISCORD_API_URL", "discord_api_url")
    )
    discord_allowed_users: CsvList = Field(  # user ids, or * for everyone who can reach the bot
        default_factory=list, validation_alias=_env("DISCORD_ALLOWED_USERS", "discord_allowed_users")
    )
    discord_allowed_roles: CsvList = Field(
        default_factory=list, validation_alias=_env("DISCORD_ALLOWED_ROLES", "discord_allowed_roles")
    )
    discord_allowed_channels: CsvList = Field(  # empty: any channel the bot can see
        default_factory=list, validation_alias=_env("DISCORD_ALLOWED_CHANNELS", "discord_allowed_channels")
    )

    # ---- who may ask (docs/security.md#who-may-ask) ----------------------------
    dm_policy: str = Field(
        "pair", pattern="^(deny|pair)$", validation_alias=_env("ORCHESTRATOR_DM_POLICY", "dm_policy")
    )
    rate_limit: int = Field(10, ge=0, validation_alias=_env("ORCHESTRATOR_RATE_LIMIT", "rate_limit"))  # a minute

    # ---- memory --------------------------------------------------------------
    chroma_host: str = Field("", validation_alias=_env("CHROMA_HOST", "chroma_host"))
    chroma_port: int = Field(8000, validation_alias=_env("CHROMA_PORT", "chroma_port"))
    memory: bool = Field(True, validation_alias=_env("ORCHESTRATOR_MEMORY", "memory"))  # on/off
    embedding: str = Field(  # offline: multilingual (USE v3 + e5); use: USE v3 alone; minilm: English; docs/memory.md
        "offline", pattern="^(offline|use|minilm|ollama)$", validation_alias=_env("ORCHESTRATOR_EMBEDDING", "embedding")
    )
    embed_model: str = Field(  # used when embedding = "ollama"; the offline engines have one model each
        "nomic-embed-text", validation_alias=_env("ORCHESTRATOR_EMBED_MODEL", "embed_model")
    )
    recall_distance: float | None = Field(  # None: the engine's calibrated cut-off
        None, gt=0, lt=2, validation_alias=_env("ORCHESTRATOR_RECALL_DISTANCE", "recall_distance")
    )
    memory_tokens: int = Field(400, ge=0, validation_alias=_env("ORCHESTRATOR_MEMORY_TOKENS", "memory_tokens"))
    memory_extract: bool = Field(True, validation_alias=_env("ORCHESTRATOR_MEMORY_EXTRACT", "memory_extract"))

    # ---- backups (docs/tools.md#backups) -----------------------------------------
    backup_target: Path | None = Field(  # None: <data dir>/backups/system
        None, validation_alias=_env("ORCHESTRATOR_BACKUP_DIR", "backup_target")
    )
    backup_keep: int = Field(7, ge=1, validation_alias=_env("ORCHESTRATOR_BACKUP_KEEP", "backup_keep"))
    backup_cron: str = Field("0 2 * * sun", validation_alias=_env("ORCHESTRATOR_BACKUP_CRON", "backup_cron"))
    backup_databases: CsvList = Field(  # postgresql:// URLs or database names
        default_factory=list, validation_alias=_env("ORCHESTRATOR_BACKUP_DATABASES", "backup_databases")
    )
    backup_paths: CsvList = Field(  # directories or files put in the configs tarball
        default_factory=list, validation_alias=_env("ORCHESTRATOR_BACKUP_PATHS", "backup_paths")
    )
    backup_ollama: bool = Field(True, validation_alias=_env("ORCHESTRATOR_BACKUP_OLLAMA", "backup_ollama"))
    backup_pg_dump: str = Field("pg_dump", validation_alias=_env("ORCHESTRATOR_BACKUP_PG_DUMP", "backup_pg_dump"))
    backup_auto_prune: bool = Field(  # the weekly job may delete backups beyond retention without approval
        False, validation_alias=_env("ORCHESTRATOR_BACKUP_AUTO_PRUNE", "backup_auto_prune")
    )
    backup_auto_upload: bool = Field(  # the weekly job may upload to S3 without approval
        False, validation_alias=_env("ORCHESTRATOR_BACKUP_AUTO_UPLOAD", "backup_auto_upload")
    )
    backup_s3_endpoint: str = Field("", validation_alias=_env("ORCHESTRATOR_BACKUP_S3_ENDPOINT", "backup_s3_endpoint"))
    backup_s3_bucket: str = Field("", validation_alias=_env("ORCHESTRATOR_BACKUP_S3_BUCKET", "backup_s3_bucket"))
    backup_s3_prefix: str = Field("", validation_alias=_env("ORCHESTRATOR_BACKUP_S3_PREFIX", "backup_s3_prefix"))
    backup_s3_region: str = Field(
        "us-east-1", validation_alias=_env("ORCHESTRATOR_BACKUP_S3_REGION", "backup_s3_region")
    )
    backup_s3_access_key: str = Field(
        "", validation_alias=_env("ORCHESTRATOR_BACKUP_S3_ACCESS_KEY", "backup_s3_access_key")
    )
    backup_s3_secret_key: SecretStr | None = Field(
        None, validation_alias=_env("ORCHESTRATOR_BACKUP_S3_SECRET_KEY", "backup_s3_secret_key")
    )

    @field_validator("backup_databases", "backup_paths", mode="before")
    @classmethod
    def _backup_lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("backup_databases")
    @classmethod
    def _backup_database_entries(cls, value: list[str]) -> list[str]:
        from core.backup import parse_database

        for entry in value:
            parse_database(entry)  # a ValueError says which entry is wrong, without its password
        return value

    @field_validator("backup_cron")
    @classmethod
    def _backup_cron(cls, value: str) -> str:
        if value.strip() and len(value.split()) != 5:
            raise ValueError("a crontab expression has 5 fields (minute hour day month weekday), e.g. 0 2 * * sun")
        return value.strip()

    reports: ReportSettings = Field(default_factory=ReportSettings)

    # ---- the service endpoint: /healthz and /metrics while serving (docs/reports.md) ----
    metrics_port: int = Field(  # 0: off
        0, ge=0, le=65535, validation_alias=_env("ORCHESTRATOR_METRICS_PORT", "metrics_port")
    )
    metrics_host: str = Field(
        "127.0.0.1", min_length=1, validation_alias=_env("ORCHESTRATOR_METRICS_HOST", "metrics_host")
    )

    # ---- hosts ---------------------------------------------------------------
    hosts: dict[str, HostSettings] = Field(
        default_factory=dict, validation_alias=_env("ORCHESTRATOR_HOSTS", "hosts")
    )  # "local" (this machine) is always there; see docs/tools.md

    @field_validator("file_roots", mode="before")
    @classmethod
    def _roots(cls, value: Any) -> Any:
        return _split(value, os.pathsep)

    @field_validator("gitops_paths", mode="before")
    @classmethod
    def _gitops_paths(cls, value: Any) -> Any:
        return _split(value.replace(",", os.pathsep), os.pathsep) if isinstance(value, str) else value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _port_or_off(cls, value: Any) -> Any:
        return 0 if isinstance(value, str) and not value.strip() else value  # `ORCHESTRATOR_METRICS_PORT=`: off

    @field_validator("sandbox_hide", mode="before")
    @classmethod
    def _hide_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value:
            return value  # SQLite in the data directory; SQLAlchemy is not needed to say so
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL; use sqlite:////path/to/orchestrator.db or postgresql+psycopg://user:password@host/db"
            ) from None
        return value

    @field_validator("commands")
    @classmethod
    def _command_entries(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, spec in value.items():
            Program.from_table(name, spec)  # a ValueError names the entry and the key that is wrong
        return value

    @field_validator(
        "read_commands", "deny_commands", "console_approvers", "slack_approvers", "slack_approver_groups",
        "discord_approvers", "discord_approver_roles", "slack_allowed_users", "slack_allowed_channels",
        "discord_allowed_users", "discord_allowed_roles", "discord_allowed_channels", mode="before",
    )  # fmt: skip
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        toml_path = config_path()  # a ConfigurationError when ORCHESTRATOR_CONFIG names no file
        if toml_path is not None:
            check_keys(settings_cls, read_toml(toml_path))  # the syntax, and no misspelt key
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    # ---- derived -------------------------------------------------------------
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'orchestrator.db'}"

    @property
    def roots(self) -> list[Path]:
        return self.file_roots or [self.data_dir / "workspace"]

    def sandbox_hidden(self) -> list[Path]:
        """What sandboxed commands must not see: the bot's data, its configuration and database."""
        hidden = [self.data_dir, *self.sandbox_hide]
        for candidate in (Path(".env"), Path(os.environ.get(CONFIG_ENV, "orchestrator.toml"))):
            if candidate.is_file():
                hidden.append(candidate.resolve())
        if self.db_url.startswith("sqlite:///"):
            database = Path(self.db_url.removeprefix("sqlite:///"))
            hidden += [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
        return hidden

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / "backups"

    def secrets(self) -> list[str]:
        """Every configured secret value, so the redactor can remove them wherever they appear.

        Every `SecretStr` setting (tokens, signing secret, also in nested tables) and the
        password of every URL setting that holds one (`DATABASE_URL`, a Docker or Chroma URL).
        """
        return sorted(set(_secret_values(self)))


# scheme://user:password@host…: the password may hold "/" or ":", never an unencoded "@"
_URL_PASSWORD = re.compile(r"[A-Za-z][\w+.-]*://[^:/@\s]*:(?P<password>[^@\s]+)@")


def _secret_values(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str):
        if found := _URL_PASSWORD.match(value):
            yield found.group("password")
            yield unquote(found.group("password"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_values(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_values(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _secret_values(item)


def load_settings(**overrides: Any) -> Settings:
    """The settings, or a `ConfigurationError` saying which value is wrong and where it was set."""
    try:
        return Settings(**overrides)
    except (ValidationError, SettingsError) as exc:
        raise explain(exc, Settings) from None


def where_set(name: str) -> str:
    """Where a setting's value came from, for a message about it: `ORCHESTRATOR_DATA_DIR`, or
    `data_dir in /etc/orchestrator.toml line 3`."""
    return Origins.load().where(Settings, name)
