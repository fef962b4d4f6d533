"""Secrets are removed before text reaches the model, the chat or a log."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

_SECRET_WORDS = (
    r"(?:TOKEN|SECRET|PASSWORD|PASSWD|PASS|PWD|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY|CREDENTIALS?|AUTH)"
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole block
    (
        re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.S),
        "-----BEGIN PRIVATE KEY----- " + REDACTED + " -----END PRIVATE KEY-----",
    ),
    # env-like lines: FOO_TOKEN=..., export DB_PASSWORD="...", password: ...
    (
        re.compile(r"(?im)^(\s*(?:export\s+)?[\w.-]*" + _SECRET_WORDS + r"[\w.-]*\s*[=:]\s*)(\S.*)$"),
        r"\1" + REDACTED,
    ),
    # JSON-ish "password": "value"
    (
        re.compile(r'(?i)("[\w.-]*' + _SECRET_WORDS + r'[\w.-]*"\s*:\s*")([^"]+)(")'),
        r"\1" + REDACTED + r"\3",
    ),
    # key=value inside a line (query strings, command lines)
    (
        re.compile(r"(?i)\b([\w.-]*" + _SECRET_WORDS + r"[\w.-]*=)([^\s&'\"]+)"),
        r"\1" + REDACTED,
    ),
    # credentials in URLs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)"), r"\1" + REDACTED + r"\3"),
    # Authorization headers
    (re.compile(r"(?i)\b(authorization:\s*(?:bearer|basic|token)\s+)(\S+)"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{16,})"), r"\1" + REDACTED),
    # well-known token shapes
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"\bxapp-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), REDACTED),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}"), REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"\b[MNO][A-Za-z\d_-]{23,27}\.[\w-]{6}\.[\w-]{27,40}\b"), REDACTED),
)


class Redactor:
    """Removes secrets by shape and by value (the configured tokens themselves)."""

    def __init__(self, known_secrets: Iterable[str] = ()) -> None:
        self._known = sorted({s for s in known_secrets if s and len(s) >= 6}, key=len, reverse=True)

    def add_secret(self, value: str) -> None:
        if value and len(value) >= 6 and value not in self._known:
            self._known.append(value)
            self._known.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._known:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def redact(text: str) -> str:
    return Redactor()(text)
