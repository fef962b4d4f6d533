"""Real commands in the real sandbox: nothing written, nothing secret, nothing inherited.

Under CI bubblewrap must be installed (.ci/system-deps.sh); elsewhere the tests that need it
skip with the reason.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import psutil
import pytest

from core.events import Request
from core.policy import Policy, PolicyConfig
from core.sandbox import Sandbox, SandboxConfig, SandboxUnavailable, find_bwrap
from core.tools.command import command_tools
from core.tools.registry import ToolContext, ToolOutput

pytestmark = [pytest.mark.asyncio]
if find_bwrap() is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("bubblewrap is required under CI: bash .ci/system-deps.sh installs it")
    pytestmark.append(pytest.mark.skip(reason="bubblewrap is not installed (apt-get install bubblewrap)"))

SECRET = "s3cret-value-never-shown"


@pytest.fixture
def world(tmp_path: Path) -> tuple[Sandbox, Path, Path]:
    root, outside, data = tmp_path / "root", tmp_path / "outside", tmp_path / "data"
    for d in (root, outside, data):
        d.mkdir()
    (root / "app.log").write_text("hello from the root\n")
    (outside / "secret.txt").write_text(SECRET)
    (data / "orchestrator.db").write_text(SECRET)
    (root / "escape").symlink_to(outside / "secret.txt")
    sandbox = Sandbox(SandboxConfig(file_roots=(root,), hidden=(outside, data)))
    return sandbox, root, data


async def run(sandbox: Sandbox, root: Path, *argv: str) -> str:
    result = await sandbox.run(argv, cwd=root, timeout=20, output_cap=20_000)
    return result.stdout + result.stderr


async def test_the_probe_finds_a_working_sandbox(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, _, _ = world
    status = await sandbox.probe()
    assert status.available, status.describe()


async def test_a_symlink_out_of_a_root_shows_nothing_secret(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, data = world
    assert "hello from the root" in await run(sandbox, root, "cat", "app.log")
    assert SECRET not in await run(sandbox, root, "cat", "escape")
    assert SECRET not in await run(sandbox, root, "cat", str(data / "orchestrator.db"))


async def test_shadow_and_home_directories_are_hidden(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    shadow = Path("/etc/shadow")
    if shadow.exists():
        out = await run(sandbox, root, "cat", "/etc/shadow")
        assert "root:" not in out
    assert (await run(sandbox, root, "ls", "-A", "/root")).strip() == ""


@pytest.mark.parametrize("target", ["{root}/new", "/etc/orch-test", "/var/tmp/orch-test", "/dev/shm/orch-test",
                                    "{data}/new", "/orch-test", "/usr/orch-test"])  # fmt: skip
async def test_a_free_command_cannot_create_a_file(world: tuple[Sandbox, Path, Path], target: str) -> None:
    sandbox, root, data = world
    path = target.format(root=root, data=data)
    out = await run(sandbox, root, "touch", path)
    assert "Read-only file system" in out or "Permission denied" in out or "No such file" in out, out
    assert not Path(path).exists()


async def test_alone_the_private_tmp_is_writable_and_gone_afterwards(world: tuple[Sandbox, Path, Path]) -> None:
    _, root, _ = world
    sandbox = Sandbox(SandboxConfig(file_roots=(root,), session=False))
    marker = "/tmp/orch-sandbox-marker"
    out = await run(sandbox, root, "sh", "-c", f"echo x > {marker} && cat {marker} && ls /tmp")
    assert out.startswith("x")
    assert not Path(marker).exists()  # the host's /tmp never saw it


async def test_the_environment_is_cleared(world: tuple[Sandbox, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, root, _ = world
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-fake-token-for-the-test")
    monkeypatch.setenv("HOME", "/root")
    names = {line.split("=", 1)[0] for line in (await run(sandbox, root, "env")).splitlines() if "=" in line}
    assert names <= {"PATH", "LANG", "TZ", "PWD"}, names


async def test_no_capabilities_no_new_privileges_and_the_bot_is_out_of_reach(
    world: tuple[Sandbox, Path, Path],
) -> None:
    sandbox, root, _ = world
    status = await run(sandbox, root, "cat", "/proc/self/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"].strip(), 16) == 0
    me = os.getpid()
    for path in (f"/proc/{me}/environ", f"/proc/{me}/root/etc/hostname", "/proc/1/environ"):
        out = await run(sandbox, root, "cat", path)
        assert "Permission denied" in out or out == "", (path, out)


async def test_the_host_processes_stay_visible_and_cwd_is_the_root(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    assert str(os.getpid()) in await run(sandbox, root, "ps", "-e", "-o", "pid")
    assert (await run(sandbox, root, "pwd")).strip() == str(root)


async def test_a_root_under_a_hidden_directory_stays_visible(tmp_path: Path) -> None:
    data = tmp_path / "data"
    root = data / "workspace"  # the default root lives in the (hidden) data directory
    root.mkdir(parents=True)
    (root / "note.txt").write_text("visible\n")
    (data / "orchestrator.db").write_text(SECRET)
    sandbox = Sandbox(SandboxConfig(file_roots=(root,), hidden=(data,)))
    assert "visible" in await run(sandbox, root, "cat", "note.txt")
    assert SECRET not in await run(sandbox, root, "cat", str(data / "orchestrator.db"))


async def test_a_timeout_kills_the_sandboxed_command(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    result = await sandbox.run(["sleep", "30"], cwd=root, timeout=1, output_cap=1000)
    assert result.timed_out


async def test_cwd_outside_the_roots_is_refused(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, _, _ = world
    with pytest.raises(SandboxUnavailable):
        await sandbox.run(["ls"], cwd=Path("/"), timeout=5, output_cap=1000)


async def test_without_a_sandbox_probe_says_why_and_run_refuses(tmp_path: Path) -> None:
    for config in (
        SandboxConfig(file_roots=(tmp_path,), mode="off"),
        SandboxConfig(file_roots=(tmp_path,), bwrap=str(tmp_path / "no-such-bwrap")),
    ):
        sandbox = Sandbox(config)
        status = await sandbox.probe()
        assert not status.available and status.fix
        with pytest.raises(SandboxUnavailable):
            await sandbox.run(["true"], cwd=tmp_path, timeout=5, output_cap=100)


# ---- through run_command ------------------------------------------------------------------


def _run_command(policy: Policy, sandbox: Sandbox):  # type: ignore[no-untyped-def]
    (spec,) = command_tools(policy, sandbox=sandbox)
    return spec


async def _call(spec, command: str) -> tuple[str, ToolOutput | None]:  # type: ignore[no-untyped-def]
    args = spec.validate({"command": command})
    plan = await spec.make_plan(args)
    if plan.risk != "read":
        return str(plan.risk), None
    ctx = ToolContext(request=Request(platform="console", user_id="t", channel="console", text=command), plan=plan)
    return "read", await spec.run(args, ctx)


async def test_run_command_runs_free_commands_in_the_sandbox(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    policy = Policy(PolicyConfig(file_roots=[root]))
    spec = _run_command(policy, sandbox)
    risk, out = await _call(spec, "cat app.log")
    assert risk == "read" and out is not None and "hello from the root" in out.text
    risk, out = await _call(spec, "ls -A /root")
    assert risk == "read" and out is not None and "(no output)" in out.text
    assert (await _call(spec, "sort --compress-program=sh app.log"))[0] == "exec"


async def test_without_a_sandbox_every_command_asks(world: tuple[Sandbox, Path, Path]) -> None:
    _, root, _ = world
    policy = Policy(PolicyConfig(file_roots=[root]))
    spec = _run_command(policy, Sandbox(SandboxConfig(file_roots=(root,), mode="off")))
    for command in ("df -h", "cat app.log", "uptime"):
        risk, out = await _call(spec, command)
        assert risk == "exec" and out is None, command


# ---- regressions: what bwrap leaves writable or reachable unless told -----------------------


@pytest.mark.parametrize("target", ["/dev/orch-test", "/run/orch-test", "/proc/orch-test"])
async def test_the_fresh_dev_and_proc_are_not_writable(world: tuple[Sandbox, Path, Path], target: str) -> None:
    sandbox, root, _ = world
    out = await run(sandbox, root, "touch", target)
    assert "Read-only file system" in out or "No such file" in out or "Permission denied" in out, out


async def test_the_bots_proc_files_and_sysctls_cannot_be_written(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    mine = Path(f"/proc/{os.getpid()}/oom_score_adj")
    before = mine.read_text()
    hostname = Path("/proc/sys/kernel/hostname").read_text()
    try:
        out = await run(sandbox, root, "sh", "-c", f"echo 900 > {mine}; echo orch-x > /proc/sys/kernel/hostname")
        assert out.count("Read-only file system") == 2, out
        assert mine.read_text() == before
        assert Path("/proc/sys/kernel/hostname").read_text() == hostname
    finally:
        mine.write_text(before)


@pytest.mark.parametrize("session", [True, False], ids=["session", "alone"])
async def test_every_mount_but_the_private_tmp_is_read_only(world: tuple[Sandbox, Path, Path], session: bool) -> None:
    _, root, data = world
    sandbox = Sandbox(SandboxConfig(file_roots=(root,), hidden=(data,), session=session))
    top: dict[str, str] = {}
    for line in reversed((await run(sandbox, root, "cat", "/proc/self/mountinfo")).splitlines()):
        fields = line.split()
        top.setdefault(fields[4], fields[5])  # the last mount on a path is the one that shows
    devices = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts"}
    writable = {point for point, options in top.items() if "rw" in options.split(",")}
    # a session many commands share has no writable place at all: one leaves nothing for the next
    assert writable - devices == (set() if session else {"/tmp"}), writable
    sandbox.close()


async def test_the_host_tz_and_locale_pass_through(
    world: tuple[Sandbox, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, root, _ = world
    monkeypatch.setenv("TZ", "Europe/Paris")
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    env = dict(line.split("=", 1) for line in (await run(sandbox, root, "env")).splitlines() if "=" in line)
    assert env["TZ"] == "Europe/Paris" and env["LANG"] == "fr_FR.UTF-8"
    monkeypatch.setenv("LANG", "en_US.UTF-8; rm -rf /")
    env = dict(line.split("=", 1) for line in (await run(sandbox, root, "env")).splitlines() if "=" in line)
    assert env["LANG"] == "C.UTF-8"


async def test_a_timeout_also_kills_what_the_command_started(world: tuple[Sandbox, Path, Path]) -> None:
    import time

    import psutil

    sandbox, root, _ = world
    started = time.monotonic()
    result = await sandbox.run(["sh", "-c", "sleep 47.25 & sleep 48.25"], cwd=root, timeout=1, output_cap=1000)
    assert result.timed_out
    assert time.monotonic() - started < 10  # not held open by a child keeping the pipes
    await asyncio.sleep(0.3)
    sleepers = (["sleep", "47.25"], ["sleep", "48.25"])
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] in sleepers]
    assert not left, left


async def test_the_host_network_namespace_is_kept(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = f":{server.getsockname()[1]:04X} "
        assert port in await run(sandbox, root, "cat", "/proc/net/tcp")


async def test_argv_that_looks_like_a_bwrap_option_is_the_command(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    result = await sandbox.run(["--help"], cwd=root, timeout=5, output_cap=1000)
    assert not result.ok and "--ro-bind" not in result.stdout + result.stderr


# ---- the shared session ---------------------------------------------------------------------------


async def test_free_commands_share_one_session_and_leave_nothing_for_each_other(
    world: tuple[Sandbox, Path, Path],
) -> None:
    sandbox, root, _ = world
    first = await sandbox.run(["sh", "-c", "echo $$; echo x > /tmp/left-over"], cwd=root, timeout=20, output_cap=1000)
    second = await sandbox.run(["sh", "-c", "echo $$; ls -A /tmp"], cwd=root, timeout=20, output_cap=1000)
    assert "Read-only file system" in first.stderr
    assert "left-over" not in second.stdout  # (/tmp holds only the way to the root, bound back)
    task = asyncio.create_task(sandbox.run(["sleep", "41.5"], cwd=root, timeout=20, output_cap=100))
    sleeper = await wait_for_process(["sleep", "41.5"])
    helper = sleeper.parent()
    assert helper is not None and "-S" in helper.cmdline()  # python -I -S -c <helper>
    other = asyncio.create_task(sandbox.run(["sleep", "42.5"], cwd=root, timeout=20, output_cap=100))
    assert (await wait_for_process(["sleep", "42.5"])).parent() == helper  # one helper starts both
    sandbox.close()  # the bot stops: what the session runs stops with it
    results = await asyncio.gather(task, other)
    assert all(not r.ok for r in results)
    await asyncio.sleep(0.3)
    assert gone(sleeper) and gone(helper)


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_for_process(cmdline: list[str]) -> psutil.Process:
    for _ in range(200):
        for proc in psutil.process_iter(["cmdline"]):
            if proc.info["cmdline"] == cmdline:
                return proc
        await asyncio.sleep(0.05)
    raise AssertionError(f"{cmdline} never started")


async def test_a_command_cannot_read_the_helper_that_started_it(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    for target in ("environ", "mem", "cmdline"):
        result = await sandbox.run(["sh", "-c", f"cat /proc/$PPID/{target} | head -c 64"], cwd=root, timeout=20,
                                   output_cap=1000)  # fmt: skip
        if target == "cmdline":
            assert "-S" in result.stdout  # it is the helper we are reading
        else:
            assert "Permission denied" in result.stderr, (target, result)
    sandbox.close()


async def test_a_killed_helper_takes_its_commands_and_the_next_one_starts_a_new_session(
    world: tuple[Sandbox, Path, Path],
) -> None:
    sandbox, root, _ = world
    task = asyncio.create_task(sandbox.run(["sleep", "43.5"], cwd=root, timeout=20, output_cap=100))
    sleeper = await wait_for_process(["sleep", "43.5"])
    helper = sleeper.parent()
    helper.kill()
    result = await asyncio.wait_for(task, 10)
    assert not result.ok and "session stopped" in result.stderr  # told, and not run a second time
    await asyncio.sleep(0.3)
    assert gone(sleeper)
    again = await sandbox.run(["sh", "-c", "echo $PPID"], cwd=root, timeout=20, output_cap=100)
    assert again.ok and int(again.stdout) != helper.pid
    sandbox.close()


async def test_a_file_hidden_after_the_session_started_is_hidden_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    later = tmp_path / "later.env"
    sandbox = Sandbox(SandboxConfig(file_roots=(root,), hidden=(later,)))
    assert (await run(sandbox, root, "cat", str(later))).startswith("cat:")  # not there yet
    later.write_text(SECRET)  # the view changed: the session that showed it must not be used again
    assert SECRET not in await run(sandbox, root, "cat", str(later))
    sandbox.close()


async def test_without_a_python_it_can_see_each_command_gets_a_bubblewrap_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    root = tmp_path / "root"
    root.mkdir()
    pythons = {Path(os.path.realpath(p)) for p in (sys.executable, "/usr/bin/python3") if os.path.exists(p)}
    sandbox = Sandbox(SandboxConfig(file_roots=(root,), hidden=tuple(pythons)))
    out = await run(sandbox, root, "sh", "-c", "echo x > /tmp/mine && cat /tmp/mine")
    assert out.strip() == "x"  # it ran, alone, with its private /tmp
    assert "bubblewrap of its own" in caplog.text


async def test_a_long_output_arrives_whole_up_to_the_cap(world: tuple[Sandbox, Path, Path]) -> None:
    sandbox, root, _ = world
    lines = "".join(f'line {i} "quoted" \\ {chr(0x263A)}\n' for i in range(20_000))  # JSON escapes, UTF-8
    (root / "long.log").write_text(lines)
    whole = await sandbox.run(["cat", "long.log"], cwd=root, timeout=20, output_cap=len(lines.encode()) + 10)
    assert whole.stdout == lines and not whole.truncated  # many messages from the helper, in order
    cut = await sandbox.run(["cat", "long.log"], cwd=root, timeout=20, output_cap=1000)
    assert cut.truncated and lines.startswith(cut.stdout.rstrip("\ufffd")) and len(cut.stdout) <= 1000
    sandbox.close()


async def test_a_hidden_link_moved_to_another_file_hides_the_new_one(tmp_path: Path) -> None:
    # (the files live under the private /tmp, so the sandbox's view cannot show them either way:
    # what is checked is that the view hides the file the link leads to now, in a new session)
    root, keys = tmp_path / "root", tmp_path / "keys"
    root.mkdir()
    keys.mkdir()
    for name in ("old.key", "new.key"):
        (keys / name).write_text(SECRET)
    link = tmp_path / "current.key"
    link.symlink_to(keys / "old.key")
    sandbox = Sandbox(SandboxConfig(file_roots=(root,), hidden=(link,)))

    def hidden_files() -> set[str]:
        argv = sandbox.wrap(["true"], cwd=root)
        return {argv[i + 2] for i, arg in enumerate(argv) if arg == "--ro-bind" and argv[i + 1] == "/dev/null"}

    async def helper_pid() -> int:
        return int((await run(sandbox, root, "sh", "-c", "echo $PPID")).strip())

    assert str(keys / "old.key") in hidden_files() and str(keys / "new.key") not in hidden_files()
    before = await helper_pid()
    assert await helper_pid() == before  # the same session while nothing changes
    link.unlink()
    link.symlink_to(keys / "new.key")  # the operator rotates the key: the path now leads elsewhere
    assert str(keys / "new.key") in hidden_files() and str(keys / "old.key") not in hidden_files()
    assert await helper_pid() != before  # a new session, with the new view
    sandbox.close()
