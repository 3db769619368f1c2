"""One parser for every DAG's ``dag_run.conf``: each DAG declares a :class:`RunConfSchema` (its keys
and their kinds, which keys go together, which need others, which must be in order) and
:meth:`RunConfSchema.parse` validates a conf against it, phrasing every error the same way
(``dag_run.conf['key']...``) and parsing every date with :func:`gogooku3.calendar.parse_date`.

A malformed conf is the user's to fix: the tasks turn a :class:`RunConfError` into an
``AirflowFailException`` (no retries: the same conf fails the same way).

The schemas of the project's DAGs are at the end of this module: :data:`JQUANTS_DAILY_CONF`
(``{"endpoints": [...]}``), :data:`TRADES_SPEC_WEEKLY_CONF` (``{"start", "end"}``: re-expand that
range without fetching), :data:`FEATURES_DAILY_CONF` (``{"start", "end", "engine"}``) and
:data:`WALK_FORWARD_RETRAIN_CONF` (``{"start", "end", "folds", "size", "horizons", "epochs", "seed"}``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gogooku3.calendar import parse_date
from gogooku3_airflow import JQUANTS_DAILY_DATASETS


class RunConfError(ValueError):
    """``dag_run.conf`` is malformed; the message names the key and the bad value."""


@dataclass(frozen=True)
class ConfField:
    """One key of a conf: a ``date`` (``YYYY-MM-DD``), one ``choice`` of ``choices``, ``names``
    (a non-empty list of distinct ``choices``, duplicates dropped in order), an ``int`` in
    ``lo..hi``, or ``ints`` (a non-empty list of distinct ints in ``lo..hi``, sorted)."""

    kind: Literal["date", "choice", "names", "int", "ints"]
    choices: tuple[str, ...] = ()
    lo: int = 0
    hi: int = 2**31 - 1

    def parse(self, key: str, value: Any) -> Any:
        where = f"dag_run.conf[{key!r}]"
        if self.kind == "int":
            return self._int(where, value)
        if self.kind == "ints":
            if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
                raise RunConfError(
                    f"{where}={value!r}: expected a non-empty list of integers in {self.lo}..{self.hi}"
                )
            return tuple(sorted({self._int(where, v) for v in value}))
        if self.kind == "date":
            try:
                return parse_date(value)
            except ValueError as exc:
                raise RunConfError(f"{where}: {exc}") from None
        if self.kind == "choice":
            if value not in self.choices:
                raise RunConfError(f"{where}={value!r}: expected one of {list(self.choices)}")
            return value
        if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
            raise RunConfError(
                f"{where}={value!r}: expected a non-empty list of names from {list(self.choices)}"
            )
        unknown = [v for v in value if v not in self.choices]
        if unknown:
            raise RunConfError(
                f"{where} has unknown name(s) {unknown}: expected names from {list(self.choices)}"
            )
        return tuple(dict.fromkeys(value))

    def _int(self, where: str, value: Any) -> int:
        # JSON has one number type: 3.0 is accepted as 3, 3.5 and True are not.
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise RunConfError(f"{where}={value!r}: expected an integer in {self.lo}..{self.hi}")
        if not self.lo <= int(value) <= self.hi:
            raise RunConfError(f"{where}={value!r}: expected an integer in {self.lo}..{self.hi}")
        return int(value)


DATE = ConfField("date")


def integer(lo: int, hi: int) -> ConfField:
    return ConfField("int", lo=lo, hi=hi)


def integers(lo: int, hi: int) -> ConfField:
    return ConfField("ints", lo=lo, hi=hi)


def choice(*choices: str) -> ConfField:
    return ConfField("choice", tuple(choices))


def names(choices: Sequence[str]) -> ConfField:
    return ConfField("names", tuple(choices))


@dataclass(frozen=True)
class RunConfSchema:
    """The keys a DAG's conf may have, and how they relate (see the module docstring).

    ``together``: keys given all or none (a date range). ``needs``: a key that is only meaningful
    with others. ``ordered``: ``(lo, hi)`` pairs where lo must not be after hi.
    """

    fields: Mapping[str, ConfField]
    together: tuple[tuple[str, ...], ...] = ()
    needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ordered: tuple[tuple[str, str], ...] = ()

    def parse(self, conf: Mapping[str, Any] | None) -> dict[str, Any]:
        """The conf's values, parsed (only the keys given); raises :class:`RunConfError`."""
        if conf is None:
            return {}
        if not isinstance(conf, Mapping):
            raise RunConfError(f"dag_run.conf must be a JSON object, got {type(conf).__name__}")
        unknown = sorted(set(conf) - set(self.fields))
        if unknown:
            raise RunConfError(
                f"dag_run.conf has unknown key(s) {unknown}: this DAG takes {sorted(self.fields)}"
            )
        for group in self.together:
            given = [k for k in group if k in conf]
            if given and len(given) != len(group):
                missing = [k for k in group if k not in conf]
                raise RunConfError(
                    f"dag_run.conf[{missing[0]!r}] is missing: {' and '.join(map(repr, group))} go together"
                )
        for key, required in self.needs.items():
            if key in conf and not all(k in conf for k in required):
                raise RunConfError(f"dag_run.conf[{key!r}] needs {' and '.join(map(repr, required))} as well")
        values = {key: self.fields[key].parse(key, value) for key, value in conf.items()}
        for lo, hi in self.ordered:
            if lo in values and hi in values and values[lo] > values[hi]:
                raise RunConfError(
                    f"dag_run.conf[{lo!r}] {values[lo]} is after dag_run.conf[{hi!r}] {values[hi]}"
                )
        return values


def date_range(values: Mapping[str, Any]) -> tuple[dt.date, dt.date] | None:
    """``(start, end)`` of a parsed conf, None when it has no range."""
    if "start" not in values:
        return None
    return values["start"], values["end"]


def parse_conf(schema: RunConfSchema, dag_run: Any) -> dict[str, Any]:
    """``dag_run.conf`` parsed against ``schema``; a bad conf fails the task at once
    (``AirflowFailException``, no retries) with the :class:`RunConfError`'s message."""
    try:
        return schema.parse(getattr(dag_run, "conf", None))
    except RunConfError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"RunConfError: {exc}") from None


_RANGE = {"together": (("start", "end"),), "ordered": (("start", "end"),)}

#: jquants_daily: ``{"endpoints": [...]}`` fetches only those datasets (the others skip, saying why).
JQUANTS_DAILY_CONF = RunConfSchema({"endpoints": names(JQUANTS_DAILY_DATASETS)})
#: trades_spec_weekly: ``{"start", "end"}`` re-expands that range from the raw layer, fetching nothing.
TRADES_SPEC_WEEKLY_CONF = RunConfSchema({"start": DATE, "end": DATE}, **_RANGE)
#: features_daily: ``{"start", "end"}`` builds that range; ``engine`` (``cpu``/``gpu``) asks for one.
FEATURES_DAILY_CONF = RunConfSchema(
    {"start": DATE, "end": DATE, "engine": choice("cpu", "gpu")}, needs={"engine": ("start", "end")}, **_RANGE
)
#: walk_forward_retrain: ``{"start", "end"}`` trains on that range instead of the latest features'
#: history; ``folds``, ``size``, ``horizons``, ``epochs`` (the most per fold) and ``seed`` override the
#: defaults.
WALK_FORWARD_RETRAIN_CONF = RunConfSchema(
    {
        "start": DATE,
        "end": DATE,
        "folds": integer(1, 20),
        "size": choice("tiny", "small", "base", "large"),
        "horizons": integers(1, 60),
        "epochs": integer(1, 500),
        "seed": integer(0, 2**31 - 1),
    },
    **_RANGE,
)
