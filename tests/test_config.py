"""Settings and dates reject what would be misread: non-finite numbers that would switch pacing or a
timeout off, and dates that only strptime's leniency makes into dates."""

from __future__ import annotations

import datetime as dt

import pytest

from gogooku3.calendar import parse_date
from gogooku3.config import DEFAULT_RETRY_DELAY_S, ConfigError, JQuantsSettings, Settings, task_retry_delay_s


@pytest.mark.parametrize("name", ["JQUANTS_RATE_PER_MINUTE", "GOGOOKU3_JQUANTS_TIMEOUT_S"])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_rates_and_timeouts_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        JQuantsSettings.from_env({name: value})
    assert f"{name}={value!r} must be a finite number" in str(err.value)


def test_finite_rates_and_timeouts_are_read() -> None:
    j = JQuantsSettings.from_env({"JQUANTS_RATE_PER_MINUTE": "90.5", "GOGOOKU3_JQUANTS_TIMEOUT_S": "12"})
    assert (j.rate_per_minute, j.timeout_s) == (90.5, 12.0)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2024-06-01", dt.date(2024, 6, 1)),
        ("20240601", dt.date(2024, 6, 1)),
        (" 2024-02-29 ", dt.date(2024, 2, 29)),
    ],
)
def test_the_two_date_forms_parse(text: str, day: dt.date) -> None:
    assert parse_date(text) == day


@pytest.mark.parametrize("text", ["202461", "2024113", "2024-6-1", "2024-06-1", "24-06-01", "2024/06/01", ""])
def test_other_spellings_are_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_date(text)
    assert f"bad date {text!r}: expected YYYY-MM-DD (or YYYYMMDD)" == str(err.value)


@pytest.mark.parametrize("text", ["2024-02-30", "2023-02-29", "20240431", "2024-13-01", "2024-00-10"])
def test_a_well_formed_day_that_does_not_exist_is_named_as_such(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_date(text)
    assert f"bad date {text!r}: that day does not exist" in str(err.value)
    assert "expected YYYY-MM-DD" not in str(err.value)


def test_a_non_string_date_is_refused() -> None:
    with pytest.raises(ValueError, match="bad date 20240601: expected a string"):
        parse_date(20240601)  # type: ignore[arg-type]


def test_lake_uri_and_base_url_errors_name_the_variable_without_a_password() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"GOGOOKU3_LAKE_URI": "ftp://user:hunter2-pw@host/lake"})
    assert "GOGOOKU3_LAKE_URI" in str(err.value) and "hunter2-pw" not in str(err.value)


def test_task_user_is_a_numeric_non_root_uid_gid() -> None:
    assert Settings.from_env({"GOGOOKU3_TASK_USER": "50000:0"}).task_user == (50000, 0)
    assert Settings.from_env({"GOGOOKU3_TASK_USER": "10001"}).task_user == (10001, 10001)
    assert Settings.from_env({}).task_user is None  # the image's own user
    for value, named in (("0:0", "never run as root"), ("0", "never run as root"), ("airflow", "numeric")):
        with pytest.raises(ConfigError, match=named):
            Settings.from_env({"GOGOOKU3_TASK_USER": value})


def test_the_first_retry_delay_comes_from_the_environment() -> None:
    assert task_retry_delay_s({}) == DEFAULT_RETRY_DELAY_S == 120
    assert task_retry_delay_s({"GOGOOKU3_RETRY_DELAY_S": "5"}) == 5.0
    for bad in ("soon", "-1", "nan", "7200"):
        with pytest.raises(ConfigError, match=f"GOGOOKU3_RETRY_DELAY_S={bad!r}"):
            task_retry_delay_s({"GOGOOKU3_RETRY_DELAY_S": bad})
