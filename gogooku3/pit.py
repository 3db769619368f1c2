"""Point-in-time rules of the market-wide datasets: when each value is published and usable.

The convention is the one statements and trades_spec follow (:mod:`gogooku3.features.prepare`,
:mod:`gogooku3.flows`): the feature row of trading day D holds what is known at D's close
(15:00 JST). A value published after the close of day P is usable from the next trading day.

=======================  ======================================  ==========================================
dataset                  published (J-Quants, JST)               usable from (first feature row)
=======================  ======================================  ==========================================
indices                  ~16:30 on D                             D: a closing level of D's prices, used like
                                                                 TOPIX (``mkt_close``) on D
short_selling            ~16:30 on D                             the next trading day after D
weekly_margin_interest   ~16:30 on the 2nd trading day after     the next trading day after publication,
                         the record date R (usually Tuesday)     i.e. the 3rd trading day after R
earnings_calendar        ~19:00 on PublishedDate                 the next trading day after PublishedDate
dividends                with the company's disclosure, at       like a statement: the trading day after
                         AnnouncementTime on AnnouncementDate    the effective disclosure day (the
                                                                 announcement day before 15:00, else the
                                                                 next trading day)
futures, index_option    after the day session (~18:00) of D     the next trading day after D (the day
                                                                 session closes after the cash market)
daily_margin_interest    in the evening of PublishedDate P (the  the next trading day after P
                         balances of ApplicationDate, before P)
short_selling_positions  in the evening of DisclosedDate P (a    the next trading day after P
                         report of CalculatedDate, ~2 days
                         earlier)
=======================  ======================================  ==========================================

A revision (a later record for the same key; for dividends a later notice with the same
CAReferenceNumber, a deletion included) applies only from its own usable day; the earlier value
stays in use until then. An ex-date or an earnings date is information from when it was announced,
not from the event. The functions here are the only place these rules are written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from gogooku3.calendar import is_trading_day, next_trading_day, on_or_after, previous_trading_day

#: Trading days from a weekly margin record date to its publication day.
MARGIN_PUBLICATION_LAG = 2


def is_week_end(day: dt.date) -> bool:
    """``day`` is the last trading day of its ISO week (a weekly margin record date)."""
    if not is_trading_day(day):
        return False
    return next_trading_day(day).isocalendar()[:2] != day.isocalendar()[:2]


def margin_published_on(record_date: dt.date) -> dt.date:
    """The trading day weekly margin balances of ``record_date`` are published (16:30 JST)."""
    day = on_or_after(record_date)
    for _ in range(MARGIN_PUBLICATION_LAG):
        day = next_trading_day(day)
    return day


def margin_record_published_on(day: dt.date) -> dt.date | None:
    """The record date whose weekly margin balances are published on ``day``, or None."""
    if not is_trading_day(day):
        return None
    record = day
    for _ in range(MARGIN_PUBLICATION_LAG):
        record = previous_trading_day(record)
    return record if is_week_end(record) else None


#: Datasets partitioned by a date other than their publication day: dataset -> (partition date ->
#: its publication day, trading day -> the partition published that day or None). The fetch's
#: "final after" moment reads the first direction, the daily run's choice of partition the second.
PUBLICATION_DAYS: dict[str, tuple[Callable[[dt.date], dt.date], Callable[[dt.date], dt.date | None]]] = {
    "weekly_margin_interest": (margin_published_on, margin_record_published_on),
}


def published_on(dataset: str, partition: dt.date) -> dt.date:
    """The day partition ``partition`` of ``dataset`` is published: the partition date itself unless
    :data:`PUBLICATION_DAYS` says otherwise."""
    return PUBLICATION_DAYS[dataset][0](partition) if dataset in PUBLICATION_DAYS else partition


def partition_published_on(dataset: str, day: dt.date) -> dt.date | None:
    """The partition of ``dataset`` published on trading day ``day``: ``day`` itself unless
    :data:`PUBLICATION_DAYS` says otherwise (None: nothing of it is published that day)."""
    return PUBLICATION_DAYS[dataset][1](day) if dataset in PUBLICATION_DAYS else day


def margin_usable_from(record_date: dt.date) -> dt.date:
    """First feature row that may use the weekly margin balances of ``record_date``."""
    return next_trading_day(margin_published_on(record_date))


def short_selling_usable_from(day: dt.date) -> dt.date:
    """First feature row that may use the sector short-selling figures of trading day ``day``."""
    return next_trading_day(day)


def earnings_calendar_usable_from(published: dt.date) -> dt.date:
    """First feature row that may use an earnings date announced on ``published`` (19:00 JST)."""
    return next_trading_day(published)


def dividends_usable_from(announced: dt.date, time_text: str | None) -> dt.date:
    """First feature row that may use a dividend notice announced on ``announced`` at ``time_text``
    (HH:MM): the statements' rule, :func:`gogooku3.features.prepare.usable_from` (T+1 after the
    effective disclosure day, 15:00 cutoff)."""
    from gogooku3.features.prepare import usable_from  # the features package imports this module

    return usable_from(announced, time_text)


def derivatives_usable_from(day: dt.date) -> dt.date:
    """First feature row that may use the futures or option bars of trading date ``day`` (its night
    session ended that morning, but the day's bars are published after the day session)."""
    return next_trading_day(day)


def evening_publication_usable_from(published: dt.date) -> dt.date:
    """First feature row that may use a margin alert or a short position report published in the
    evening of ``published``: the next trading day."""
    return next_trading_day(published)
