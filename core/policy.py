"""Policy sits between the agent and the tools.

It decides, for a command line, whether it never runs (forbidden: no approval
unlocks it), runs freely (read-only allowlist), or runs only once approved. It
also confines file tools to the configured roots and caps output.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from core.redact import Redactor


class Verdict(StrEnum):
    FORBIDDEN = "forbidden"
    READ = "read"
    APPROVAL = "approval"


@dataclass(frozen=True, slots=True)
class CommandDecision:
    verdict: Verdict
    argv: tuple[str, ...]
    reason: str


class PolicyError(Exception):
    """A refusal the model should see (and may correct)."""


class PathRefused(PolicyError):
    pass


class CommandRefused(PolicyError):
    pass


# Programs that can destroy disks, filesystems or the running kernel. Nothing unlocks them.
FORBIDDEN_PROGRAMS = frozenset(
    {
        "mkfs", "mke2fs", "mkswap", "mkdosfs", "mkntfs", "fdisk", "sfdisk", "cfdisk", "gdisk",
        "sgdisk", "parted", "partprobe", "wipefs", "blkdiscard", "insmod", "rmmod", "modprobe",
        "kexec", "debugfs", "hdparm", "cryptsetup", "lvremove", "vgremove", "pvremove",
        "zpool", "nvme",
    }
)  # fmt: skip

# Top-level directories whose recursive removal (or recursive chmod/chown) never runs.
SYSTEM_DIRS = frozenset(
    {
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
        "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",
        "/usr", "/var", "/snap", "/boot/efi",
    }
)  # fmt: skip

_BLOCK_DEVICE = re.compile(
    r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|dm-\d|md\d|loop\d|mapper/|disk/|sr\d|nbd\d|zram\d|mem\b|kmem\b|port\b)"
)

# Raw-text patterns, checked on the command as written and on its unquoted form.
FORBIDDEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|[\s;&|/'\"`(])mkfs(?:\.\w+)?\b"), "formats a filesystem"),
    (re.compile(r"\bdd\b[^\n]*\bof=\s*/dev/"), "writes raw data to a device"),
    (re.compile(r">\s*/dev/(?!null\b|stdout\b|stderr\b|tty\b)"), "redirects into a device"),
    (re.compile(r"\w*\s*\(\s*\)\s*\{[^}]*\|[^}]*&[^}]*\}"), "is a fork bomb"),
    (re.compile(r":\s*\(\s*\)\s*\{"), "is a fork bomb"),
    (re.compile(r"--no-preserve-root"), "removes the root filesystem"),
    (re.compile(r"\b(?:insmod|rmmod|modprobe|kexec)\b"), "changes the running kernel"),
    (re.compile(r"(?:^|[\s;&|/'\"`(])(?:wipefs|fdisk|sfdisk|parted|blkdiscard|mkswap)\b"), "rewrites a disk"),
    (re.compile(r"\bchmod\s+(?:-\w*\s+)*[0-7]*\s*(?:-R|--recursive)[^\n]*\s/(?:\s|$)"), "changes modes on /"),
    (re.compile(r"\bshred\b[^\n]*/dev/"), "destroys a device"),
)  # fmt: skip

_SHELL_OPERATORS = frozenset({";", "|", "||", "&", "&&", ">", ">>", "<", "<<", "(", ")", ";;", ">&", "<&", "|&"})

# Read-only programs that run without approval anywhere.
READ_ANYWHERE = frozenset(
    {
        "df", "du", "free", "uptime", "uname", "hostname", "ps", "ls", "ip", "ss", "whoami",
        "id", "date", "lsblk", "lscpu", "nproc", "vmstat", "iostat", "findmnt", "w", "who",
        "pgrep", "netstat", "lsof", "dig", "host", "nslookup", "which", "getent", "arch",
        "lsb_release", "mpstat", "pidstat", "last", "ping", "hostnamectl",
        "timedatectl", "echo", "pwd", "true", "sensors", "lsusb", "lspci", "dmesg",
    }
)  # fmt: skip

# Programs that read file contents: free only when every path is inside the file roots.
READ_IN_ROOTS = frozenset(
    {
        "cat", "head", "tail", "grep", "egrep", "fgrep", "wc", "stat", "file", "sha256sum",
        "md5sum", "sha1sum", "sort", "uniq", "diff", "find", "tree", "zcat", "less", "more",
    }
)  # fmt: skip

# Options that take a value, so the next word is not a path.
_VALUE_OPTIONS = {
    "head": {"-n", "-c", "--lines", "--bytes"},
    "tail": {"-n", "-c", "--lines", "--bytes", "-s", "--pid"},
    "grep": {"-e", "-f", "-m", "-A", "-B", "-C", "--regexp", "--file", "--max-count",
             "--include", "--exclude", "--exclude-dir"},
    "egrep": {"-e", "-m", "-A", "-B", "-C"},
    "fgrep": {"-e", "-m", "-A", "-B", "-C"},
    "sort": {"-k", "-t", "-o"},
    "find": {"-name", "-iname", "-type", "-maxdepth", "-mindepth", "-size", "-mtime", "-newer", "-path",
             "-user", "-group", "-perm"},
    "tree": {"-L", "-I", "-P"},
}  # fmt: skip

_FIND_WRITERS = frozenset({"-exec", "-execdir", "-delete", "-ok", "-okdir", "-fprint", "-fprintf", "-fls", "-fprint0"})

# Read-only subcommands of programs that otherwise change things.
_READ_SUBCOMMANDS = {
    "systemctl": {"status", "is-active", "is-enabled", "is-failed", "list-units", "list-unit-files", "show",
                  "list-timers", "cat"},
    "journalctl": None,  # checked by option below
    "git": {"status", "log", "diff", "show", "rev-parse", "describe", "blame", "ls-files"},
    "docker": {"ps", "logs", "inspect", "stats", "images", "version", "info", "top", "port"},
    "apt": {"list", "show", "policy", "search"},
    "dpkg": {"-l", "--list", "-s", "--status", "-L", "--listfiles"},
    "ip": None,
}  # fmt: skip

_JOURNAL_WRITERS = frozenset(
    {
        "--vacuum-size",
        "--vacuum-time",
        "--vacuum-files",
        "--rotate",
        "--flush",
        "--sync",
        "--relinquish-var",
        "--smart-relinquish-var",
        "--setup-keys",
        "--update-catalog",
    }
)
_IP_WRITERS = frozenset({"add", "del", "delete", "set", "change", "replace", "flush", "append", "prepend"})


@dataclass
class PolicyConfig:
    file_roots: list[Path] = field(default_factory=list)
    allow_etc_writes: bool = False
    extra_read_commands: frozenset[str] = frozenset()
    denied_commands: frozenset[str] = frozenset()
    output_cap: int = 16_000
    command_timeout: float = 60.0


class Policy:
    def __init__(self, config: PolicyConfig, redactor: Redactor | None = None) -> None:
        self.config = config
        self.redact = redactor or Redactor()
        self.roots = [Path(os.path.realpath(r)) for r in config.file_roots]

    # ---- commands -------------------------------------------------------
    def split(self, command: str) -> tuple[str, ...]:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = ""  # without a shell, `#` is an ordinary character; never hide words behind it
        try:
            tokens = list(lexer)
        except ValueError as exc:
            raise CommandRefused(f"cannot parse the command ({exc}); quote it properly") from exc
        return tuple(tokens)

    def check_command(self, command: str) -> CommandDecision:
        """Classify a command line. Never raises; a refusal is a FORBIDDEN decision."""
        if not command.strip():
            return CommandDecision(Verdict.FORBIDDEN, (), "the command is empty")
        if "\x00" in command or "\n" in command or "\r" in command:
            return CommandDecision(Verdict.FORBIDDEN, (), "one command per call: newlines and NUL bytes are refused")
        reason = self._forbidden_deep(command)  # copes with unparsable text, so it comes before the split
        if reason:
            return CommandDecision(Verdict.FORBIDDEN, (), f"refused: this command {reason}; no approval can unlock it")
        try:
            tokens = self.split(command)
        except CommandRefused as exc:
            return CommandDecision(Verdict.FORBIDDEN, (), str(exc))
        operators = [t for t in tokens if t in _SHELL_OPERATORS or (t and set(t) <= set(";|&<>()"))]
        if operators:
            return CommandDecision(
                Verdict.FORBIDDEN,
                (),
                "refused: run_command runs one program without a shell, so "
                f"{' '.join(sorted(set(operators)))} cannot work; run each command on its own",
            )
        argv = tokens
        if not argv:
            return CommandDecision(Verdict.FORBIDDEN, (), "the command is empty")
        if self._program(argv[0]) in self.config.denied_commands:
            return CommandDecision(Verdict.FORBIDDEN, argv, f"refused: {argv[0]} is on the operator's deny list")
        if self._is_read_only(argv):
            return CommandDecision(Verdict.READ, argv, "read-only")
        return CommandDecision(Verdict.APPROVAL, argv, "changes the system or reads outside the file roots")

    @staticmethod
    def _program(word: str) -> str:
        return os.path.basename(word)

    def _forbidden_text(self, text: str) -> str:
        for pattern, reason in FORBIDDEN_PATTERNS:
            if pattern.search(text):
                return reason
        return ""

    def _forbidden_deep(self, text: str, depth: int = 0) -> str:
        """Check a command line, each of its segments, and every quoted argument as a command
        line of its own (`bash -c 'rm -rf /'`, `ssh host "mkfs …"`), a few levels deep."""
        reason = self._forbidden_text(text)
        if reason or depth > 4:
            return reason or ("nests commands too deeply" if depth > 4 else "")
        try:
            tokens = self.split(text)
        except CommandRefused:
            # unbalanced quotes inside an argument: judge the words as plain text
            tokens = tuple(text.replace("'", " ").replace('"', " ").split())
        # Quotes can glue words into one argument (`' ssh host rm' -rf '/ '`): judge the plain
        # words too, with quotes and operators turned into spaces. Conservative on purpose.
        plain = text
        for ch in "'\"`;|&<>()\\":
            plain = plain.replace(ch, " ")
        for words in (" ".join(tokens).split(), plain.split()):
            reason = self._forbidden_argv(words)
            if reason:
                return reason
        segment: list[str] = []
        for token in [*tokens, ";"]:
            if token in _SHELL_OPERATORS or (token and set(token) <= set(";|&<>()")):
                reason = self._forbidden_argv(segment) or self._forbidden_text(" ".join(segment))
                if reason:
                    return reason
                segment = []
                continue
            segment.append(token)
            if any(c.isspace() for c in token) or any(c in token for c in ";|&`$"):
                reason = self._forbidden_deep(token.replace("`", " ").replace("$(", " "), depth + 1)
                if reason:
                    return reason
        return ""

    def _forbidden_argv(self, argv: Sequence[str]) -> str:
        # Look through wrappers (sudo, env, nice, timeout, xargs, interpreters' -c strings).
        for i, word in enumerate(argv):
            prog = self._program(word)
            base = prog.split(".")[0]
            if prog in FORBIDDEN_PROGRAMS or base in FORBIDDEN_PROGRAMS or base == "mkfs":
                return "touches disks, filesystems or the kernel"
            if prog == "dd" and any(a.startswith("of=") and _BLOCK_DEVICE.search(a) for a in argv[i:]):
                return "writes raw data to a device"
            if prog in {"rm", "chmod", "chown", "chgrp"}:
                rest = argv[i + 1 :]
                recursive = any(
                    a in {"--recursive", "-R", "-r"}
                    or (a.startswith("-") and not a.startswith("--") and ("r" in a or "R" in a))
                    for a in rest
                )
                targets = [a for a in rest if not a.startswith("-")]
                if recursive and any(self._is_system_dir(t) for t in targets):
                    return f"recursively {prog}s a top-level system directory"
            if (
                prog in {"tee", "cp", "mv", "install", "shred", "cat", "truncate"}
                and any(_BLOCK_DEVICE.search(a) for a in argv[i + 1 :])
                and prog != "cat"
            ):
                return "writes to a raw device"
        return ""

    @staticmethod
    def _is_system_dir(target: str) -> bool:
        t = target.rstrip("/*") or "/"
        if t in {"", "."} and target.startswith("/"):
            t = "/"
        t = os.path.normpath(t) if t != "/" else "/"
        return t in SYSTEM_DIRS or target in {"/*", "/.", "/.."}

    def _is_read_only(self, argv: Sequence[str]) -> bool:
        prog = self._program(argv[0])
        if argv[0] != prog and not argv[0].startswith(("/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/")):
            return False  # a path to some other program named like a safe one
        args = list(argv[1:])
        if prog in _READ_SUBCOMMANDS:
            sub = _READ_SUBCOMMANDS[prog]
            if prog == "journalctl":
                return not any(a.split("=")[0] in _JOURNAL_WRITERS for a in args)
            if prog == "ip":
                return not any(a in _IP_WRITERS for a in args)
            if any(a.startswith(("--output", "--exec", "--upload-pack")) for a in args):
                return False  # options that write files or run programs
            words = [a for a in args if not a.startswith("-")] if prog != "dpkg" else args[:1]
            if prog == "systemctl" and args == ["--failed"]:
                return True
            return bool(words) and sub is not None and words[0] in sub
        if prog in READ_ANYWHERE or prog in self.config.extra_read_commands:
            if prog == "dmesg" and any(
                a in {"-c", "-C", "--clear", "--read-clear", "-n", "--console-level"} for a in args
            ):
                return False
            if prog == "hostname" and any(not a.startswith("-") for a in args):
                return False  # sets the host name
            if prog == "date" and any(a.startswith(("-s", "--set")) for a in args):
                return False
            setter = prog in {"hostnamectl", "timedatectl"}
            return not (setter and any(not a.startswith("-") and a != "status" for a in args))
        if prog in READ_IN_ROOTS:
            if prog == "find" and any(a in _FIND_WRITERS for a in args):
                return False
            if prog == "sort" and any(a == "-o" or a.startswith("--output") for a in args):
                return False
            return all(self.is_inside_roots(p) for p in self._path_args(prog, args))
        return False

    def _path_args(self, prog: str, args: list[str]) -> list[str]:
        takes_value = _VALUE_OPTIONS.get(prog, set())
        paths: list[str] = []
        skip = False
        pattern_pending = prog in {"grep", "egrep", "fgrep"} and not any(
            a in {"-e", "-f", "--regexp", "--file"} or a.startswith(("--regexp=", "--file=")) for a in args
        )
        for a in args:
            if skip:
                skip = False
                continue
            if a in takes_value:
                skip = True
                continue
            if a.startswith("-") and a != "-":
                continue
            if pattern_pending:
                pattern_pending = False
                continue
            paths.append(a)
        if not paths and prog in {"find", "tree", "grep"}:
            paths.append(".")
        return paths

    # ---- paths ----------------------------------------------------------
    def is_inside_roots(self, path: str | os.PathLike[str]) -> bool:
        try:
            self.resolve_path(path)
        except PathRefused:
            return False
        return True

    def resolve_path(self, path: str | os.PathLike[str], *, for_write: bool = False) -> Path:
        """Resolve symlinks and `..`, then require the result to sit inside a root."""
        if not self.roots:
            raise PathRefused("no file roots are configured (set ORCHESTRATOR_FILE_ROOTS)")
        raw = os.fspath(path)
        if "\x00" in raw:
            raise PathRefused("refused: the path contains a NUL byte")
        p = Path(raw).expanduser()
        if not p.is_absolute():
            p = self.roots[0] / p
        real = Path(os.path.realpath(p))
        for root in self.roots:
            if real == root or root in real.parents:
                if (
                    for_write
                    and not self.config.allow_etc_writes
                    and (real == Path("/etc") or Path("/etc") in real.parents)
                ):
                    raise PathRefused("refused: writes under /etc are disabled (allow_etc_writes)")
                return real
        roots = ", ".join(str(r) for r in self.roots)
        raise PathRefused(
            f"refused: {raw} resolves to {real}, outside the file roots ({roots}); "
            "ask the operator to add a root with ORCHESTRATOR_FILE_ROOTS"
        )

    # ---- output ---------------------------------------------------------
    def cap(self, text: str, limit: int | None = None) -> tuple[str, bool]:
        limit = limit or self.config.output_cap
        if len(text) <= limit:
            return text, False
        head = text[: limit * 2 // 3]
        tail = text[-limit // 3 :]
        cut = len(text) - len(head) - len(tail)
        return f"{head}\n… [{cut} characters cut] …\n{tail}", True

    def clean(self, text: str, limit: int | None = None) -> tuple[str, bool]:
        """Redact, then cap: what may be shown to the model or the chat."""
        return self.cap(self.redact(text), limit)


def forbidden_reason(command: str, roots: Iterable[Path] = ()) -> str:
    """Convenience for callers that only need to know whether a command may ever run."""
    decision = Policy(PolicyConfig(file_roots=list(roots))).check_command(command)
    return decision.reason if decision.verdict is Verdict.FORBIDDEN else ""
