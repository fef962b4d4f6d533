"""What the Slack adapter writes and reads, without a network: mrkdwn, approval text, payloads."""

from __future__ import annotations

import pytest

from adapters.slack import Mode, SlackConfig
from adapters.slack.approvals import reaction_name
from adapters.slack.messages import (
    approval_message,
    escape,
    failure_line,
    mrkdwn,
    requester,
    resolution,
)
from adapters.slack.payloads import as_message, normalise, strip_mention, to_request
from core.events import ApprovalRequested, ApprovalResolved, Risk

BOT = "UBOT"


def approval(detail: str, kind: str = "argv") -> ApprovalRequested:
    return ApprovalRequested(
        run_id=1, approval_id=4, tool="run_command", risk=Risk.EXEC, summary=f"run {detail[:40]}",
        detail=detail, detail_kind=kind, host="web1", expires_at=1_700_000_600.0, requested_by="slack:U1",
    )  # fmt: skip


def test_untrusted_text_can_never_ping_or_forge_a_mention() -> None:
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert mrkdwn("hey <!here>") == "hey &lt;!here&gt;"
    text, _ = approval_message(approval("echo <!channel>"), approvers=frozenset(), groups=(), limit=3000)
    assert "<!channel>" not in text and "$ echo &lt;!channel&gt;" in text


def test_markdown_becomes_mrkdwn_outside_code_blocks() -> None:
    src = "# Disk\n**full** at __97 %__, see [the runbook](https://wiki.example/disk) ~~now~~\n```\n**as is**\n```"
    assert mrkdwn(src).splitlines() == [
        "*Disk*",
        "*full* at *97 %*, see <https://wiki.example/disk|the runbook> ~now~",
        "```",
        "**as is**",
        "```",
    ]


def test_approval_message_shows_the_exact_argv_host_expiry_and_approvers() -> None:
    text, attach = approval_message(
        approval("systemctl restart nginx"), approvers=frozenset({"UB", "UA"}), groups=("S1",), limit=3000
    )
    assert not attach
    lines = text.splitlines()
    assert lines[0] == ":warning: *Approval needed (exec on web1): run_command wants to run this command*"
    assert "```\n$ systemctl restart nginx\n```" in text
    assert "Approval #4 · asked by <@U1> · expires <!date^1700000600^{time}|" in text
    assert lines[-1] == "React :white_check_mark: to approve or :x: to deny. Approvers: <@UA>, <@UB>, <!subteam^S1>."
    nobody, _ = approval_message(approval("true"), approvers=frozenset(), groups=(), limit=3000)
    assert "Nobody is configured to approve (SLACK_APPROVERS)" in nobody


def test_a_long_diff_is_previewed_and_flagged_for_attachment() -> None:
    diff = "".join(f"+line {n}\n" for n in range(2000))
    text, attach = approval_message(approval(diff, "diff"), approvers=frozenset({"UA"}), groups=(), limit=3000)
    assert attach and len(text) <= 3000
    assert "The full diff (2001 lines) is attached below" in text
    assert text.splitlines()[-1].startswith("React")  # the hint stays last: it is replaced by the outcome


def test_a_code_fence_in_the_action_cannot_close_the_block() -> None:
    text, _ = approval_message(approval("echo ```x```", "text"), approvers=frozenset(), groups=(), limit=3000)
    assert text.count("```") == 2


def test_resolution_names_slack_users_and_plain_deciders() -> None:
    approved = ApprovalResolved(1, 4, True, "slack:UA,slack:UB")
    assert resolution(approved) == ":arrow_forward: *Result:* Approved by <@UA>, <@UB>."
    late = ApprovalResolved(1, 4, False, "timeout", "no decision within 600 s")
    assert resolution(late) == ":no_entry: *Result:* Not approved in time: denied (no decision within 600 s)."
    assert requester("slack:scheduler") == "scheduler"


def test_failure_is_one_escaped_line() -> None:
    line = failure_line("cannot reach <ollama>\n  at line 3\n" + "x" * 400)
    assert "\n" not in line and line.startswith("Sorry, that failed: cannot reach &lt;ollama&gt; at line 3")
    assert len(line) < 360 and line.endswith("…")


def test_normalise_keeps_people_and_drops_bots_and_edits() -> None:
    event = {"type": "message", "user": "U1", "text": "<@UBOT|orchestrator> df please", "ts": "2.0",
             "thread_ts": "1.0", "channel": "C1", "channel_type": "channel"}  # fmt: skip
    msg = normalise(as_message(event), BOT)
    assert msg is not None
    assert (msg.text, msg.thread, msg.in_thread) == ("df please", "1.0", True)
    assert msg.mentions_bot and not msg.is_private
    req = to_request(msg, user_name="ada")
    assert (req.platform, req.channel, req.thread, req.user_id, req.user_name) == ("slack", "C1", "1.0", "U1", "ada")
    dm = normalise(as_message({"type": "message", "user": "U1", "text": "hi", "ts": "3.0", "channel": "D9"}), BOT)
    assert dm is not None and dm.is_dm and dm.is_private and dm.thread == "3.0" and not dm.in_thread
    for extra in ({"bot_id": "B2"}, {"subtype": "message_changed"}, {"subtype": "bot_message"}, {"user": BOT}):
        assert normalise(as_message(event | extra), BOT) is None
    assert normalise(as_message(event | {"subtype": "file_share"}), BOT) is not None
    assert strip_mention("<@UBOT> <@UOTHER> hi", BOT) == "<@UOTHER> hi"


def test_reaction_names_ignore_skin_tones_and_colons() -> None:
    assert reaction_name("+1::skin-tone-3") == "+1"
    assert reaction_name(":white_check_mark:") == "white_check_mark"


@pytest.mark.parametrize(
    ("config", "mode", "problem"),
    [
        (SlackConfig(bot_token="xoxb-1", app_token="xapp-1"), Mode.SOCKET, ""),
        (SlackConfig(bot_token="xoxb-1", signing_secret="s"), Mode.HTTP, ""),
        (SlackConfig(bot_token="xoxb-1"), Mode.HTTP, "SLACK_APP_TOKEN (xapp-…, Socket Mode"),
        (SlackConfig(bot_token="", app_token="xapp-1"), Mode.SOCKET, "SLACK_BOT_TOKEN is not set"),
        (SlackConfig(bot_token="xoxb-1", app_token="xoxb-2"), Mode.SOCKET, "must be an app-level token"),
    ],
)
def test_config_mode_and_problems(config: SlackConfig, mode: Mode, problem: str) -> None:
    assert config.mode is mode
    problems = " ".join(config.problems())
    assert (problem in problems) if problem else problems == ""
