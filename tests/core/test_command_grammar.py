"""The default-deny grammar: every word understood and read-only, or approval; forbidden is never.

One case per class of trick (the GTFOBins corpus itself is measured by bench/gtfobins.py),
plus hypothesis properties over the table.
"""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.grammar import load_table
from core.policy import Policy, PolicyConfig, Verdict, resolve_program


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Policy, Path, Path]:
    base = tmp_path_factory.mktemp("grammar")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "app.log").write_text("ok\n")
    (root / "notes.txt").write_text("a\nb\n")
    (root / "sub").mkdir()
    (root / "sub" / "x.log").write_text("x\n")
    (outside / "secret.txt").write_text("s3cret\n")
    (root / "escape").symlink_to(outside / "secret.txt")
    (root / "escapedir").symlink_to(outside)
    return Policy(PolicyConfig(file_roots=[root])), root, outside


def verdict(policy: Policy, command: str) -> Verdict:
    return policy.check_command(command).verdict


# Everyday reads stay free: "why is the disk full?" without twenty prompts.
EVERYDAY = [
    "df -h", "df -h /var", "du -sh {root}/*", "du -h --max-depth=1 /var", "free -m", "uptime", "uname -a",
    "ps aux", "ps -eo pid,comm,%cpu --sort=-%cpu", "ps -ef", "ls -la", "ls -la /var/log", "cat app.log",
    "head -n 20 app.log", "head -20 app.log", "tail -n 50 app.log", "tail -n +2 app.log", "grep -rn error .",
    "grep -i -e error app.log", "wc -l app.log", "sort -n notes.txt", "uniq -c notes.txt",
    "journalctl -u nginx -n 100 --no-pager --since '1 hour ago'", "journalctl -p err -b --no-pager",
    "systemctl status nginx", "systemctl status --no-pager -l nginx", "systemctl list-units --failed",
    "systemctl is-active docker", "ss -tlnp", "ss -s", "ip addr show", "ip addr", "ip route", "ip -br link show",
    "ip -j addr show dev lo", "lsblk", "lsblk -f", "findmnt", "findmnt -D", "stat app.log", "id", "date",
    "date +%F", "date -u", "hostname -f", "whoami", "nproc", "dmesg -T", "find . -name '*.log' -mtime -1",
    "find /var/log -type f -size +100M", "getent hosts localhost", "which docker", "lscpu", "vmstat 1 3",
    "docker ps", "docker ps -a --format '{{{{.Names}}}}'", "docker logs --tail 50 web",
    "git status", "git log -n 5 --oneline", "git log -5", "git diff", "git diff --stat HEAD~1",
    "git -C {root} status", "git show HEAD:README.md", "/usr/bin/ls -la", "/bin/df -h",
]  # fmt: skip


@pytest.mark.parametrize("command", EVERYDAY)
def test_everyday_reads_run_without_approval(world: tuple[Policy, Path, Path], command: str) -> None:
    policy, root, _ = world
    program = command.split()[0]
    if not shutil.which(os.path.basename(program), path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"):
        pytest.skip(f"{program} is not installed on this machine")
    decision = policy.check_command(command.format(root=root))
    assert decision.verdict is Verdict.READ, decision.reason


def test_globs_inside_the_roots_are_expanded_and_quoted_ones_are_not(world: tuple[Policy, Path, Path]) -> None:
    policy, root, _ = world
    decision = policy.check_command(f"du -sh {root}/*")
    assert f"{root}/app.log" in decision.argv and f"{root}/*" not in decision.argv
    assert policy.check_command("find . -name '*.log'").argv[-1] == "*.log"
    assert policy.check_command("du -sh /etc/*").argv[-1] == "/etc/*"  # outside the roots: left as written


# One case per class of trick: each needs approval (the approver sees the exact argv).
TRICKS = {
    "unlisted long option that writes": "sort --output=x notes.txt",
    "getopt_long prefix of a writer": "sort --out=x notes.txt",
    "prefix of a listed option": "journalctl --vacuum-t=1s",
    "second operand is an output file": "uniq notes.txt copy.txt",
    "option that runs a program": "sort -S 64K --compress-program=sh app.log",
    "short option bundled with a value option": "dmesg -rF app.log",
    "attached value of an unlisted short option": "date -f/etc/shadow",
    "option after the operands (getopt permutes)": "cat app.log --show-all --output=x",
    "options after -- are operands, checked as paths": "cat -- /etc/shadow",
    "global option before a subcommand": "git --namespace status reset --hard HEAD~1",
    "option value that looks like a subcommand": "systemctl -p status restart nginx",
    "abbreviated ip object and action": "ip l s lo down",
    "abbreviated ip action": "ip a a 10.0.0.1/24 dev lo",
    "ip namespace exec": "ip netns exec foo /bin/sh",
    "ip batch file": "ip -b /etc/shadow",
    "git diff outside the repository (implicit --no-index)": "git diff /dev/null /etc/shadow",
    "git revision escaping with ..": "git log -- ../../etc",
    "git config override": "git -c core.pager=sh log",
    "date sets the clock": "date 010100002030",
    "hostname sets the name": "hostname evil",
    "getent of the shadow database": "getent shadow",
    "ps prints environments (BSD e)": "ps eww",
    "pidstat runs a program": "pidstat -e /bin/sh",
    "find runs a program": "find . -exec /bin/sh ;",
    "find writes a file": "find . -fprint /tmp/x",
    "find follows links out of the roots": "find -L . -name x",
    "content read outside the roots": "cat /etc/shadow",
    "content read through a symlink in a root": "cat escape",
    "content read through a symlinked directory": "cat escapedir/secret.txt",
    "content read through /proc/1/root": "cat /proc/1/root/etc/shadow",
    "relative escape": "head -n 1 ../outside/secret.txt",
    "grep pattern file outside": "grep -f /etc/shadow app.log",
    "grep follows symlinks recursively (-R)": "grep -R x .",
    "tail follows forever": "tail -f app.log",
    "program by relative path": "./ls",
    "program path with ..": "/usr/bin/../../tmp/bin/ls",
    "program in a writable directory": "/tmp/ls",
    "unknown program": "python3 -c 'print(1)'",
    "systemctl without a subcommand": "systemctl",
    "systemctl verb that changes things": "systemctl restart nginx",
    "journalctl reading another directory": "journalctl -D /tmp/x",
    "docker global host option": "docker -H tcp://1.2.3.4 ps",
    "docker follow logs": "docker logs -f web",
    "ss kills sockets": "ss -K dst 1.2.3.4",
    "ss filter file": "ss -a -F /etc/shadow",
    "wc files0-from": "wc --files0-from /etc/shadow",
    "diff prints any file": "diff --line-format=%L /dev/null /etc/shadow",
}


@pytest.mark.parametrize("command", list(TRICKS.values()), ids=list(TRICKS))
def test_tricks_need_approval(world: tuple[Policy, Path, Path], command: str) -> None:
    policy, _, _ = world
    decision = policy.check_command(command)
    assert decision.verdict is not Verdict.READ, decision
    assert decision.reason


def test_the_reason_names_the_word_that_is_not_free(world: tuple[Policy, Path, Path]) -> None:
    policy, _, _ = world
    assert "--out" in policy.check_command("sort --out=x notes.txt").reason
    assert "'restart'" in policy.check_command("systemctl -p status restart nginx").reason


def test_a_program_path_must_be_the_system_program(tmp_path: Path) -> None:
    fake = tmp_path / "ls"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert resolve_program("ls")[1] == ""
    assert resolve_program(str(fake))[1]  # named like ls, but not the system's ls
    assert resolve_program("no-such-program-xyz")[1]


def test_nothing_runs_freely_when_no_root_exists(tmp_path: Path) -> None:
    policy = Policy(PolicyConfig(file_roots=[tmp_path / "missing"]))
    decision = policy.check_command("cat .env")
    assert decision.verdict is Verdict.APPROVAL
    assert "no file root exists" in decision.reason
    assert verdict(policy, "df -h") is Verdict.APPROVAL


def test_commands_run_in_the_first_existing_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    policy = Policy(PolicyConfig(file_roots=[tmp_path / "missing", real]))
    assert policy.check_command("ls").workdir == real
    assert policy.resolve_path("x.txt") == real / "x.txt"


# Forbidden means never, approval or not.
FORBIDDEN = [
    "rm --rec -f /etc", "rm --recursive --force /usr", "rm -rf //etc", "rm -rf /etc/", "rm -rf /etc/.",
    "rm -rf /./etc/../etc", "rm -rf /proc/self/root/etc", "rm -rf /proc/1/root/", "rm -r -f /*",
    "rm -rf --no-pres /", "chmod --rec 000 /", "chmod -R 000 /etc", "chown -R nobody /usr",
    "sudo rm -rf /var", "busybox rm -rf /boot", "find / -delete",
    "cp /dev/zero /dev/block/8:0", "cp /dev/zero /dev/sda", "tee /dev/nvme0n1", "dd if=/dev/zero of=/dev/vda",
    "dcfldd if=/dev/zero of=/dev/sdb", "ddrescue -f /dev/zero /dev/sdc", "sg_dd if=/dev/zero of=/dev/sg0",
    "badblocks -w /dev/sda", "badblocks -svw /dev/sda", "mdadm --zero-superblock /dev/sda1",
    "mdadm --zero /dev/sda1", "wipefs -a /dev/sda", "blkdiscard /dev/sda", "shred -n1 /dev/mmcblk0",
    "integritysetup format /dev/sda", "cryptsetup luksFormat /dev/sda", "sort -o /dev/sda notes.txt",
    "mkfs.ext4 /dev/sda1", "mkreiserfs /dev/sda", "mkudffs /dev/sda", "jfs_mkfs /dev/sda",
    "mkexfatfs /dev/sda", "mke2fs /dev/sda", "mkswap /dev/sda2", "insmod x.ko", "modprobe -r e1000",
    ":(){ :|:& };:", "bash -c 'bomb(){ bomb|bomb& };bomb'", "sh -c 'f() { f | f & }; f'",
    "bash -c 'function boom { boom|boom & }; boom'", "perl -e 'fork while fork'",
    "python3 -c 'import os; [os.fork() for _ in iter(int, 1)]'", "ruby -e 'loop { fork }'",
    "bash -c 'while true; do bash & done'", "sh -c '$0 & $0 &'", "bash -c 'echo x > /dev/sda'",
]  # fmt: skip


@pytest.mark.parametrize("command", FORBIDDEN)
def test_forbidden_is_never_unlockable(world: tuple[Policy, Path, Path], command: str) -> None:
    policy, _, _ = world
    decision = policy.check_command(command)
    assert decision.verdict is Verdict.FORBIDDEN, decision
    assert "no approval" in decision.reason or "refused" in decision.reason


@pytest.mark.parametrize(
    "command",
    ["dd if=/dev/sda of=backup.img bs=1M", "ddrescue /dev/sda disk.img map", "cp /dev/sda disk.img",
     "rm -rf /srv/app/build", "chmod -R g+w /srv/app", "shred secret.txt", "lsblk /dev/sda",
     "smartctl -a /dev/sda", "e2fsck -f /dev/sda1", "mount -o ro /dev/sda1 /mnt"],
)  # fmt: skip
def test_device_reads_and_ordinary_deletes_only_need_approval(world: tuple[Policy, Path, Path], command: str) -> None:
    policy, _, _ = world
    assert verdict(policy, command) is not Verdict.FORBIDDEN, policy.check_command(command)


def test_symlink_to_a_system_directory_is_normalised(world: tuple[Policy, Path, Path], tmp_path: Path) -> None:
    policy, root, _ = world
    link = root / "etc-link"
    if not link.exists():
        link.symlink_to("/etc")
    assert verdict(policy, "rm -rf etc-link/") is Verdict.FORBIDDEN


def test_the_policy_never_raises(world: tuple[Policy, Path, Path]) -> None:
    policy, _, _ = world
    for command in ["cat /proc/1/root/etc/shadow", "ls /proc/1/root/root", "cat '/x\x00y'", "cat 'unclosed", ""]:
        decision = policy.check_command(command)
        assert decision.reason


# ---- properties ------------------------------------------------------------------------

TABLE = load_table()
GETOPT_PROGRAMS = sorted(
    name for name, p in TABLE.items() if p.parser == "getopt" and not p.subcommands and p.options and not p.bsd
)
_option_chars = string.ascii_letters + string.digits + "-"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    program=st.sampled_from(GETOPT_PROGRAMS),
    name=st.text(alphabet=_option_chars, min_size=1, max_size=12),
    value=st.sampled_from(["", "=x", "=/etc/shadow", " app.log", " /tmp/out"]),
    before=st.booleans(),
)
def test_no_option_outside_the_table_runs_freely(
    world: tuple[Policy, Path, Path], program: str, name: str, value: str, before: bool
) -> None:
    policy, _, _ = world
    long = f"--{name}"
    if long in TABLE[program].options or long.partition("=")[0] in TABLE[program].options:
        return
    words = [long + value] if value.startswith("=") else [long, *value.split()]
    argv = [program, *words, "app.log"] if before else [program, "app.log", *words]
    decision = policy.check_command(" ".join(argv))
    assert decision.verdict is not Verdict.READ, argv


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    program=st.sampled_from(GETOPT_PROGRAMS),
    letter=st.sampled_from(string.ascii_letters + string.digits),
)
def test_no_short_option_outside_the_table_runs_freely(
    world: tuple[Policy, Path, Path], program: str, letter: str
) -> None:
    policy, _, _ = world
    spec = TABLE[program]
    if f"-{letter}" in spec.options or (spec.numeric_flag and letter.isdigit()):
        return
    decision = policy.check_command(f"{program} -{letter} app.log")
    assert decision.verdict is not Verdict.READ


CONTENT_READERS = sorted(
    name for name, p in TABLE.items() if p.operands and any(o.kind.name == "path" for o in p.operands)
)
_segment = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=10)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    program=st.sampled_from(CONTENT_READERS),
    form=st.sampled_from(["{out}/{seg}", "../outside/{seg}", "escapedir/{seg}", "/etc/{seg}", "sub/../../outside/{seg}",
                          "//etc//{seg}", "/proc/self/root/etc/{seg}", "{out}/../outside/{seg}", "escape"]),
    seg=_segment,
)  # fmt: skip
def test_no_path_outside_the_roots_is_read_freely(
    world: tuple[Policy, Path, Path], program: str, form: str, seg: str
) -> None:
    policy, _, outside = world
    path = form.format(out=outside, seg=seg)
    pattern = "x " if TABLE[program].pattern_unless else ""
    decision = policy.check_command(f"{program} {pattern}{path}")
    assert decision.verdict is not Verdict.READ, (program, path)
