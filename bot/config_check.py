"""What is wrong with the configuration, and where it was set, in the operator's words.

Settings come from the environment, `.env` and `orchestrator.toml` (bot/settings.py). A
mistake in any of them is a `ConfigurationError` whose message names the file and line or
the variable that holds the bad value: pydantic alone would name the environment variable
even for a value read from the TOML file, ignore a misspelt key, and show a TOML syntax
error as a traceback. Nothing here imports the settings: the model class is passed in.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ValidationError
from pydantic_settings import SettingsError

from core.errors import ConfigurationError

CONFIG_ENV = "ORCHESTRATOR_CONFIG"
DEFAULT_CONFIG = "orchestrator.toml"
DOCS = "docs/configuration.md"

MISSING_CONFIG = "{env} names {path}, which {why}: point {env} at your {default}, or unset it"
UNREADABLE = "cannot read {path}: {reason}"
NOT_TOML = "{path} {where} is not valid TOML: {reason} (see {docs})"
UNKNOWN_KEY = "{where}: unknown setting {key}{hint}"
DID_YOU_MEAN = " (did you mean {name}?)"
INVALID_ONE = "invalid configuration: {item} (see {docs})"
INVALID_MANY = "invalid configuration (see {docs}):\n{items}"
NOT_PARSED = "{name} in {source} cannot be read: {reason} (see {docs})"

_SECRET_WORDS = ("token", "secret", "password")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")
_AT = re.compile(r"\(at line (\d+), column (\d+)\)|\(at end of document\)")


# ---- finding and reading the file -------------------------------------------------------------
def config_path() -> Path | None:
    """The TOML file to read: the one ORCHESTRATOR_CONFIG names (it must exist), else ./orchestrator.toml if any."""
    named = os.environ.get(CONFIG_ENV, "")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            why = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise ConfigurationError(
                MISSING_CONFIG.format(env=CONFIG_ENV, path=os.path.abspath(path), why=why, default=DEFAULT_CONFIG)
            )
        return path
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


@dataclass(frozen=True)
class TomlFile:
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def shown(self) -> str:
        return os.path.abspath(self.path)

    def line_of(self, keys: Sequence[str | int]) -> int | None:
        """The line that sets `keys` (a table header counts for what is under it, when nothing closer is found)."""
        wanted = [str(k) for k in keys if isinstance(k, str)]
        best, best_depth = None, 0
        table: list[str] = []
        for number, line in enumerate(self.text.splitlines(), start=1):
            stripped = line.strip()
            if header := re.fullmatch(r"\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?", stripped):
                table = _dotted(header.group(1))
                here = table
            elif assignment := re.match(r"([A-Za-z0-9_\-.\"' ]+?)\s*=", stripped):
                here = table + _dotted(assignment.group(1))
            else:
                continue
            depth = _common(here, wanted)
            if depth == len(wanted) and len(here) == len(wanted):
                return number
            if depth == len(here) and depth > best_depth:  # a table or key that holds what we look for
                best, best_depth = number, depth
        return best


def read_toml(path: Path) -> TomlFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigurationError(UNREADABLE.format(path=os.path.abspath(path), reason=reason)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(_syntax_error(os.path.abspath(path), exc)) from None
    return TomlFile(path, text, data)


def _syntax_error(shown: str, exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    at = _AT.search(message)
    reason = (message[: at.start()] if at else message).strip()
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)  # Python 3.14 has them
    if line is None and at and at.group(1):
        line, column = int(at.group(1)), int(at.group(2))
    where = f"line {line}, column {column}" if line is not None else "at the end"
    return NOT_TOML.format(path=shown, where=where, reason=reason, docs=DOCS)


def _dotted(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in key.split(".")]


def _common(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# ---- the model's spellings --------------------------------------------------------------------
def spellings(model: type[BaseModel]) -> dict[str, str]:
    """Every accepted spelling of a field (its name, its environment name) → the field name."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if isinstance(alias, str) else []
        for choice in choices:
            if isinstance(choice, str):
                names.setdefault(choice, name)
    return names


def env_name(model: type[BaseModel], name: str) -> str | None:
    alias = model.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str) and alias.choices[0] != name:
        return alias.choices[0]
    return None


def _inner(model: type[BaseModel], name: str) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds, and whether it holds one per key (`hosts.NAME`)."""
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = get_args(annotation)
    if (
        get_origin(annotation) is dict
        and len(args) == 2
        and isinstance(args[1], type)
        and issubclass(args[1], BaseModel)
    ):
        return args[1], True
    return None, False


# ---- unknown keys -----------------------------------------------------------------------------
def check_keys(model: type[BaseModel], toml: TomlFile) -> None:
    """Refuse a key no setting has: a misspelt one would otherwise leave its setting at the default."""
    problems = [
        UNKNOWN_KEY.format(where=_place(toml, path), key=".".join(path), hint=hint)
        for path, hint in _unknown(model, toml.data, ())
    ]
    if len(problems) == 1:
        raise ConfigurationError(f"{problems[0]}; see {DOCS}")
    if problems:
        raise ConfigurationError(f"unknown settings (see {DOCS}):\n" + "\n".join("  " + p for p in problems))


def _place(toml: TomlFile, path: Sequence[str | int]) -> str:
    line = toml.line_of(path)
    return f"{toml.shown} line {line}" if line else toml.shown


def _unknown(
    model: type[BaseModel], data: dict[str, Any], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], str]]:
    accepted = spellings(model)
    for key, value in data.items():
        here = (*path, key)
        name = accepted.get(key)
        if name is None:
            near = _nearest(key, accepted)
            yield here, DID_YOU_MEAN.format(name=".".join((*path, near))) if near else ""
            continue
        inner, per_key = _inner(model, name)
        if inner is None or not isinstance(value, dict):
            continue
        if not per_key:
            yield from _unknown(inner, value, here)
            continue
        for item, table in value.items():
            if isinstance(table, dict):
                yield from _unknown(inner, table, (*here, item))


def _nearest(key: str, accepted: dict[str, str]) -> str | None:
    by_spelling = {spelling.lower(): name for spelling, name in accepted.items()}
    found = difflib.get_close_matches(key.lower(), list(by_spelling), n=1, cutoff=0.6)
    return by_spelling[found[0]] if found else None


# ---- invalid values ---------------------------------------------------------------------------
@dataclass
class Origins:
    """Where each value may have come from: the environment, `.env`, the TOML file."""

    environ: dict[str, str]
    dotenv: dict[str, str]
    dotenv_path: str
    toml: TomlFile | None = None

    @classmethod
    def load(cls, env_file: str = ".env") -> Origins:
        from dotenv import dotenv_values

        dotenv = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if Path(env_file).is_file() else {}
        try:
            path = config_path()
            toml = read_toml(path) if path is not None else None
        except ConfigurationError:
            toml = None
        return cls(dict(os.environ), dotenv, os.path.abspath(env_file), toml)

    def describe(self, model: type[BaseModel], loc: Sequence[str | int], message: str, value: Any) -> str:
        """One line: the value, where it was set, and what is wrong with it."""
        steps = _steps(model, loc)
        secret = any(word in str(step.name).lower() for step in steps for word in _SECRET_WORDS)
        for step in steps:
            if step.env and step.env in self.environ:
                return f"{step.env}={_shown(self.environ[step.env], secret)} (environment variable): {message}"
            if step.env and step.env in self.dotenv:
                return f"{step.env}={_shown(self.dotenv[step.env], secret)} (in {self.dotenv_path}): {message}"
        dotted = ".".join(str(s.name) for s in steps)
        if self.toml is not None and (keys := _toml_keys(self.toml.data, steps)) is not None:
            shown = _shown(value, secret, as_toml=True)
            return f"{dotted} = {shown} ({_place(self.toml, keys)}): {message}"
        return f"{dotted}: {message}"

    def where(self, model: type[BaseModel], name: str) -> str:
        """Where a top-level setting was set, for messages about its value ("ORCHESTRATOR_DATA_DIR")."""
        env = env_name(model, name)
        if env and env in self.environ:
            return env
        if env and env in self.dotenv:
            return f"{env} in {self.dotenv_path}"
        if self.toml is not None and (keys := _toml_keys(self.toml.data, _steps(model, [name]))) is not None:
            return f"{name} in {_place(self.toml, keys)}"
        return env or name


@dataclass(frozen=True)
class _Step:
    name: str | int  # the field name, or a key of a per-key table (a host name), or a list index
    spellings: frozenset[str | int]
    env: str | None = None


def _steps(model: type[BaseModel], loc: Sequence[str | int]) -> list[_Step]:
    steps: list[_Step] = []
    current: type[BaseModel] | None = model
    per_key = False
    for part in loc:
        if current is None or per_key or isinstance(part, int):
            steps.append(_Step(part, frozenset({part})))
            per_key = False
            continue
        accepted = spellings(current)
        name = accepted.get(part)
        if name is None:
            steps.append(_Step(part, frozenset({part})))
            current = None
            continue
        steps.append(_Step(name, frozenset(s for s, n in accepted.items() if n == name), env_name(current, name)))
        current, per_key = _inner(current, name)
    return steps


def _path_to(model: type[BaseModel], title: str, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The field path from `model` to the nested model called `title` (`("reports",)` for ReportSettings)."""
    if model.__name__ == title:
        return path
    for name in model.model_fields:
        inner, per_key = _inner(model, name)
        if inner is not None and not per_key and (found := _path_to(inner, title, (*path, name))) is not None:
            return found
    return None


def _toml_keys(data: Any, steps: Sequence[_Step]) -> list[str | int] | None:
    """The keys as the file spells them, when the file sets this value."""
    keys: list[str | int] = []
    for step in steps:
        if isinstance(data, dict):
            key = next((k for k in data if k in step.spellings), None)
            if key is None:
                return None
            keys.append(key)
            data = data[key]
        elif isinstance(data, list) and isinstance(step.name, int) and step.name < len(data):
            keys.append(step.name)
            data = data[step.name]
        else:
            return None
    return keys


def _shown(value: Any, secret: bool, *, as_toml: bool = False) -> str:
    if secret:
        return "…" if not as_toml else '"…"'
    text = json.dumps(value, ensure_ascii=False, default=str) if as_toml else str(value)
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return text if len(text) <= 80 else text[:77] + "…"


def _message(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    pattern = str((error.get("ctx") or {}).get("pattern", ""))
    if choices := re.fullmatch(r"\^\(([\w|]+)\)\$", pattern):
        return "should be one of " + ", ".join(choices.group(1).split("|"))
    return message


def explain(exc: ValidationError | SettingsError, model: type[BaseModel]) -> ConfigurationError:
    """The error to show for invalid settings: each bad value with where it was set."""
    origins = Origins.load()
    if isinstance(exc, SettingsError):  # a complex value (JSON) in the environment that does not parse
        named = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
        if not named or named.group(1) not in model.model_fields:
            return ConfigurationError(f"invalid configuration: {exc} (see {DOCS})")
        name = named.group(1)
        source = "the environment" if named.group(2) == "EnvSettingsSource" else named.group(2)
        reason = f"not valid JSON ({exc.__cause__})" if exc.__cause__ else "not valid JSON"
        return ConfigurationError(
            NOT_PARSED.format(name=env_name(model, name) or name, source=source, reason=reason, docs=DOCS)
        )
    # A nested model built by its default factory (`reports` from the environment alone) raises its own error.
    prefix = _path_to(model, exc.title) or ()
    items = [origins.describe(model, (*prefix, *e["loc"]), _message(e), e.get("input")) for e in exc.errors()]
    if len(items) == 1:
        return ConfigurationError(INVALID_ONE.format(item=items[0], docs=DOCS))
    return ConfigurationError(INVALID_MANY.format(items="\n".join("  " + i for i in items), docs=DOCS))
