"""What the Discord adapter needs to know, as plain data (the adapter never reads bot settings)."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from adapters.intake import RETRY_DELAYS
from adapters.outbox import DEFAULT_BACKOFF, Backoff
from core.access import AccessRules, DmPolicy
from core.errors import AdapterSetupError

from .payloads import PLATFORM

DISCORD_API_URL = "https://discord.com/api/v10"


class DiscordSetupError(AdapterSetupError):
    """Discord refused the bot (bad token, intents not enabled…); the message says how to fix it."""


def intents() -> discord.Intents:
    """Exactly what the bot reads. `message_content` and `members` are privileged: see docs/discord.md."""
    wanted = discord.Intents.none()
    wanted.guilds = True  # channels, threads and roles of the servers the bot is in
    wanted.guild_messages = True
    wanted.message_content = True  # follow-ups in a thread carry no mention, so the bot must read them
    wanted.members = True  # role changes reach the cache, so role-based approvers stay current
    wanted.guild_reactions = True  # ✅ / ❌ on approval messages
    wanted.dm_messages = True
    wanted.dm_reactions = True
    return wanted


def permissions() -> discord.Permissions:
    """What the bot does in a channel; the invite URL asks for exactly these."""
    return discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        create_public_threads=True,
        add_reactions=True,
        read_message_history=True,  # to react to and open threads on older messages
        attach_files=True,  # long answers, long diffs and report charts
    )


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(application_id, permissions=permissions(), scopes=("bot",))


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    token: str
    #: REST base URL. Large deployments put an HTTP rate-limit proxy in front of Discord;
    #: the gateway (websocket) always goes to Discord itself.
    api_url: str = DISCORD_API_URL
    approvers: frozenset[str] = frozenset()  # user ids, shown in approval messages
    approver_roles: frozenset[str] = frozenset()  # role ids; whoever has one may decide
    #: Seconds discord.py waits after the last server arrives before it calls the bot ready.
    guild_ready_timeout: float = 2.0
    #: Discord allows about 5 message creates or edits per 5 s per channel (a thread is a channel).
    pace_ops: int = 5
    pace_window: float = 5.0
    #: `Pacer` counts a call when it starts, Discord when it arrives; request latency varies by a few
    #: milliseconds locally and more over the internet, so the window is kept this much longer.
    pace_margin: float = 0.25
    working_reaction: str = "👀"  # put on a message while the bot works on it
    #: Reactions that decide an approval; the first of each is the one the bot adds.
    approve_reactions: tuple[str, ...] = ("✅", "☑️", "✔️")
    deny_reactions: tuple[str, ...] = ("❌", "✖️", "🚫", "⛔")
    #: Answers longer than this are attached as a file instead of split into messages.
    answer_file_chars: int = 6000
    #: Messages discord.py keeps in memory; approvals never depend on it (they are looked up in the store).
    max_messages: int | None = 1000
    #: How long `post_report` / `post_in_thread` wait for the first connection before giving up.
    ready_timeout: float = 120.0
    #: Who may ask besides the approvers: user ids (or `*`), and role ids whose holders may.
    allowed_users: frozenset[str] = frozenset()
    allowed_roles: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()  # channel ids (a thread counts as its parent); empty: any
    dm_policy: DmPolicy = DmPolicy.PAIR  # what a stranger's DM gets
    rate_limit: int = 10  # requests per minute per person (0: no limit)
    runs_per_user: int = 2  # runs at once per person; a further one waits its turn
    #: Posts Discord refused for a reason that may pass, and gave no delay for (5xx, network).
    delivery_backoff: Backoff = DEFAULT_BACKOFF
    #: Waits between attempts to store a new request before telling the person to try again.
    store_retry_delays: tuple[float, ...] = RETRY_DELAYS
    #: Download the images attached to a request (a vision model is configured to look at them).
    fetch_images: bool = False

    def access_rules(self) -> AccessRules:
        return AccessRules(
            platform=PLATFORM,
            users=self.allowed_users,
            roles=self.allowed_roles,
            channels=self.allowed_channels,
            approvers=self.approvers,
            approver_roles=self.approver_roles,
            dm_policy=self.dm_policy,
            rate_limit=self.rate_limit,
            max_running=self.runs_per_user,
        )

    def problems(self) -> list[str]:
        """What is missing for `serve()`, phrased for the operator."""
        out: list[str] = []
        token = self.token.strip()
        if not token:
            out.append("DISCORD_TOKEN is not set (Developer Portal → your application → Bot → Reset Token)")
        elif token.lower().startswith("bot "):
            out.append("DISCORD_TOKEN must be the token alone, without the 'Bot ' prefix")
        elif " " in token:
            out.append("DISCORD_TOKEN contains a space: copy the token again from the Developer Portal")
        return out
