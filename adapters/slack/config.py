"""What the Slack adapter needs to know, as plain data (the adapter never reads bot settings)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from adapters.intake import RETRY_DELAYS
from adapters.outbox import DEFAULT_BACKOFF, Backoff
from core.access import AccessRules, DmPolicy

from .payloads import PLATFORM

SLACK_API_URL = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"  # bolt's default request URL path


class Mode(StrEnum):
    SOCKET = "socket"  # outbound WebSocket: no public URL needed
    HTTP = "http"  # Slack POSTs signed requests to a public URL


@dataclass(frozen=True, slots=True)
class SlackConfig:
    bot_token: str
    app_token: str = ""
    signing_secret: str = ""
    http_port: int = 3000
    http_host: str = "0.0.0.0"  # Slack must reach the request URL
    http_path: str = EVENTS_PATH
    api_url: str = SLACK_API_URL
    approvers: frozenset[str] = frozenset()  # user ids, shown in approval messages
    approver_groups: tuple[str, ...] = ()  # user group ids (S…); membership is looked up
    #: Seconds between two posts or edits in one channel (Slack allows about one per second).
    pace: float = 1.0
    #: Show runs in Slack's agent stream where the workspace allows it (else: an edited message).
    streaming: bool = True
    working_reaction: str = "eyes"  # put on a message the bot is working on
    #: Reactions that decide an approval; the first of each is the one the bot adds.
    approve_reactions: tuple[str, ...] = ("white_check_mark", "heavy_check_mark")
    deny_reactions: tuple[str, ...] = ("x", "no_entry", "no_entry_sign")
    #: Who may ask besides the approvers: user ids, or `*` for every member of the workspace.
    allowed_users: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()  # channel ids; empty: any channel the bot is in
    dm_policy: DmPolicy = DmPolicy.PAIR  # what a stranger's DM gets
    rate_limit: int = 10  # requests per minute per person (0: no limit)
    runs_per_user: int = 2  # runs at once per person; a further one waits its turn
    #: Posts Slack refused for a reason that may pass, and gave no Retry-After for (5xx, network).
    delivery_backoff: Backoff = DEFAULT_BACKOFF
    #: Waits between attempts to store a new request before telling the person to try again.
    store_retry_delays: tuple[float, ...] = RETRY_DELAYS
    #: Download the images attached to a request (a vision model is configured to look at them);
    #: needs the `files:read` scope.
    fetch_images: bool = False

    @property
    def mode(self) -> Mode:
        """Socket Mode whenever an app-level token is set; HTTP mode with only a signing secret."""
        return Mode.SOCKET if self.app_token else Mode.HTTP

    def access_rules(self) -> AccessRules:
        return AccessRules(
            platform=PLATFORM,
            users=self.allowed_users,
            channels=self.allowed_channels,
            approvers=self.approvers,
            approver_roles=frozenset(self.approver_groups),
            dm_policy=self.dm_policy,
            rate_limit=self.rate_limit,
            max_running=self.runs_per_user,
        )

    def problems(self) -> list[str]:
        """What is missing for `serve()`, phrased for the operator."""
        out: list[str] = []
        if not self.bot_token:
            out.append("SLACK_BOT_TOKEN is not set (the xoxb-… token from OAuth & Permissions)")
        if not self.app_token and not self.signing_secret:
            out.append(
                "set SLACK_APP_TOKEN (xapp-…, Socket Mode, no public URL needed) "
                "or SLACK_SIGNING_SECRET (HTTP mode, Slack posts to a public request URL)"
            )
        if self.app_token and not self.app_token.startswith("xapp-"):
            out.append("SLACK_APP_TOKEN must be an app-level token (xapp-…) with the connections:write scope")
        return out
