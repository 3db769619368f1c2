"""Secrets are scrubbed by value wherever they turn up (a server echoing the key, a traceback, a log
line), credential-shaped text is scrubbed too, and prose that only names a field stays readable."""

from __future__ import annotations

import logging

import pytest

from gogooku3.config import ConfigError, Secret
from gogooku3.jquants.errors import AuthError, RequestFailedError
from gogooku3.lake import LakeError
from gogooku3.redaction import MASK, library_logger, scrub


def test_a_secret_is_scrubbed_by_value_whatever_surrounds_it() -> None:
    key = Secret("k3y-Echoed-By-The-Server")
    for text in (
        "API key k3y-Echoed-By-The-Server is not valid",
        "forbidden:k3y-Echoed-By-The-Server;",
        "<k3y-Echoed-By-The-Server>",
        "xk3y-Echoed-By-The-Serverx",
    ):
        clean = scrub(text)
        assert key.get() not in clean and MASK in clean, text


def test_the_longer_of_two_nested_secrets_goes_whole() -> None:
    Secret("abcd-1234")
    Secret("abcd-1234-efgh")
    assert scrub("token abcd-1234-efgh here") == f"token {MASK} here"


def test_values_too_short_to_be_credentials_are_not_registered() -> None:
    Secret("ab")
    assert scrub("a tab is ab") == "a tab is ab"


def test_values_named_by_the_caller_are_masked_whatever_their_length() -> None:
    assert scrub("pin 42 refused", extra=["42"]) == f"pin {MASK} refused"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /v1/token/auth_refresh?refreshtoken=tok-123&x=1 failed", "tok-123"),
        ('{"idToken": "id-456"}', "id-456"),
        ("Authorization: Bearer id-789", "id-789"),
        ("x-api-key: key-000", "key-000"),
        ("{'mailaddress': 'me@example.com', 'password': 'pw-111'}", "pw-111"),
        ("https://user:s3cr3t-pw@api.example.com/v1", "s3cr3t-pw"),
    ],
)
def test_credential_shapes_are_scrubbed_for_secrets_never_held(text: str, secret: str) -> None:
    clean = scrub(text)
    assert secret not in clean and MASK in clean


@pytest.mark.parametrize(
    "text",
    [
        "'mailaddress' or 'password' is incorrect",
        "date=2024-01-04 code=13010",
        "J-Quants v1 /token/auth_refresh answered without an idToken",
        "check JQUANTS_AUTH_EMAIL/JQUANTS_AUTH_PASSWORD/JQUANTS_REFRESH_TOKEN",
        "see https://api.jquants.com/v2/equities/bars/daily",
    ],
)
def test_prose_that_only_names_a_field_is_left_readable(text: str) -> None:
    assert scrub(text) == text


def test_the_librarys_exceptions_scrub_their_message_when_created() -> None:
    key = Secret("live-key-in-an-error-9f8e")
    for exc in (
        AuthError(f"J-Quants refused access (403): key {key.get()} is suspended"),
        RequestFailedError(
            f"J-Quants answered 500: {key.get()}", endpoint="/x", params={}, page=1, attempts=1
        ),
        LakeError(f"s3 said: {key.get()}"),
        ConfigError(f"JQUANTS_BASE_URL=https://u:{key.get()}@host"),
    ):
        assert key.get() not in str(exc) and MASK in str(exc), type(exc).__name__


def test_library_log_records_are_scrubbed_before_any_handler(caplog: pytest.LogCaptureFixture) -> None:
    key = Secret("logged-key-0a1b2c3d")
    log = library_logger("gogooku3.test_redaction")
    with caplog.at_level(logging.INFO, logger="gogooku3.test_redaction"):
        log.warning("server said %s", f"bad key {key.get()}")
        try:
            raise RuntimeError(f"boom with {key.get()}")
        except RuntimeError:
            log.exception("failed")
    assert caplog.records and key.get() not in caplog.text
    assert f"server said bad key {MASK}" in caplog.text and f"RuntimeError: boom with {MASK}" in caplog.text
    # the same logger is not given a second filter by a second lookup
    assert library_logger("gogooku3.test_redaction").filters == log.filters
