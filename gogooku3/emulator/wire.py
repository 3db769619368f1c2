"""Canonical frames -> J-Quants wire records (field names and value formats per protocol).

Wire formats, as J-Quants serves them: dates ``"YYYY-MM-DD"``; prices/volumes/values JSON
numbers (``null`` when there were no trades); ``UpperLimit``/``LowerLimit`` ``"0"``/``"1"``;
statements serve every value as a string (numbers like ``"1234"``/``"41.55"``, ``""`` when
missing); HolidayDivision and all listed_info fields are strings; a field with a "not decided yet"
spelling (:attr:`Field.undecided`: the dividends' amount and payable date) serves null as it.
"""

from __future__ import annotations

import polars as pl

from gogooku3.jquants.datasets import ApiVersion, Dataset


def _number_text(col: str) -> pl.Expr:
    c = pl.col(col)
    return (
        pl.when(c.is_null() | c.is_nan())
        .then(pl.lit(""))
        .when((c == c.round(0)) & (c.abs() < 1e15))
        .then(c.cast(pl.Int64).cast(pl.String))
        .otherwise(c.cast(pl.String))
    )


def _parent_of(expr: pl.Expr) -> str | None:
    """The object name of a placeholder expression of :func:`to_wire`, else None."""
    name = expr.meta.output_name(raise_if_undetermined=False)
    return name[1:] if name and name.startswith("\0") else None


def to_wire(df: pl.DataFrame, ds: Dataset, version: ApiVersion) -> list[dict]:
    """Rows of ``df`` (canonical schema) as the protocol's JSON records."""
    as_text = ds.name == "statements"
    exprs = []
    nested: dict[str, list[pl.Expr]] = {}
    for f in ds.fields:
        c = pl.col(f.name)
        if f.dtype == pl.Date:
            e = c.dt.strftime("%Y-%m-%d")
            if as_text:
                e = e.fill_null("")
        elif f.dtype == pl.Boolean:
            e = (
                pl.when(c.is_null())
                .then(pl.lit(None, pl.String))
                .when(c)
                .then(pl.lit("1"))
                .otherwise(pl.lit("0"))
            )
        elif f.dtype == pl.Float64 and as_text:
            e = _number_text(f.name)
        elif f.dtype == pl.String and as_text:
            e = c.fill_null("")
        else:
            e = c
        if f.undecided is not None:
            # The decided values become text too, as a column has one type ("30", "2024-06-28").
            text = _number_text(f.name) if f.dtype == pl.Float64 else e.cast(pl.String)
            e = pl.when(c.is_null()).then(pl.lit(f.undecided)).otherwise(text)
        parent = f.parent_name(version)
        if parent is None:
            exprs.append(e.alias(f.source_name(version)))
        else:
            if parent not in nested:
                nested[parent] = []
                exprs.append(pl.lit(parent).alias(f"\0{parent}"))  # its place among the fields
            nested[parent].append(e.alias(f.source_name(version)))
    exprs = [pl.struct(nested[_parent_of(e)]).alias(_parent_of(e)) if _parent_of(e) else e for e in exprs]
    return df.select(exprs).to_dicts()
