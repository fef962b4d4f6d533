"""`orchestrator run slack`: the Slack adapter built from settings and the shared services."""

from __future__ import annotations

from pydantic import SecretStr

from adapters.slack import SlackAdapter, SlackConfig
from bot.app import Services
from bot.runner import ConfigurationError
from bot.settings import Settings
from core.access import DmPolicy


def slack_config(settings: Settings) -> SlackConfig:
    def secret(value: SecretStr | None) -> str:
        return value.get_secret_value() if value is not None else ""

    return SlackConfig(
        bot_token=secret(settings.slack_bot_token),
        app_token=secret(settings.slack_app_token),
        signing_secret=secret(settings.slack_signing_secret),
        http_port=settings.slack_http_port,
        api_url=settings.slack_api_url,
        approvers=frozenset(settings.slack_approvers),
        approver_groups=tuple(settings.slack_approver_groups),
        allowed_users=frozenset(settings.slack_allowed_users),
        allowed_channels=frozenset(settings.slack_allowed_channels),
        dm_policy=DmPolicy(settings.dm_policy),
        rate_limit=settings.rate_limit,
        streaming=settings.slack_streaming != "off",
    )


def make_slack_adapter(settings: Settings, services: Services) -> SlackAdapter:
    config = slack_config(settings)
    problems = config.problems()
    if problems:
        raise ConfigurationError("Slack is not configured: " + "; ".join(problems) + " (see docs/slack.md)")
    return SlackAdapter(config, agent=services.agent, gate=services.gate, store=services.store)
