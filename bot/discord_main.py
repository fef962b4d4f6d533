"""`orchestrator run discord`: the Discord adapter built from settings and the core services."""

from __future__ import annotations

from adapters.discord import DiscordAdapter, DiscordConfig
from bot.app import Services
from bot.runner import ConfigurationError
from bot.settings import Settings
from core.access import DmPolicy


def discord_config(settings: Settings) -> DiscordConfig:
    token = settings.discord_token.get_secret_value() if settings.discord_token is not None else ""
    return DiscordConfig(
        token=token,
        api_url=settings.discord_api_url,
        approvers=frozenset(settings.discord_approvers),
        approver_roles=frozenset(settings.discord_approver_roles),
        allowed_users=frozenset(settings.discord_allowed_users),
        allowed_roles=frozenset(settings.discord_allowed_roles),
        allowed_channels=frozenset(settings.discord_allowed_channels),
        dm_policy=DmPolicy(settings.dm_policy),
        rate_limit=settings.rate_limit,
    )


def make_discord_adapter(settings: Settings, services: Services) -> DiscordAdapter:
    config = discord_config(settings)
    problems = config.problems()
    if problems:  # said before connecting, in the operator's words, rather than as a login traceback
        raise ConfigurationError("; ".join(problems) + " (see docs/discord.md)")
    return DiscordAdapter(config, agent=services.agent, gate=services.gate, store=services.store)
