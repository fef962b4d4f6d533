"""The read-only command grammar: is every word of this argv understood and harmless?

`core/command_table.toml` is the data: one entry per program, the options it may be
given (spelled exactly, each with the kind of value it takes) and its operands. This
module parses an argv the way the program itself would (getopt_long with
permutation, combined short flags, `--opt=V`, `--opt V`, `-oV`, `-o V`, `--` ending
options; or the program's own grammar for `find` and `ip`) and answers with the first
word it does not accept. Anything not understood is not an error: it needs approval.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

FLAG = "flag"

# What a value of each kind may look like. `path`, `meta` and `rev` are checked by callbacks
# that know the file roots; the others are shapes.
_SHAPES: dict[str, re.Pattern[str]] = {
    "int": re.compile(r"\d{1,12}"),
    "count": re.compile(r"[+-]?\d{1,12}(?:[bkKmMGTPEZY]|[kKMGTPEZY]i?B)?"),
    "size": re.compile(r"\d{1,12}(?:\.\d+)?(?:[bkKmMGTPEZY]|[kKMGTPEZY]i?B)?|[kKMGTPEZY]i?B?"),
    "word": re.compile(r"[\w@%:.,+=^~/*?\[\]!-]{1,256}"),
    "plusformat": re.compile(r"\+[^\x00\n]*"),
}
_TEXT = re.compile(r"[^\x00\n\r]{0,4096}")
_REV = re.compile(r"[\w./~^@{}:+=*?\[\]-]{1,512}")

PathCheck = Callable[[str], bool]


@dataclass(frozen=True)
class Checks:
    """What the grammar asks of the policy: is this path one it may read or look at."""

    content_path: PathCheck  # `path`: contents are read, so it must lie inside the file roots
    meta_path: PathCheck  # `meta`: only names, sizes and modes are shown


@dataclass(frozen=True)
class ValueKind:
    name: str
    choices: frozenset[str] = frozenset()
    optional: bool = False  # `=KIND`: an optional value that must be attached

    @classmethod
    def parse(cls, spec: str) -> ValueKind:
        optional = spec.startswith("=")
        spec = spec.removeprefix("=")
        if spec.startswith("choice:"):
            return cls("choice", frozenset(spec.removeprefix("choice:").split(",")), optional)
        if spec not in {*_SHAPES, FLAG, "text", "path", "meta", "rev"}:
            raise ValueError(f"unknown value kind {spec!r}")
        return cls(spec, frozenset(), optional)

    def accepts(self, value: str, checks: Checks) -> bool:
        if "\x00" in value:
            return False
        match self.name:
            case "choice":
                return value in self.choices
            case "text":
                return bool(_TEXT.fullmatch(value))
            case "path":
                return bool(value) and checks.content_path(value)
            case "meta":
                return bool(value) and checks.meta_path(value)
            case "rev":  # no leading / or -, no `..` path segment (a range like a..b is fine)
                return (
                    bool(_REV.fullmatch(value))
                    and not value.startswith(("-", "/"))
                    and ".." not in re.split(r"[/:]", value)
                )
            case _:
                return bool(_SHAPES[self.name].fullmatch(value))


@dataclass(frozen=True)
class Operand:
    kind: ValueKind
    repeat: bool = False
    optional: bool = False

    @classmethod
    def parse(cls, spec: str) -> Operand:
        if spec.endswith("..."):
            return cls(ValueKind.parse(spec[:-3]), repeat=True, optional=True)
        if spec.endswith("?"):
            return cls(ValueKind.parse(spec[:-1]), optional=True)
        return cls(ValueKind.parse(spec))


@dataclass(frozen=True)
class Program:
    """One entry of the table: a program, or one subcommand of it."""

    name: str
    options: Mapping[str, ValueKind] = field(default_factory=dict)
    operands: tuple[Operand, ...] = ()
    numeric_flag: bool = False
    pattern_unless: frozenset[str] = frozenset()
    bsd: frozenset[str] = frozenset()
    parser: str = "getopt"
    subcommands: Mapping[str, Program] = field(default_factory=dict)
    permute: bool = False
    bare: bool = False
    predicates: Mapping[str, ValueKind] = field(default_factory=dict)

    @classmethod
    def from_table(cls, name: str, raw: Mapping[str, Any]) -> Program:
        known = {"options", "operands", "numeric_flag", "pattern_unless", "bsd", "parser", "subcommands"}
        known |= {"permute", "bare", "predicates"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"command table entry {name!r}: unknown keys {sorted(unknown)}")
        parser = str(raw.get("parser", "getopt"))
        if parser not in {"getopt", "find", "ip"}:
            raise ValueError(f"command table entry {name!r}: unknown parser {parser!r}")
        return cls(
            name=name,
            options={opt: ValueKind.parse(str(kind)) for opt, kind in dict(raw.get("options", {})).items()},
            operands=tuple(Operand.parse(str(s)) for s in raw.get("operands", ())),
            numeric_flag=bool(raw.get("numeric_flag", False)),
            pattern_unless=frozenset(raw.get("pattern_unless", ())),
            bsd=frozenset(str(raw.get("bsd", ""))),
            parser=parser,
            subcommands={
                sub: cls.from_table(f"{name} {sub}", dict(spec))
                for sub, spec in dict(raw.get("subcommands", {})).items()
            },
            permute=bool(raw.get("permute", False)),
            bare=bool(raw.get("bare", False)),
            predicates={p: ValueKind.parse(str(k)) for p, k in dict(raw.get("predicates", {})).items()},
        )


class Rejected(Exception):
    """A word the table does not accept (the reason says which and why)."""


def load_table(extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Program]:
    """The shipped table, with the operator's own entries (`[commands.NAME]`) over it."""
    text = resources.files("core").joinpath("command_table.toml").read_text(encoding="utf-8")
    raw = dict(tomllib.loads(text)["programs"])
    raw.update(extra or {})
    return {name: Program.from_table(name, dict(spec)) for name, spec in raw.items()}


def simple_program(name: str) -> Program:
    """ORCHESTRATOR_READ_COMMANDS: a program the operator declared free with plain operands
    and no options (`sleep 1`); a path-like operand must still lie inside the roots."""
    return Program(name=name, operands=(Operand(ValueKind("arg"), repeat=True, optional=True),))


# ---- parsing --------------------------------------------------------------------------


def check_argv(program: Program, args: Sequence[str], checks: Checks) -> None:
    """Raise Rejected unless every word of `args` (argv without the program) is accepted."""
    match program.parser:
        case "find":
            _check_find(program, list(args), checks)
        case "ip":
            _check_ip(program, list(args), checks)
        case _:
            if program.subcommands and not program.permute:
                _check_subcommand(program, list(args), checks)
            else:
                _check_getopt(program, list(args), checks)


def _accept_value(program: Program, option: str, kind: ValueKind, value: str, checks: Checks) -> None:
    if not _value_ok(kind, value, checks):
        raise Rejected(f"{program.name}: {value!r} is not an accepted value for {option}")


def _value_ok(kind: ValueKind, value: str, checks: Checks) -> bool:
    if kind.name == "arg":
        looks_like_path = "/" in value or value.startswith((".", "~"))
        return checks.content_path(value) if looks_like_path else bool(_SHAPES["word"].fullmatch(value))
    return kind.accepts(value, checks)


def _parse_options(
    program: Program, args: list[str], checks: Checks, *, stop_at_operand: bool
) -> tuple[list[str], list[str], set[str]]:
    """getopt_long over `args`: returns (operands, the rest after a stop, options seen)."""
    operands: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            operands.extend(args[i:])
            return operands, [], seen
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            kind = program.options.get(name)
            if kind is None:
                raise Rejected(f"{program.name}: option {name} is not one that runs without approval")
            seen.add(name)
            if kind.name == FLAG:
                if eq:
                    raise Rejected(f"{program.name}: {name} takes no value")
            elif eq:
                _accept_value(program, name, kind, value, checks)
            elif not kind.optional:
                if i >= len(args):
                    raise Rejected(f"{program.name}: {name} needs a value")
                _accept_value(program, name, kind, args[i], checks)
                i += 1
            continue
        if word.startswith("-") and word != "-":
            if program.numeric_flag and word[1:].isdigit():
                continue
            j = 1
            while j < len(word):
                opt = "-" + word[j]
                kind = program.options.get(opt)
                if kind is None:
                    raise Rejected(f"{program.name}: option {opt} is not one that runs without approval")
                seen.add(opt)
                j += 1
                if kind.name == FLAG:
                    continue
                rest = word[j:]
                if rest:
                    _accept_value(program, opt, kind, rest, checks)
                elif not kind.optional:
                    if i >= len(args):
                        raise Rejected(f"{program.name}: {opt} needs a value")
                    _accept_value(program, opt, kind, args[i], checks)
                    i += 1
                break
            continue
        if stop_at_operand:
            return operands, [word, *args[i:]], seen
        operands.append(word)
    return operands, [], seen


def _check_operands(program: Program, operands: Sequence[str], checks: Checks, *, pattern_given: bool) -> None:
    specs = list(program.operands)
    if pattern_given and specs and program.pattern_unless:
        specs = specs[1:]  # grep -e PATTERN: every operand is a file
    k = 0
    for word in operands:
        while (
            k < len(specs) and not specs[k].repeat and specs[k].optional and not _value_ok(specs[k].kind, word, checks)
        ):
            k += 1  # an optional operand of another kind: skip to the next spec
        if k >= len(specs):
            raise Rejected(f"{program.name}: the operand {word!r} is not one that runs without approval")
        spec = specs[k]
        if not _value_ok(spec.kind, word, checks):
            what = {"path": "a file inside the file roots", "meta": "a path it may look at"}.get(spec.kind.name, "")
            hint = f" (it must be {what})" if what else ""
            raise Rejected(f"{program.name}: the operand {word!r} is not accepted{hint}")
        if not spec.repeat:
            k += 1
    for spec in specs[k:]:
        if not spec.optional and not spec.repeat:
            raise Rejected(f"{program.name}: an operand is missing")


def _skippable(spec: Operand, word: str, checks: Checks) -> bool:
    return not spec.repeat and spec.optional and not _value_ok(spec.kind, word, checks)


def _check_getopt(program: Program, args: list[str], checks: Checks) -> None:
    if program.bsd and args and not args[0].startswith("-"):
        letters = args[0]
        if not letters or not set(letters) <= program.bsd:
            bad = "".join(sorted(set(letters) - program.bsd))
            raise Rejected(f"{program.name}: the option letters {bad!r} do not run without approval")
        args = args[1:]
    operands, _, seen = _parse_options(program, args, checks, stop_at_operand=False)
    if program.subcommands:  # permuting subcommand program (systemctl): the first operand is the verb
        if not operands:
            if program.bare:
                return
            raise Rejected(f"{program.name} without a subcommand does not run without approval")
        verb, rest = operands[0], operands[1:]
        sub = program.subcommands.get(verb)
        if sub is None:
            raise Rejected(f"{program.name}: the subcommand {verb!r} is not one that runs without approval")
        _check_operands(sub, rest, checks, pattern_given=False)
        return
    _check_operands(program, operands, checks, pattern_given=bool(seen & program.pattern_unless))


def _check_subcommand(program: Program, args: list[str], checks: Checks) -> None:
    """git, docker: the program's own options, then the subcommand and its options."""
    _, rest, _ = _parse_options(program, args, checks, stop_at_operand=True)
    if not rest:
        raise Rejected(f"{program.name} without a subcommand does not run without approval")
    verb, sub_args = rest[0], rest[1:]
    sub = program.subcommands.get(verb)
    if sub is None:
        raise Rejected(f"{program.name}: the subcommand {verb!r} is not one that runs without approval")
    _check_getopt(sub, sub_args, checks)


def _check_ip(program: Program, args: list[str], checks: Checks) -> None:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] not in program.options:
            raise Rejected(f"ip: option {args[i]} is not one that runs without approval (options are spelled in full)")
        i += 1
    if i >= len(args):
        raise Rejected("ip without an object does not run without approval")
    obj = program.subcommands.get(args[i])
    if obj is None:
        raise Rejected(f"ip: the object {args[i]!r} is not one that runs without approval (no abbreviations)")
    rest = args[i + 1 :]
    if any(w.startswith("-") for w in rest):
        raise Rejected("ip: options go before the object")
    if rest:  # `ip route` alone shows; anything more starts with the action, spelled in full
        _check_operands(obj, rest, checks, pattern_given=False)


def _check_find(program: Program, args: list[str], checks: Checks) -> None:
    i = 0
    while i < len(args) and args[i] in program.options:  # -P only
        i += 1
    while i < len(args) and not (args[i].startswith("-") or args[i] in {"(", "!", ")", ","}):
        if not _value_ok(ValueKind("meta"), args[i], checks):
            raise Rejected(f"find: the start point {args[i]!r} is not accepted")
        i += 1
    while i < len(args):
        word = args[i]
        kind = program.predicates.get(word)
        if kind is None:
            raise Rejected(f"find: {word} is not a predicate that runs without approval")
        i += 1
        if kind.name == FLAG:
            continue
        if i >= len(args):
            raise Rejected(f"find: {word} needs a value")
        _accept_value(program, word, kind, args[i], checks)
        i += 1
