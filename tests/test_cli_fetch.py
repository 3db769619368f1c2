"""`gogooku3 fetch` as a user runs it: a subprocess with JQUANTS_* env against the emulator."""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gogooku3.devtools.airflow_env import isolated
from gogooku3.emulator.server import EmulatorConfig
from gogooku3.emulator.testing import running_emulator
from gogooku3.jquants.datasets import DATASET_NAMES, get_dataset
from gogooku3.lake import open_lake

GOGOOKU3 = str(Path(sys.executable).with_name("gogooku3"))
DAY = dt.date(2024, 2, 15)  # a Thursday: trades_spec is published, statements are disclosed
SATURDAY = dt.date(2024, 2, 17)


@pytest.fixture(scope="module")
def emulator():
    cfg = EmulatorConfig.build(
        seed=21,
        codes=80,
        start=dt.date(2024, 1, 1),
        end=dt.date(2024, 3, 29),
        plan="premium",
        page_size=30,
        rate_per_minute=3000,
    )
    with running_emulator(cfg) as handle:
        yield handle


def run_cli(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = isolated(os.environ)
    full = clean | {"GOGOOKU3_PACER_DIR": str(tmp_path / "pacer"), "JQUANTS_PLAN": "premium"} | env
    return subprocess.run([GOGOOKU3, *args], env=full, capture_output=True, text=True, timeout=120)


def v2_env(handle) -> dict[str, str]:
    return {
        "JQUANTS_BASE_URL": handle.base_url_v2,
        "JQUANTS_API_KEY": handle.api_key,
        "JQUANTS_RATE_PER_MINUTE": "3000",
    }


def v1_env(handle) -> dict[str, str]:
    return {
        "JQUANTS_API_VERSION": "v1",
        "JQUANTS_BASE_URL": handle.base_url_v1,
        "JQUANTS_AUTH_EMAIL": handle.email,
        "JQUANTS_AUTH_PASSWORD": handle.password,
        "JQUANTS_RATE_PER_MINUTE": "3000",
    }


def assert_partition_is_truth(lake, handle, name: str, day: dt.date) -> None:
    key = list(get_dataset(name).key)
    got = lake.read_partition("raw", name, day)
    truth = handle.market.frame(name, day)
    assert got.schema == truth.schema, name
    assert got.sort(key).equals(truth.sort(key)), name


@pytest.mark.integration
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fetch_writes_ground_truth_partitions(emulator, version, tmp_path):
    lake_dir = tmp_path / "lake"
    env = v1_env(emulator) if version == "v1" else v2_env(emulator)
    # DAY has rows of every dataset but the two sparse ones, fetched on their first day with rows
    sparse = (
        "weekly_margin_interest",
        "earnings_calendar",
        "dividends",
        "daily_margin_interest",
        "short_selling_positions",
    )
    days = {n: DAY for n in DATASET_NAMES if n not in sparse}
    for name in sparse:
        days[name] = next(d for d in emulator.market.trading_days if emulator.market.frame(name, d).height)
    assert all(emulator.market.frame(n, d).height for n, d in days.items()), "each dataset needs rows"
    procs = [run_cli(["fetch", "--date", DAY.isoformat(), "--lake", str(lake_dir)], env, tmp_path)]
    for name in sparse:
        args = ["fetch", "--date", days[name].isoformat(), "--endpoint", name, "--lake", str(lake_dir)]
        procs.append(run_cli(args, env, tmp_path))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
    out = "".join(p.stdout + p.stderr for p in procs)
    lake = open_lake(str(lake_dir))
    for name, day in days.items():
        assert_partition_is_truth(lake, emulator, name, day)
        assert f"{name} {day.isoformat()}: wrote" in out
        assert lake.read_manifest("raw", name, day).source == f"jquants-{version}"
    secret = emulator.password if version == "v1" else emulator.api_key
    assert secret not in out


@pytest.mark.integration
def test_fetch_selected_endpoints_and_rerun_is_identical(emulator, tmp_path):
    lake_dir = tmp_path / "lake"
    args = ["fetch", "--date", DAY.isoformat(), "--endpoint", "daily_quotes", "--endpoint", "topix"]
    args += ["--lake", str(lake_dir)]
    first = run_cli(args, v2_env(emulator), tmp_path)
    assert first.returncode == 0, first.stderr
    lake = open_lake(str(lake_dir))
    assert lake.list_partitions("raw", "daily_quotes") == [DAY]
    assert lake.list_partitions("raw", "statements") == []
    m1 = lake.read_manifest("raw", "daily_quotes", DAY)
    second = run_cli(args, v2_env(emulator), tmp_path)
    assert second.returncode == 0, second.stderr
    assert lake.read_manifest("raw", "daily_quotes", DAY).same_content(m1)
    assert_partition_is_truth(lake, emulator, "daily_quotes", DAY)


@pytest.mark.integration
def test_fetch_on_a_saturday_skips_with_a_reason(emulator, tmp_path):
    lake_dir = tmp_path / "lake"
    args = ["fetch", "--date", SATURDAY.isoformat(), "--endpoint", "daily_quotes", "--lake", str(lake_dir)]
    proc = run_cli(args, v2_env(emulator), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "not a JPX trading day" in proc.stdout
    assert open_lake(str(lake_dir)).list_partitions("raw", "daily_quotes") == []


@pytest.mark.integration
def test_fetch_range_backfills_each_trading_day(emulator, tmp_path):
    lake_dir = tmp_path / "lake"
    first, last = dt.date(2024, 2, 9), dt.date(2024, 2, 13)  # Fri, weekend, Mon 12th holiday, Tue
    args = ["fetch", "--date", first.isoformat(), "--end", last.isoformat(), "--endpoint", "daily_quotes"]
    proc = run_cli([*args, "--lake", str(lake_dir)], v2_env(emulator), tmp_path)
    assert proc.returncode == 0, proc.stderr
    lake = open_lake(str(lake_dir))
    assert lake.list_partitions("raw", "daily_quotes") == [first, last]
    for day in (first, last):
        assert_partition_is_truth(lake, emulator, "daily_quotes", day)
    assert proc.stdout.count("not a JPX trading day") == 3


@pytest.mark.integration
def test_fetch_with_a_wrong_api_key_fails_naming_the_cause(emulator, tmp_path):
    env = v2_env(emulator) | {"JQUANTS_API_KEY": "definitely-wrong-key"}
    proc = run_cli(
        ["fetch", "--date", DAY.isoformat(), "--endpoint", "topix", "--lake", str(tmp_path)], env, tmp_path
    )
    assert proc.returncode != 0
    assert "JQUANTS_API_KEY" in proc.stderr and "401" in proc.stderr
    assert "definitely-wrong-key" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--date", "2024-02-30"], "--date: bad date '2024-02-30': that day does not exist"),
        (["--date", "yesterday"], "yesterday"),
        (["--date", "202461"], "--date: bad date '202461': expected YYYY-MM-DD"),
        (["--date", "2024-02-15", "--end", "2024113"], "--end: bad date '2024113': expected YYYY-MM-DD"),
        (["--date", "2024-02-15", "--endpoint", "quotes"], "'quotes'"),
        (["--date", "2024-02-15", "--endpoint", "topix", "--endpoint", "prices_daily"], "'prices_daily'"),
        (["--date", "2024-02-15", "--end", "2024-02-14"], "--end 2024-02-14 is before --date 2024-02-15"),
    ],
)
def test_bad_arguments_exit_non_zero_naming_them(args, named, tmp_path):
    env = {"JQUANTS_API_KEY": "k", "JQUANTS_BASE_URL": "http://127.0.0.1:9"}
    proc = run_cli(["fetch", *args, "--lake", str(tmp_path / "lake")], env, tmp_path)
    assert proc.returncode != 0
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["fetch", "--date", "2024-02-15"],
        ["trades-spec", "expand", "--start", "2024-02-15", "--end", "2024-02-16"],
        ["features", "build", "--start", "2024-02-15", "--end", "2024-02-16"],
    ],
    ids=["fetch", "trades-spec-expand", "features-build"],
)
@pytest.mark.parametrize("empty", ["", "  "], ids=["empty", "blank"])
def test_an_empty_lake_option_is_an_error_not_the_default_lake(command, empty, tmp_path):
    default_lake = tmp_path / "default-lake"
    env = {
        "JQUANTS_API_KEY": "k",
        "JQUANTS_BASE_URL": "http://127.0.0.1:9",
        "GOGOOKU3_LAKE_URI": str(default_lake),
    }
    proc = run_cli([*command, "--lake", empty], env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: --lake is empty" in proc.stderr and "Traceback" not in proc.stderr
    assert not default_lake.exists()


@pytest.mark.integration
def test_a_backfill_skips_complete_partitions_and_force_refetches_them(emulator, tmp_path):
    lake_dir = tmp_path / "lake"
    first, last = dt.date(2024, 2, 14), DAY
    args = ["fetch", "--date", first.isoformat(), "--end", last.isoformat(), "--lake", str(lake_dir)]
    args += ["--endpoint", "daily_quotes", "--endpoint", "statements"]
    assert (
        run_cli(
            ["fetch", "--date", first.isoformat(), "--endpoint", "daily_quotes", "--lake", str(lake_dir)],
            v2_env(emulator),
            tmp_path,
        ).returncode
        == 0
    )
    lake = open_lake(str(lake_dir))
    kept = lake.read_manifest("raw", "daily_quotes", first)

    emulator.reset_stats()
    proc = run_cli(args, v2_env(emulator), tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the complete day is not requested again, and the output says so; everything else is fetched
    assert f"daily_quotes {first}: skipped, already complete in the lake ({kept.rows} rows" in proc.stdout
    assert "--force refetches" in proc.stdout
    assert f"daily_quotes {last}: wrote" in proc.stdout and f"statements {first}: wrote" in proc.stdout
    pages_of_last_day = math.ceil(emulator.market.frame("daily_quotes", last).height / 30)
    assert emulator.stats["requests"].get("/v2/equities/bars/daily", 0) == pages_of_last_day
    assert lake.read_manifest("raw", "daily_quotes", first).written_at == kept.written_at

    emulator.reset_stats()
    forced = run_cli([*args, "--force"], v2_env(emulator), tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "skipped" not in forced.stdout
    assert lake.read_manifest("raw", "daily_quotes", first).written_at != kept.written_at
    assert lake.read_manifest("raw", "daily_quotes", first).same_content(kept)


def test_missing_credentials_are_named(tmp_path):
    proc = run_cli(
        ["fetch", "--date", "2024-02-15", "--lake", str(tmp_path)], {"JQUANTS_API_VERSION": "v1"}, tmp_path
    )
    assert proc.returncode != 0
    assert "JQUANTS_AUTH_EMAIL" in proc.stderr


#: A Wednesday the rule calls a trading day, on which the ``closed_exchange`` emulator's exchange stays shut.
CLOSURE = dt.date(2024, 2, 21)


@pytest.fixture(scope="module")
def closed_exchange():
    cfg = EmulatorConfig.build(
        seed=21,
        codes=40,
        start=dt.date(2024, 1, 1),
        end=dt.date(2024, 3, 29),
        plan="premium",
        page_size=500,
        rate_per_minute=3000,
        closures=(CLOSURE,),
    )
    with running_emulator(cfg) as handle:
        yield handle


@pytest.mark.integration
def test_the_exchange_calendar_makes_a_special_closure_no_trading_day(closed_exchange, tmp_path):
    """The rule calls CLOSURE a trading day; the exchange (its calendar, fetched) does not, and wins:
    nothing is fetched or expected on it, and the feature build's windows step over it."""
    env, lake_dir = v2_env(closed_exchange), str(tmp_path / "lake")
    lake = open_lake(lake_dir)
    # on the rule alone, the closure's empty bars are a failure (not published yet, or broken)
    alone = run_cli(
        ["fetch", "--date", CLOSURE.isoformat(), "--endpoint", "daily_quotes", "--lake", lake_dir],
        env,
        tmp_path,
    )
    assert alone.returncode != 0 and f"no rows for trading day {CLOSURE}" in alone.stderr
    assert lake.list_partitions("raw", "daily_quotes") == []

    # from Thursday the 15th (a trades_spec week published, for the expansion), Monday the 19th on built
    fetched, first, last = dt.date(2024, 2, 15), dt.date(2024, 2, 19), dt.date(2024, 2, 22)
    proc = run_cli(
        ["fetch", "--date", fetched.isoformat(), "--end", last.isoformat(), "--lake", lake_dir], env, tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "2024-02-21 (Wed): the exchange is closed, the rule says open" in out
    assert f"daily_quotes {CLOSURE}: skipped, no rows: {CLOSURE} (Wednesday) is not a JPX trading day" in out
    bars = [fetched, dt.date(2024, 2, 16), first, dt.date(2024, 2, 20), last]
    assert lake.list_partitions("raw", "daily_quotes") == bars
    assert lake.list_partitions("raw", "trading_calendar") == [fetched]  # one snapshot per command
    snapshot = lake.read_partition("raw", "trading_calendar", fetched)
    assert snapshot.equals(closed_exchange.market.trading_calendar())

    span = ["--start", first.isoformat(), "--end", last.isoformat(), "--lake", lake_dir]
    expanded = run_cli(["trades-spec", "expand", *span], env, tmp_path)
    assert expanded.returncode == 0, expanded.stderr
    assert CLOSURE not in lake.list_partitions("interim", "trades_spec_daily")
    built = run_cli(["features", "build", *span], env, tmp_path)
    assert built.returncode == 0, built.stderr
    assert lake.list_partitions("features", "features") == [first, dt.date(2024, 2, 20), last]
    # the same build on the rule alone misses the closure's bars
    lake.delete_partition("raw", "trading_calendar", fetched)
    rule = run_cli(["features", "build", *span], env, tmp_path)
    assert rule.returncode != 0 and CLOSURE.isoformat() in rule.stderr
