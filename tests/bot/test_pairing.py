"""`orchestrator pairing list|approve|revoke` as the operator runs it (a real subprocess), on a
database where a stranger's DM left a code; and `orchestrator doctor`'s warnings about who may
ask and approve."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from core.access import new_code
from core.store import Store, default_sqlite_url
from core.store.models import Pairing
from tests.fakes.ollama import FakeOllama
from tests.support.cli import run_cli


@pytest.fixture
def env(tmp_path: Path, fake_ollama: FakeOllama) -> dict[str, str]:
    (tmp_path / "ws").mkdir()
    return {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_FILE_ROOTS": str(tmp_path / "ws"),
        "ORCHESTRATOR_CONSOLE_APPROVERS": "ops",
        "ORCHESTRATOR_MEMORY": "off",
        "USER": "ops",
        "LOGNAME": "ops",
        "_CWD": str(tmp_path),
    }


def offer_code(env: dict[str, str], user: str = "UNEW", *, ago: float = 0) -> Pairing:
    """What a stranger's DM leaves in the store: a pending code."""

    async def work() -> Pairing:
        data = Path(env["ORCHESTRATOR_DATA_DIR"])
        data.mkdir(exist_ok=True)
        store = Store(default_sqlite_url(data))
        await store.init()
        try:
            row, _ = await store.pairing_request(
                "slack", user, user_name="Newcomer", now=time.time() - ago, ttl=3600, make_code=new_code
            )
            return row
        finally:
            await store.close()

    return asyncio.run(work())


def audit(env: dict[str, str]) -> list[dict[str, object]]:
    proc = run_cli(["audit", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return [e for e in json.loads(proc.stdout) if "pairing" in str(e["action"])]


def test_list_approve_and_revoke_from_the_shell(env: dict[str, str]) -> None:
    code = offer_code(env).code
    listed = run_cli(["pairing", "list"], env)
    assert listed.returncode == 0, listed.stderr
    assert "pending" in listed.stdout and "slack:UNEW (Newcomer)" in listed.stdout and code in listed.stdout

    typed = f"{code[:4].lower()}-{code[4:].lower()}"  # as a person might type it back
    approved = run_cli(["pairing", "approve", typed], env)
    assert approved.returncode == 0, approved.stderr
    assert "approved: slack:UNEW (Newcomer) may now ask" in approved.stdout
    again = run_cli(["pairing", "approve", code], env)
    assert again.returncode == 1 and "already approved by console:ops" in again.stderr  # single-use

    listed = run_cli(["pairing", "list", "--json"], env)
    [row] = json.loads(listed.stdout)
    assert (row["user_id"], row["status"], row["decided_by"]) == ("UNEW", "approved", "console:ops")

    revoked = run_cli(["pairing", "revoke", "slack:UNEW"], env)
    assert revoked.returncode == 0 and "revoked: slack:UNEW" in revoked.stdout
    assert run_cli(["pairing", "revoke", "slack:UNEW"], env).returncode == 1
    assert "nobody paired" in run_cli(["pairing", "list"], env).stdout
    assert "revoked" in run_cli(["pairing", "list", "--all"], env).stdout

    trail = audit(env)
    assert [(e["action"], e["actor"], e["decider"]) for e in trail] == [
        ("pairing_requested", "slack:UNEW", ""),
        ("pairing_approved", "slack:UNEW", "console:ops"),
        ("pairing_revoked", "slack:UNEW", "console:ops"),
    ]


def test_unknown_expired_codes_and_non_approvers_change_nothing(env: dict[str, str]) -> None:
    unknown = run_cli(["pairing", "approve", "ZZZZ2222"], env)
    assert unknown.returncode == 1 and "no pairing code" in unknown.stderr

    stale = offer_code(env, "UOLD", ago=3601).code
    expired = run_cli(["pairing", "approve", stale], env)
    assert expired.returncode == 1 and "has expired" in expired.stderr

    fresh = offer_code(env, "UNEW").code
    outsider = run_cli(["pairing", "approve", fresh], env | {"USER": "intern", "LOGNAME": "intern"})
    assert outsider.returncode == 1 and "only the console approvers" in outsider.stderr
    assert [e["action"] for e in audit(env)] == ["pairing_requested", "pairing_requested"]

    assert run_cli(["pairing", "revoke", "UNEW"], env).returncode == 2  # PLATFORM:USER
    note = run_cli(["pairing", "revoke", "slack:UADA"], env | {"SLACK_ALLOWED_USERS": "UADA"})
    assert note.returncode == 1 and "still allowed by SLACK_ALLOWED_USERS" in note.stderr


def test_doctor_warns_about_nobody_to_approve_and_star_askers(env: dict[str, str]) -> None:
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    lonely = run_cli(["doctor"], env | slack)
    assert "[WARN] slack access: nobody may approve" in lonely.stdout
    assert "only paired people may ask" in lonely.stdout and "fix: set SLACK_APPROVERS" in lonely.stdout
    assert lonely.returncode == 0, lonely.stdout  # a warning, not a failure

    everyone = run_cli(["doctor"], env | slack | {"SLACK_APPROVERS": "UADMIN", "SLACK_ALLOWED_USERS": "*"})
    assert "[WARN] slack access: SLACK_ALLOWED_USERS=* lets every member of the workspace ask" in everyone.stdout
    assert "nobody may approve" not in everyone.stdout

    fine = run_cli(["doctor"], env | {"DISCORD_TOKEN": "t", "DISCORD_APPROVER_ROLES": "2001"})
    assert "[ok  ] discord access: the approvers may ask in any channel; strangers' DMs: pair" in fine.stdout
    assert "slack access" not in fine.stdout  # not configured: nothing to say
