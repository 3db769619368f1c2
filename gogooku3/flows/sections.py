"""trades_spec Sections, stock markets, and the 2022-04-04 TSE market restructuring.

J-Quants reports weekly investor-type flows per market *Section*. On 2022-04-04 the Tokyo Stock
Exchange replaced its old segments with new ones; listed_info ``MarketCode`` changed with them.

Old Section -> new Section (the mapping this project uses, for successors and joined history):

=================  ===============  ==========================================================
Old Section        New Section      Why
=================  ===============  ==========================================================
``TSE1st``         ``TSEPrime``     The large-cap first section became (mostly) Prime.
``TSE2nd``         ``TSEStandard``  The second section became Standard.
``TSEMothers``     ``TSEGrowth``    The growth market became Growth.
``TSEJASDAQ``      ``TSEStandard``  JASDAQ Standard (most JASDAQ issues and trading value)
                                    went to Standard; JASDAQ Growth (a few dozen issues) went
                                    to Growth. The Section is one series, so it maps to
                                    Standard; stocks are routed by their own market code.
``TokyoNagoya``    ``TokyoNagoya``  Unchanged (all Tokyo + Nagoya markets together).
=================  ===============  ==========================================================

Three tables follow from it:

* :data:`SUCCESSORS`: an old Section *retires* (has no more daily rows) from the first trading day
  on which a week of its successor is usable. Until then it is carried forward like any Section.
* :data:`PREDECESSORS`: the new Section's z-score history is joined to its predecessor's weeks that
  ended before :data:`RESTRUCTURING_DATE` (TSEPrime <- TSE1st, TSEStandard <- TSE2nd, TSEGrowth <-
  TSEMothers). TSEJASDAQ is not part of any joined history: Standard already continues TSE2nd, and
  one series cannot continue two.
* :data:`MARKET_SECTIONS`: a stock's listed_info ``MarketCode`` on a day -> (primary Section,
  fallback Section). The fallback is the same market on the other side of the restructuring; it is
  used on the few days where the primary has no row (a new-market stock between 2022-04-04 and the
  first new-Section week becoming usable, or a stale old market code after its Section retired),
  so a stock's flow features run on without a gap. JASDAQ Growth (0107) falls forward to Growth,
  JASDAQ Standard (0106) to Standard.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from gogooku3.jquants.datasets import MARKET_CODES

#: First trading day of the new market segments.
RESTRUCTURING_DATE = dt.date(2022, 4, 4)

SUCCESSORS: dict[str, str] = {
    "TSE1st": "TSEPrime",
    "TSE2nd": "TSEStandard",
    "TSEMothers": "TSEGrowth",
    "TSEJASDAQ": "TSEStandard",
}

PREDECESSORS: dict[str, str] = {
    "TSEPrime": "TSE1st",
    "TSEStandard": "TSE2nd",
    "TSEGrowth": "TSEMothers",
}

#: MarketCode -> (primary Section, fallback Section). Codes absent here (0105 TOKYO PRO MARKET,
#: 0109 other) have no investor-type Section: their stocks get null flow features.
MARKET_SECTIONS: dict[str, tuple[str, str]] = {
    "0101": ("TSE1st", "TSEPrime"),
    "0102": ("TSE2nd", "TSEStandard"),
    "0104": ("TSEMothers", "TSEGrowth"),
    "0106": ("TSEJASDAQ", "TSEStandard"),
    "0107": ("TSEJASDAQ", "TSEGrowth"),
    "0111": ("TSEPrime", "TSE1st"),
    "0112": ("TSEStandard", "TSE2nd"),
    "0113": ("TSEGrowth", "TSEMothers"),
}


@dataclass(frozen=True)
class SectionLineage:
    """How Sections succeed each other; the default is the 2022 restructuring.

    ``successors``: old -> new; the old Section has no rows from the first day a week of the new
    one is usable. ``predecessors``: new -> old; weeks of the old Section that ended before
    ``cutoff`` join the new Section's z-score history. Pass ``SectionLineage.none()`` to treat
    every Section on its own.
    """

    successors: dict[str, str] = field(default_factory=lambda: dict(SUCCESSORS))
    predecessors: dict[str, str] = field(default_factory=lambda: dict(PREDECESSORS))
    cutoff: dt.date = RESTRUCTURING_DATE

    @classmethod
    def none(cls) -> SectionLineage:
        return cls(successors={}, predecessors={})


def _check_market_code(code: str) -> None:
    if code not in MARKET_CODES:
        raise ValueError(f"unknown MarketCode {code!r}: expected one of {', '.join(sorted(MARKET_CODES))}")


def section_for_market_code(market_code: str) -> str | None:
    """The trades_spec Section of a listed_info ``MarketCode`` (None for markets without one).

    Raises ``ValueError`` naming the code when it is not a J-Quants market code.
    """
    _check_market_code(market_code)
    pair = MARKET_SECTIONS.get(market_code)
    return pair[0] if pair else None


def fallback_section_for_market_code(market_code: str) -> str | None:
    """The same market's Section on the other side of the 2022 restructuring (see module doc)."""
    _check_market_code(market_code)
    pair = MARKET_SECTIONS.get(market_code)
    return pair[1] if pair else None


def section_expr(market_code: pl.Expr, *, fallback: bool = False) -> pl.Expr:
    """Polars expression mapping a MarketCode column to its primary (or fallback) Section."""
    index = 1 if fallback else 0
    mapping = {code: pair[index] for code, pair in MARKET_SECTIONS.items()}
    return market_code.replace_strict(mapping, default=None, return_dtype=pl.String)
