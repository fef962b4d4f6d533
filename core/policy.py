"""Policy sits between the agent and the tools.

It decides, for a command line, whether it never runs (forbidden: no approval
unlocks it, see core/forbidden.py), runs freely (every word understood by the
read-only table, core/command_table.toml, judged by core/grammar.py), or runs only
once approved. It also confines file tools to the configured roots and caps output.
The policy never raises for a command: a refusal is a decision with a reason.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from core import forbidden
from core.errors import ModelFacingError
from core.grammar import Checks, Program, Rejected, check_argv, load_table, simple_program
from core.redact import Redactor

log = logging.getLogger(__name__)

# Programs are looked up here, never in the bot's own PATH.
SYSTEM_PATH: tuple[str, ...] = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class Verdict(StrEnum):
    FORBIDDEN = "forbidden"
    READ = "read"
    APPROVAL = "approval"


@dataclass(frozen=True, slots=True)
class CommandDecision:
    verdict: Verdict
    argv: tuple[str, ...]
    reason: str
    workdir: Path | None = None  # where it runs: the first file root that exists


class PolicyError(ModelFacingError):
    """A refusal the model should see (and may correct)."""


class PathRefused(PolicyError):
    pass


class CommandRefused(PolicyError):
    pass


# Raw-text patterns, checked on the command as written and on every quoted part of it.
FORBIDDEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|[\s;&|/'\"`(])mkfs(?:\.\w+)?\b"), "formats a filesystem"),
    (re.compile(r"\bdd\b[^\n]*\bof=\s*/dev/(?!null\b|stdout\b|stderr\b|zero\b|tty\b)"), "writes raw data to a device"),
    (re.compile(r">\s*/dev/(?!null\b|stdout\b|stderr\b|tty\b|fd/)"), "redirects into a device"),
    (re.compile(r"--no-preserve-root"), "removes the root filesystem"),
    (re.compile(r"\b(?:insmod|rmmod|modprobe|kexec)\b"), "changes the running kernel"),
    (re.compile(r"(?:^|[\s;&|/'\"`(])(?:wipefs|fdisk|sfdisk|parted|blkdiscard|mkswap)\b"), "rewrites a disk"),
    (re.compile(r"\bchmod\s+(?:-\w*\s+)*[0-7]*\s*(?:-R|--recursive)[^\n]*\s/(?:\s|$)"), "changes modes on /"),
    (re.compile(r"\bshred\b[^\n]*/dev/"), "destroys a device"),
)  # fmt: skip

_SHELL_OPERATORS = frozenset({";", "|", "||", "&", "&&", ">", ">>", "<", "<<", "(", ")", ";;", ">&", "<&", "|&"})
_GLOB = re.compile(r"[*?\[]")
_MAX_GLOB = 1000


@dataclass
class PolicyConfig:
    file_roots: list[Path] = field(default_factory=list)
    allow_etc_writes: bool = False
    extra_read_commands: frozenset[str] = frozenset()  # free with plain operands and no options
    extra_programs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # `[commands.NAME]` entries
    denied_commands: frozenset[str] = frozenset()
    output_cap: int = 16_000
    command_timeout: float = 60.0


class Policy:
    """What the tools may do, decided in one place from a `PolicyConfig`: commands, paths, output.

    `check_command` classifies a command line as forbidden, free to run (read-only) or waiting
    for approval, and never raises: a refusal is a `CommandDecision` with a reason.
    `resolve_path` confines the file tools to the configured roots (raising `PathRefused`);
    `clean` redacts and caps what a tool returns, and `redact` is the redactor itself, which
    the agent also applies to plans and answers. Pass the same one to the agent and the tools.
    """

    def __init__(self, config: PolicyConfig, redactor: Redactor | None = None) -> None:
        self.config = config
        self.redact = redactor or Redactor()
        self.roots = [Path(os.path.realpath(r)) for r in config.file_roots]
        self.table: dict[str, Program] = load_table(config.extra_programs)
        for name in config.extra_read_commands:
            self.table.setdefault(name, simple_program(name))
        self._checks = Checks(content_path=self._content_path, meta_path=self._meta_path)

    @property
    def workdir(self) -> Path | None:
        """Where commands run and relative paths start: the first file root that is a directory."""
        for root in self.roots:
            try:
                if root.is_dir():
                    return root
            except OSError:
                continue
        return None

    # ---- commands -------------------------------------------------------
    def split(self, command: str) -> tuple[str, ...]:
        return tuple(_split(command, posix=True))

    def check_command(self, command: str) -> CommandDecision:
        """Classify a command line. Never raises; a refusal is a FORBIDDEN decision."""
        try:
            return self._check_command(command)
        except Exception as exc:  # a policy bug must refuse, never crash the run or let a command through
            log.exception("policy failed on a command")
            return CommandDecision(Verdict.FORBIDDEN, (), f"refused: the policy could not judge this command ({exc})")

    def _check_command(self, command: str) -> CommandDecision:
        if not command.strip():
            return CommandDecision(Verdict.FORBIDDEN, (), "the command is empty")
        if "\x00" in command or "\n" in command or "\r" in command:
            return CommandDecision(Verdict.FORBIDDEN, (), "one command per call: newlines and NUL bytes are refused")
        workdir = self.workdir
        reason = self._forbidden_deep(command, workdir)  # copes with unparsable text, so it comes before the split
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
        if not tokens:
            return CommandDecision(Verdict.FORBIDDEN, (), "the command is empty")
        argv = self._expand_globs(command, tokens, workdir)
        reason = forbidden.forbidden_argv(argv, workdir)
        if reason:
            return CommandDecision(Verdict.FORBIDDEN, (), f"refused: this command {reason}; no approval can unlock it")
        if forbidden.program_name(argv[0]) in self.config.denied_commands:
            return CommandDecision(Verdict.FORBIDDEN, argv, f"refused: {argv[0]} is on the operator's deny list")
        why_not = self._why_not_free(argv, workdir)
        if not why_not:
            return CommandDecision(Verdict.READ, argv, "read-only", workdir)
        return CommandDecision(Verdict.APPROVAL, argv, f"needs approval: {why_not}", workdir)

    def _forbidden_deep(self, text: str, base: Path | None, depth: int = 0) -> str:
        """Check a command line, each of its segments, and every quoted argument as a command
        line of its own (`bash -c 'rm -rf /'`, `ssh host "mkfs …"`), a few levels deep."""
        if depth > 4:
            return "nests commands too deeply"
        for pattern, reason in FORBIDDEN_PATTERNS:
            if pattern.search(text):
                return reason
        if forbidden.fork_bomb(text):
            return "is a fork bomb"
        try:
            tokens = self.split(text)
        except CommandRefused:
            # unbalanced quotes inside an argument: judge the words as plain text
            tokens = tuple(text.replace("'", " ").replace('"', " ").split())
        # Quotes can glue words into one argument (`' ssh host rm' -rf '/ '`): judge the plain
        # words too, with quotes and operators turned into spaces. Conservative on purpose.
        plain = text
        for ch in "'\"`;|&<>()\\{}":
            plain = plain.replace(ch, " ")
        for words in (" ".join(tokens).split(), plain.split()):
            reason = forbidden.forbidden_argv(words, base)
            if reason:
                return reason
        segment: list[str] = []
        for token in [*tokens, ";"]:
            if token in _SHELL_OPERATORS or (token and set(token) <= set(";|&<>()")):
                reason = forbidden.forbidden_argv(segment, base)
                if reason:
                    return reason
                segment = []
                continue
            segment.append(token)
            inner = token.replace("`", " ").replace("$(", " ")
            if inner.strip() != text.strip() and (any(c.isspace() for c in token) or any(c in token for c in ";|&`$")):
                reason = self._forbidden_deep(inner, base, depth + 1)
                if reason:
                    return reason
        return ""

    def _expand_globs(self, command: str, tokens: tuple[str, ...], workdir: Path | None) -> tuple[str, ...]:
        """Expand unquoted wildcards inside the file roots, as a shell would (`du -sh /srv/*`).
        Patterns elsewhere, or quoted, stay as written (without a shell they are literal)."""
        if workdir is None or not any(_GLOB.search(t) for t in tokens[1:]):
            return tokens
        try:
            raw = _split(command, posix=False)
        except CommandRefused:
            return tokens
        if len(raw) != len(tokens):
            return tokens  # quotes glued words together: do not guess which were quoted
        out: list[str] = [tokens[0]]
        for word, spelled in zip(tokens[1:], raw[1:], strict=True):
            if not _GLOB.search(word) or any(q in spelled for q in "'\"\\") or word.startswith("-"):
                out.append(word)
                continue
            pattern = word if word.startswith("/") else str(workdir / word)
            directory = os.path.dirname(pattern.split("*")[0].split("?")[0].split("[")[0]) or "/"
            if not self.is_inside_roots(directory):
                out.append(word)
                continue
            matches = sorted(glob.glob(pattern))[:_MAX_GLOB]
            if not matches:
                out.append(word)
                continue
            for m in matches:
                if not word.startswith("/"):
                    m = os.path.relpath(m, workdir)
                    m = m if not m.startswith("-") else f"./{m}"
                out.append(m)
        return tuple(out)

    def _why_not_free(self, argv: Sequence[str], workdir: Path | None) -> str:
        """ "" when every word of argv is understood and read-only; otherwise what is not."""
        if workdir is None:
            return "no file root exists as a directory, so nothing runs without approval"
        name, problem = resolve_program(argv[0])
        if problem:
            return problem
        program = self.table.get(name)
        if program is None:
            return f"{name} is not in the read-only command table"
        try:
            check_argv(program, argv[1:], self._checks)
        except Rejected as exc:
            return str(exc)
        return ""

    def _content_path(self, value: str) -> bool:
        return value == "-" or self.is_inside_roots(value)

    @staticmethod
    def _meta_path(value: str) -> bool:
        return "\x00" not in value

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
        try:
            p = Path(raw).expanduser()
            if not p.is_absolute():
                workdir = self.workdir
                if workdir is None:
                    raise PathRefused(
                        f"refused: {raw} is relative and no file root exists as a directory "
                        f"({', '.join(str(r) for r in self.roots)}); create it or fix ORCHESTRATOR_FILE_ROOTS"
                    )
                p = workdir / p
            real = Path(os.path.realpath(p))
        except (OSError, ValueError, RuntimeError) as exc:
            raise PathRefused(f"refused: cannot resolve {raw} ({exc})") from exc
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


def _split(command: str, *, posix: bool) -> list[str]:
    lexer = shlex.shlex(command, posix=posix, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # without a shell, `#` is an ordinary character; never hide words behind it
    try:
        return list(lexer)
    except ValueError as exc:
        raise CommandRefused(f"cannot parse the command ({exc}); quote it properly") from exc


def _trusted(path: str) -> bool:
    """Owned by root and writable by nobody else, all the way up."""
    p = Path(path)
    for part in (p, *p.parents):
        try:
            st = os.stat(part)
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True


def lookup_program(name: str) -> str | None:
    for directory in SYSTEM_PATH:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def resolve_program(word: str) -> tuple[str, str]:
    """(the program's table name, "") when argv[0] may run freely; else (name, why not).

    A bare name is looked up in the fixed system PATH; an absolute path must resolve to
    that same program. Relative paths, `..` and programs in writable places are not free.
    """
    name = os.path.basename(word)
    if "/" in word:
        if not word.startswith("/"):
            return name, f"{word} is a relative path; only programs from the system PATH run without approval"
        if ".." in word.split("/"):
            return name, f"{word} contains '..'; only programs from the system PATH run without approval"
    found = lookup_program(name)
    if found is None:
        return name, f"{name} is not installed in the system PATH ({':'.join(SYSTEM_PATH)})"
    real = os.path.realpath(found)
    if "/" in word and os.path.realpath(word) != real:
        return name, f"{word} is not the system's {name} ({found})"
    if not _trusted(real):
        return name, f"{real} is in a directory others can write to"
    return name, ""
