"""Slack: mention the bot or DM it, watch it think in the thread, approve with a reaction.

`SlackAdapter` is built on slack-bolt's `AsyncApp` (Socket Mode or HTTP); see docs/slack.md.
"""

from .adapter import AgentRunner, SlackAdapter, SlackSetupError
from .config import Mode, SlackConfig

__all__ = ["AgentRunner", "Mode", "SlackAdapter", "SlackConfig", "SlackSetupError"]
