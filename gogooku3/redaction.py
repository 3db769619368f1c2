"""Secret scrubbing: the one function (:func:`scrub`) that cleans text of credentials before it reaches a
log line, an exception message, the terminal or a Slack alert.

Two rules, both applied by :func:`scrub`:

* **By value.** Every :class:`gogooku3.config.Secret` registers its value here when it is created
  (settings from the environment or an Airflow connection, the tokens the v1 auth flow receives), and
  every registered value is replaced by ``***`` wherever it appears, whatever surrounds it: a server
  that echoes the API key inside its error message, an exception quoting a URL, a traceback. This is
  the rule that matters; the shapes below cannot know what a bare key looks like.
* **By shape.** ``name=value``, ``"name": "value"``, ``Bearer value``, ``x-api-key: value`` for
  credential parameter names, and the password of ``scheme://user:password@host``: for secrets this
  process never held (a token the server minted and echoes back). A name must be followed by ``=`` or
  ``:`` to count, so prose that merely mentions a field ("'mailaddress' or 'password' is incorrect")
  is left readable.

Values shorter than :data:`MIN_SECRET_CHARS` are not registered: replacing every "ab" in a message
would make it unreadable, and a credential that short protects nothing anyway.

Library modules log through :func:`library_logger`, whose filter scrubs each record (message,
arguments and traceback) before any handler sees it, in whatever process the library runs: the CLI,
an Airflow task (where Airflow's own ``mask_secret`` covers the glue's log lines), a task container.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable

MASK = "***"
#: Shorter values are not treated as secrets (see the module docstring).
MIN_SECRET_CHARS = 4

#: Parameter and field names whose values are credentials (query parameters, JSON fields, headers).
SECRET_NAMES = (
    "refreshtoken",
    "refresh_token",
    "idtoken",
    "id_token",
    "password",
    "mailaddress",
    "apikey",
    "api_key",
    "x-api-key",
    "aws_secret_access_key",
    "aws_access_key_id",
)

_NAMED = re.compile(
    r"(?i)(?<![\w-])(" + "|".join(re.escape(n) for n in SECRET_NAMES) + r")"
    r"(\"?'?\s*[=:]\s*\"?'?)"  # the separator: = or :, optionally quoted/spaced (JSON, headers, URLs)
    r"([^&\s\"',;}]+)"
)
_BEARER = re.compile(r"(?i)\b(Bearer\s+)([^\s\"',;}]+)")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)([^/\s@]+)(@)")

_lock = threading.Lock()
_values: set[str] = set()
#: Registered values, longest first (so a secret containing another is replaced whole); rebuilt lazily.
_ordered: tuple[str, ...] = ()


def register_secret(value: str) -> None:
    """Treat ``value`` as a secret from now on, in this process (called by ``Secret``)."""
    global _ordered
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
        return
    with _lock:
        if value not in _values:
            _values.add(value)
            _ordered = tuple(sorted(_values, key=len, reverse=True))


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret, every value of ``extra`` and every credential-shaped
    ``name=value`` replaced by ``***`` (see the module docstring)."""
    if not text:
        return text
    values = _ordered
    more = [v for v in extra if isinstance(v, str) and v]  # named by the caller: masked whatever their length
    if more:
        values = tuple(sorted({*values, *more}, key=len, reverse=True))
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    text = _NAMED.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)


class ScrubSecrets(logging.Filter):
    """A logging filter that scrubs a record's rendered message and traceback (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report, not ours
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback is printed scrubbed.
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True


_FILTER = ScrubSecrets()


class ScrubbedMessage:
    """Mixin for the library's exception classes: string arguments are scrubbed when the exception is
    created, so its message is clean wherever it is printed (terminal, traceback, task log, alert)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))


def library_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the scrubbing filter attached (once)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
