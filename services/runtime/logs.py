"""structlog setup: JSON lines (console rendering on a terminal). Log event ids, session ids and
pseudonymous patient keys only: never a payload, a free-text field or a birth date."""

from __future__ import annotations

import logging
import sys

import structlog


class _CurrentStderr:
    """Standard error as it is when a line is written (not when logging was configured: a
    command run in-process by a test may configure logging while ``sys.stderr`` is a capture
    that is closed later). A line that cannot be written is dropped: a log write never raises
    into the service that logs (a delivery queue, a consumer loop)."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (OSError, ValueError):  # closed, or a broken pipe
            return 0

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def configure(fmt: str | None = None, level: int = logging.INFO) -> None:
    use_console = fmt == "console" or (fmt is None and sys.stderr.isatty())
    renderer = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(service=name)


def quiet_stdlib_logger(name: str) -> logging.Logger:
    """A stdlib logger for FastStream: only warnings and errors (its per-message access log
    halves throughput)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    return logger
