"""The chat platforms the bot serves (`orchestrator run slack|discord|all`), listed once.

For each: whether the settings configure it, its adapter's config built from the settings,
and the factory that builds its adapter over the shared services. A platform's SDK is
imported only when that platform is built: `run slack` never loads discord.py, nor
`run discord` the Slack SDK; and this module itself loads nothing heavy, so the CLI's
parser can name the platforms (tests/test_startup.py holds to both).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from adapters.base import ChatAdapter
    from adapters.discord import DiscordAdapter, DiscordConfig
    from adapters.slack import SlackAdapter, SlackConfig
    from bot.app import Services
    from bot.settings import Settings

PLATFORMS = ("slack", "discord")

AdapterFactory = Callable[["Settings", "Services"], "ChatAdapter"]


def configured(settings: Settings, platform: str) -> bool:
    """Whether the settings give `platform` its token (what `run all` serves, what doctor checks)."""
    if platform == "slack":
        return settings.slack_bot_token is not None
    return settings.discord_token is not None


@dataclass(frozen=True)
class People:
    """Who decides and who may ask on one platform, as its settings say, with the settings' names
    (for the gate's rules, doctor's access check, pairing and the reports channel)."""

    platform: str
    approvers: tuple[str, ...]
    approver_groups: tuple[str, ...]  # Slack user groups, Discord roles
    allowed_users: tuple[str, ...]
    allowed_roles: tuple[str, ...]
    allowed_channels: tuple[str, ...]
    reports_channel: str
    approver_settings: str  # where the approvers are set, in the operator's words
    everyone: str  # who `*` in the allowlist lets ask

    def allowed_by(self, user: str) -> str:
        """The setting that lets `user` ask without a pairing, or ""."""
        env = self.platform.upper()
        lists = ((f"{env}_APPROVERS", self.approvers), (f"{env}_ALLOWED_USERS", self.allowed_users))
        return next((name for name, ids in lists if user in ids or "*" in ids), "")


def people(settings: Settings, platform: str) -> People:
    if platform == "slack":
        return People(
            "slack",
            approvers=tuple(settings.slack_approvers),
            approver_groups=tuple(settings.slack_approver_groups),
            allowed_users=tuple(settings.slack_allowed_users),
            allowed_roles=(),
            allowed_channels=tuple(settings.slack_allowed_channels),
            reports_channel=settings.reports.slack_channel,
            approver_settings="SLACK_APPROVERS or SLACK_APPROVER_GROUPS",
            everyone="every member of the workspace",
        )
    return People(
        "discord",
        approvers=tuple(settings.discord_approvers),
        approver_groups=tuple(settings.discord_approver_roles),
        allowed_users=tuple(settings.discord_allowed_users),
        allowed_roles=tuple(settings.discord_allowed_roles),
        allowed_channels=tuple(settings.discord_allowed_channels),
        reports_channel=settings.reports.discord_channel,
        approver_settings="DISCORD_APPROVERS or DISCORD_APPROVER_ROLES",
        everyone="everyone who can reach the bot",
    )


# ---- Slack ----------------------------------------------------------------------------------
def slack_config(settings: Settings) -> SlackConfig:
    from adapters.slack import SlackConfig
    from core.access import DmPolicy

    def secret(value: SecretStr | None) -> str:
        return value.get_secret_value() if value is not None else ""

    who = people(settings, "slack")
    return SlackConfig(
        bot_token=secret(settings.slack_bot_token),
        app_token=secret(settings.slack_app_token),
        signing_secret=secret(settings.slack_signing_secret),
        http_port=settings.slack_http_port,
        api_url=settings.slack_api_url,
        approvers=frozenset(who.approvers),
        approver_groups=who.approver_groups,
        allowed_users=frozenset(who.allowed_users),
        allowed_channels=frozenset(who.allowed_channels),
        dm_policy=DmPolicy(settings.dm_policy),
        rate_limit=settings.rate_limit,
        streaming=settings.slack_streaming != "off",
        fetch_images=bool(settings.vision_model),
    )


def make_slack_adapter(settings: Settings, services: Services) -> SlackAdapter:
    from adapters.slack import SlackAdapter

    config = slack_config(settings)
    problems = config.problems()
    if problems:
        raise ConfigurationError("Slack is not configured: " + "; ".join(problems) + " (see docs/slack.md)")
    return SlackAdapter(config, agent=services.agent, gate=services.gate, store=services.store)


# ---- Discord --------------------------------------------------------------------------------
def discord_config(settings: Settings) -> DiscordConfig:
    from adapters.discord import DiscordConfig
    from core.access import DmPolicy

    token = settings.discord_token.get_secret_value() if settings.discord_token is not None else ""
    who = people(settings, "discord")
    return DiscordConfig(
        token=token,
        api_url=settings.discord_api_url,
        approvers=frozenset(who.approvers),
        approver_roles=frozenset(who.approver_groups),
        allowed_users=frozenset(who.allowed_users),
        allowed_roles=frozenset(who.allowed_roles),
        allowed_channels=frozenset(who.allowed_channels),
        dm_policy=DmPolicy(settings.dm_policy),
        rate_limit=settings.rate_limit,
        fetch_images=bool(settings.vision_model),
    )


def make_discord_adapter(settings: Settings, services: Services) -> DiscordAdapter:
    from adapters.discord import DiscordAdapter

    config = discord_config(settings)
    problems = config.problems()
    if problems:  # said before connecting, in the operator's words, rather than as a login traceback
        raise ConfigurationError("; ".join(problems) + " (see docs/discord.md)")
    return DiscordAdapter(config, agent=services.agent, gate=services.gate, store=services.store)


# ---- all of them ----------------------------------------------------------------------------
_ADAPTERS: dict[str, tuple[str, AdapterFactory]] = {
    "slack": ("adapters.slack", make_slack_adapter),
    "discord": ("adapters.discord", make_discord_adapter),
}


def adapter_factories(platforms: Iterable[str] = PLATFORMS) -> dict[str, AdapterFactory]:
    """The adapter factory of each of `platforms` this installation has. Only those are imported."""
    wanted = set(platforms)
    factories: dict[str, AdapterFactory] = {}
    for name in PLATFORMS:
        if name not in wanted:
            continue
        module, factory = _ADAPTERS[name]
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - only while an adapter is being developed
            continue
        factories[name] = factory
    return factories
