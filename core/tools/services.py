"""systemd services: status and journal (read-only), restart (approved), here or over ssh.

Commands are argv through `run_process`; on a remote host the same argv is shell-quoted
into one ssh command line (the remote side always has a shell), after the unit name has
been checked, so nothing the model writes can become shell syntax there.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from core.errors import ToolError
from core.events import Risk
from core.hosts import LOCAL, Host, Inventory
from core.policy import Policy
from core.process import ProcessResult, run_process
from core.tools.command import scrubbed_env
from core.tools.registry import Plan, ToolOutput, ToolSpec, tool

NO_SYSTEMD = "systemd is not available on this host"
SYSTEMD_MARKER = Path("/run/systemd/system")  # what sd_booted() checks
MAX_JOURNAL_LINES = 2000
SSH_UNREACHABLE = 255

# systemd's unit name characters (unit-name.c: VALID_CHARS plus '@' for templates).
_UNIT = re.compile(r"^[A-Za-z0-9_\\][A-Za-z0-9:_.@\\-]{0,254}$")
_SINCE = re.compile(r"^[A-Za-z0-9 :.+-]{1,64}$")
_NO_SYSTEMD_SIGNS = (
    "system has not been booted with systemd",
    "failed to connect to bus",
    "systemctl: command not found",
    "journalctl: command not found",
    "no such file or directory: systemctl",
)


def check_unit(unit: str) -> str:
    if not _UNIT.fullmatch(unit) or ".." in unit:
        raise ToolError(
            f"invalid unit name {unit!r}: a systemd unit is letters, digits and ':_.@-' "
            "(for example nginx, nginx.service, getty@tty1.service)"
        )
    return unit


def where(host: Host) -> str:
    return "this host" if host.is_local else f"host {host.name}"


class Systemd:
    """systemctl and journalctl as argv, here or over ssh; what goes wrong is one `ToolError` line."""

    def __init__(self, *, timeout: float, output_cap: int, marker: Path = SYSTEMD_MARKER) -> None:
        self.timeout = timeout
        self.output_cap = output_cap
        self.marker = marker

    @staticmethod
    def env() -> dict[str, str]:
        return {**scrubbed_env(), "SYSTEMD_PAGER": "", "PAGER": "cat", "SYSTEMD_COLORS": "0", "LC_ALL": "C"}

    def argv_for(self, host: Host, argv: list[str]) -> list[str]:
        if host.is_local:
            if not self.marker.is_dir():
                raise ToolError(f"{NO_SYSTEMD} ({LOCAL}: {self.marker} does not exist); for containers use docker_*")
            return argv
        return host.ssh_argv(shlex.join(argv), connect_timeout=max(1, min(10, int(self.timeout / 3))))

    async def run(self, host: Host, argv: list[str]) -> ProcessResult:
        full = self.argv_for(host, argv)
        result = await run_process(full, timeout=self.timeout, env=self.env(), output_cap=self.output_cap)
        if result.not_found:
            if host.is_local:
                raise ToolError(f"{NO_SYSTEMD} ({full[0]} is not installed)")
            raise ToolError(f"{full[0]} is not installed on this machine")
        if result.timed_out:
            raise ToolError(f"{shlex.join(argv)} on {where(host)} did not finish within {self.timeout:g} s")
        if not host.is_local and result.exit_status == SSH_UNREACHABLE:
            raise ToolError(f"cannot reach host {host.name} over ssh ({host.ssh}): {result.stderr.strip()[:300]}")
        text = result.combined().lower()
        if any(sign in text for sign in _NO_SYSTEMD_SIGNS):
            message = NO_SYSTEMD if host.is_local else f"systemd is not available on host {host.name}"
            raise ToolError(f"{message}: {result.combined().strip()[:200]}")
        return result


def service_tools(
    policy: Policy,
    inventory: Inventory,
    *,
    timeout: float = 30.0,
    systemd_marker: Path = SYSTEMD_MARKER,
) -> list[ToolSpec]:
    systemd = Systemd(timeout=timeout, output_cap=policy.config.output_cap * 4, marker=systemd_marker)
    run = systemd.run

    @tool(risk=Risk.READ)
    async def service_status(unit: str, host: str = LOCAL) -> ToolOutput:
        """The state of a systemd service: active or failed, since when, main process, last log lines.

        Args:
            unit: the unit name, for example "nginx" or "nginx.service".
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        target = inventory.get(host)
        name = check_unit(unit)
        result = await run(target, ["systemctl", "status", "--no-pager", "--full", "--lines=20", "--", name])
        if result.exit_status == 4:  # LSB "no such program or service"
            raise ToolError(f"there is no unit named {name} on {where(target)}")
        text, _ = policy.clean(result.combined())
        state = {0: "active", 3: "not running"}.get(result.exit_status or 0, f"exit status {result.exit_status}")
        return ToolOutput(f"{name} on {where(target)}: {state}\n{text}", ok=True, exit_status=result.exit_status)

    @tool(risk=Risk.READ)
    async def journal(unit: str, lines: int = 100, since: str = "", host: str = LOCAL) -> str:
        """The last journal lines of a systemd unit (secrets redacted).

        Args:
            unit: the unit name, for example "nginx.service".
            lines: how many of the last lines to return (1 to 2000).
            since: only entries after this, in journalctl's words: "-1h", "today", "2025-01-31 08:00".
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        target = inventory.get(host)
        name = check_unit(unit)
        count = max(1, min(lines, MAX_JOURNAL_LINES))
        argv = ["journalctl", "--no-pager", "--output=short-iso", f"--lines={count}", f"--unit={name}"]
        if since.strip():
            if not _SINCE.fullmatch(since.strip()):
                raise ToolError(f"cannot use since={since!r}: try -1h, today, yesterday or 2025-01-31 08:00")
            argv.append(f"--since={since.strip()}")
        result = await run(target, argv)
        if not result.ok:
            raise ToolError(f"journalctl failed on {where(target)}: {result.combined().strip()[:500]}")
        text, cut = policy.clean(result.stdout)
        return f"journal of {name} on {where(target)}:\n{text.rstrip() or '(no entries)'}" + (
            "\n(output cut at the cap)" if cut else ""
        )

    def restart_argv(unit: str) -> list[str]:
        return ["systemctl", "restart", "--", check_unit(unit)]

    def restart_parts(target: Host) -> tuple[str, ...]:
        return (target.name, target.ssh, str(target.ssh_port or ""))  # where it runs, as the approver saw it

    @tool(risk=Risk.EXEC)
    async def service_restart(unit: str, host: str = LOCAL) -> ToolOutput:
        """Restart a systemd service. A person approves it first.

        Args:
            unit: the unit name, for example "nginx.service".
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        target = inventory.get(host)
        argv = restart_argv(unit)
        name = argv[-1]
        result = await run(target, argv)
        if not result.ok:
            return ToolOutput(
                f"restart of {name} on {where(target)} failed: {result.combined().strip()[:2000]}",
                ok=False,
                exit_status=result.exit_status,
            )
        check = await run(target, ["systemctl", "is-active", "--", name])
        state = check.stdout.strip() or "unknown"
        return ToolOutput(f"restarted {name} on {where(target)}; it is now {state}", ok=state == "active")

    @service_restart.plan
    async def _plan_restart(args: dict[str, Any]) -> Plan:
        target = inventory.get(args["host"])
        argv = restart_argv(args["unit"])
        return Plan(
            risk=Risk.EXEC,
            summary=f"restart {argv[-1]} on host {target.name}",
            detail=shlex.join(systemd.argv_for(target, argv)),
            detail_kind="argv",
            host=target.name,
            fingerprint_parts=restart_parts(target),
        )

    @service_restart.check_fresh
    async def _fresh_restart(args: dict[str, Any]) -> tuple[str, ...]:
        target = inventory.get(args["host"])
        systemd.argv_for(target, restart_argv(args["unit"]))  # systemd still there
        return restart_parts(target)

    return [service_status, journal, service_restart]
