"""The feature bench's per-family rows (``make bench``): every output feature counted once, under
its own family, each family computed for real."""

from __future__ import annotations

import datetime as dt

from gogooku3.bench.features_build import family_rows
from gogooku3.features.catalogue import FEATURES, OUTPUT_FEATURES
from gogooku3.features.prepare import prepare_panel
from gogooku3.features.testing import market_inputs


def test_family_rows_time_every_family_of_the_catalogue_once() -> None:
    mi = market_inputs(12, dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    panel = prepare_panel(mi.daily_quotes, **mi.kwargs())
    rows = family_rows(panel, features_s=1.0)
    families = {
        f.group: sum(1 for g in FEATURES if g.output and g.group == f.group) for f in FEATURES if f.output
    }
    assert {r["case"].split()[1].rstrip(":"): r["features"] for r in rows} == families
    assert sum(r["features"] for r in rows) == len(OUTPUT_FEATURES)
    assert [r["wall_s"] for r in rows] == sorted((r["wall_s"] for r in rows), reverse=True)
    assert all(r["rows"] == panel.height for r in rows)
