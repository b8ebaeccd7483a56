"""Logging for Vigil's long-running commands: one format, and libraries kept quiet.

Libraries log their routine work at INFO (httpx: one line per HTTP request, so a beacon checking a
URL every 30 s printed a line every 30 s). That is chatter to someone reading Vigil's log: below
DEBUG, their loggers are raised to WARNING, so their warnings and errors still show.
"""

from __future__ import annotations

import logging

__all__ = ["CHATTY_LIBRARIES", "LOG_FORMAT", "configure_logging"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: loggers whose INFO lines are routine library work
CHATTY_LIBRARIES = ("httpx", "httpcore", "urllib3", "asyncio")


def configure_logging(level: str | int) -> None:
    """Log to stderr at `level` ("INFO", "DEBUG", ... or a number); library INFO only at DEBUG."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    logging.basicConfig(level=numeric, format=LOG_FORMAT)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
