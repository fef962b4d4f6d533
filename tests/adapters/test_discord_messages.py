"""What the Discord adapter writes, without a client: approval messages, names, one-line errors."""

from __future__ import annotations

import discord

from adapters.discord import messages as m
from adapters.discord.config import DiscordConfig, intents, invite_url, permissions
from adapters.discord.payloads import emoji_name, strip_mention
from core.events import ApprovalRequested, ApprovalResolved, Risk


def requested(detail: str, kind: str = "argv", summary: str = "run it") -> ApprovalRequested:
    return ApprovalRequested(
        run_id=1, approval_id=7, tool="run_command", risk=Risk.EXEC, summary=summary, detail=detail,
        detail_kind=kind, host="web-1", expires_at=1_900_000_000.0, requested_by="discord:4002",
    )  # fmt: skip


def test_the_approval_message_shows_the_exact_command_host_expiry_and_who_decides() -> None:
    text, attach = m.approval_message(
        requested("systemctl restart nginx"), approvers=frozenset({"4001"}), roles=frozenset({"2001"}),
        approve="✅", deny="❌",
    )  # fmt: skip
    assert not attach
    assert "(exec on web-1)" in text
    assert "```\n$ systemctl restart nginx\n```" in text
    assert "Approval #7 · asked by <@4002> · expires <t:1900000000:T> (<t:1900000000:R>)" in text
    assert text.endswith("React ✅ to approve or ❌ to deny. Approvers: <@4001>, <@&2001>.")


def test_a_long_diff_is_previewed_in_a_diff_block_and_attached_whole() -> None:
    diff = "--- a/big.conf\n+++ b/big.conf\n" + "".join(f"+line {i}\n" for i in range(400))
    text, attach = m.approval_message(
        requested(diff, "diff", "write big.conf"), approvers=frozenset(), roles=frozenset(), approve="✅", deny="❌"
    )
    assert attach and len(text) <= m.LIMIT
    assert "```diff\n--- a/big.conf\n" in text and "\n…\n```" in text
    assert "The full diff (402 lines) is attached" in text
    assert "Nobody is configured to approve" in text
    assert text.count("```") == 2


def test_backticks_in_a_command_cannot_close_the_code_block_early() -> None:
    text, _ = m.approval_message(
        requested("echo ```oops```"), approvers=frozenset(), roles=frozenset(), approve="✅", deny="❌"
    )
    assert text.count("```") == 2


def test_deciders_are_shown_as_mentions_and_timeouts_as_such() -> None:
    approved = ApprovalResolved(1, 7, True, "discord:4001,discord:4005")
    assert m.resolution(approved) == "▶️ **Result:** Approved by <@4001>, <@4005>."
    late = ApprovalResolved(1, 7, False, "timeout", "no decision within 600 s")
    assert m.resolution(late) == "⛔ **Result:** Not approved in time: denied (no decision within 600 s)."


def test_failures_are_one_line() -> None:
    line = m.failure_line("Traceback:\n  boom\n" + "x" * 1000)
    assert "\n" not in line and len(line) < 400 and line.startswith("❌ Sorry, that failed: Traceback: boom")


def test_thread_names_fit_discord() -> None:
    assert m.thread_name("  why is\nthe disk full?  ", fallback="q") == "why is the disk full?"
    assert len(m.thread_name("x" * 500, fallback="q")) <= 100
    assert m.thread_name("", fallback="question from alice") == "question from alice"


def test_mentions_of_the_bot_and_its_role_are_stripped_and_emoji_variants_compare_equal() -> None:
    assert strip_mention("<@1000> disk? <@!1000> <@&2002>", 1000, [2002]) == "disk?"
    assert emoji_name("✔️") == emoji_name("✔") and emoji_name(discord.PartialEmoji(name="✅")) == "✅"


def test_the_invite_asks_for_exactly_the_documented_permissions_and_intents() -> None:
    assert permissions().value == 309237746752  # the number in docs/discord.md
    assert invite_url(123) == "https://discord.com/oauth2/authorize?client_id=123&scope=bot&permissions=309237746752"
    wanted = intents()
    assert wanted.message_content and wanted.members and wanted.guild_reactions and wanted.dm_messages
    assert not wanted.presences and not wanted.typing


def test_a_token_with_the_bot_prefix_is_refused_before_connecting() -> None:
    assert DiscordConfig(token="").problems()
    assert "without the 'Bot ' prefix" in DiscordConfig(token="Bot abc").problems()[0]
    assert DiscordConfig(token="abc.def.ghi").problems() == []
