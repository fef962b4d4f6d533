"""Logging with secrets removed from every record."""

from __future__ import annotations

import logging

from core.redact import Redactor


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        return True


# Loggers that say, at INFO, only what a library does on import: each command imports its
# libraries after logging is set up, so without this `run` would start with their lines.
QUIET_ON_IMPORT = ("alembic.runtime.plugins",)


def setup_logging(redactor: Redactor, *, level: str = "WARNING") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_ON_IMPORT:
        logging.getLogger(name).setLevel(logging.WARNING if root.level > logging.DEBUG else logging.NOTSET)
