"""The benchmark runner and the backfill benchmark's smoke test (counts only; no timing asserts)."""

from __future__ import annotations

import pytest

from gogooku3.bench import discover, markdown_table


def test_markdown_table_lists_every_column_in_first_seen_order():
    table = markdown_table([{"a": 1, "b": 2.5}, {"a": 1234567, "c": "x|y"}])
    lines = table.splitlines()
    assert lines[0] == "| a | b | c |"
    assert lines[2] == "| 1 | 2.500 |  |"
    assert lines[3] == "| 1,234,567 |  | x\\|y |"


def test_discover_finds_the_backfill_benchmark():
    assert callable(discover()["jquants_backfill"])


@pytest.mark.integration
def test_quick_backfill_fetches_the_truth_with_the_minimum_requests():
    from gogooku3.bench import jquants_backfill

    ours, official = jquants_backfill.run(quick=True)
    assert ours["rows == truth"] is True
    assert ours["requests"] == ours["min requests"]
    assert ours["429s"] == 0
    # The official jquants-api-client is installed here (constraints.txt) and talks to the emulator
    # over http:// once its base URL is repointed, so it must run, not merely be reported: the same
    # rows, one request per calendar day (it also asks for weekends and holidays), and no 429s (the
    # quick month's 50 requests are far below Premium's 500 a minute).
    assert official["client"].startswith("jquantsapi.ClientV2")
    assert official["note"] == "ok", official["note"]
    assert official["rows == truth"] is True
    assert official["rows"] == ours["rows"]
    assert official["requests"] == official["min requests"]
    assert official["429s"] == 0
