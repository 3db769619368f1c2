"""Wire records -> the canonical lake frame of a dataset (pure; no I/O).

:func:`to_frame` is the one place where J-Quants JSON becomes a typed Polars frame:

* field names are mapped to the canonical (long, v1) names with :meth:`Dataset.to_canonical_name`,
  so v1 and v2 answers give identical frames;
* values are cast to the declared dtypes. The wire is loose: dates arrive as ``YYYY-MM-DD`` or
  ``YYYYMMDD``; numbers as JSON numbers or strings, with ``""`` meaning "no value"; limit flags
  as ``"0"``/``"1"``; codes as 4- or 5-character strings (a 4-digit code gets the trailing ``0``
  J-Quants uses for common stock, so ``"1301"`` and ``"13010"`` are the same issue);
* ``null`` stays null (a day without trades has null OHLC, and that is data, not an error), and so
  does a field's "not decided yet" spelling (:attr:`Field.undecided`, the dividends' ``"-"``);
* a field inside an object on the wire (:attr:`Field.parent`) becomes a flat column;
* columns come in :attr:`Dataset.columns` order, then unknown extra fields (sorted, under the name
  they were received with) so an API addition is kept rather than silently dropped;
* a required field missing from a record raises :class:`SchemaError` naming the dataset, the field
  and the protocol version. A value that cannot be read as its dtype raises the same error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from gogooku3.jquants.datasets import ApiVersion, Dataset, Field
from gogooku3.jquants.errors import SchemaError

_NUMBER = (int, float)


def empty_frame(dataset: Dataset) -> pl.DataFrame:
    """A zero-row frame with the dataset's canonical schema."""
    return pl.DataFrame(schema=dataset.schema)


def to_frame(dataset: Dataset, version: ApiVersion, records: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Build the canonical frame for ``records`` as served by protocol ``version``."""
    if not records:
        return empty_frame(dataset)
    by_source = dataset.field_by_source(version)
    _check_required(dataset, version, records, by_source)

    columns: list[pl.Series] = []
    for f in dataset.fields:
        src = f.source_name(version)
        parent = f.parent_name(version)
        if parent is None:
            values = [r.get(src) for r in records]
        else:  # a field inside an object (e.g. the publish reasons): kept flat in the lake
            values = [(r.get(parent) or {}).get(src) for r in records]
        if f.undecided is not None:
            values = [None if v == f.undecided else v for v in values]
        columns.append(_cast(dataset, version, f, values))

    canonical = set(dataset.columns)
    parents = {p for f in dataset.fields if (p := f.parent_name(version)) is not None}
    extras = sorted({k for r in records for k in r} - set(by_source) - parents)
    for name in extras:
        values = [r.get(name) for r in records]
        # An unknown field that happens to share a canonical name (e.g. a v2 answer carrying a long
        # v1 name) must not shadow the declared column; keep it, marked with the protocol.
        out_name = f"{name}_{version}" if name in canonical else name
        columns.append(_infer(out_name, values))
    return pl.DataFrame(columns)


def _check_required(
    dataset: Dataset, version: ApiVersion, records: Iterable[dict[str, Any]], by_source: dict[str, Field]
) -> None:
    required = {src for src, f in by_source.items() if f.required}
    for i, record in enumerate(records):
        missing = required - record.keys()
        if missing:
            src = sorted(missing)[0]
            canonical = by_source[src].name
            alias = f" (canonical {canonical!r})" if canonical != src else ""
            raise SchemaError(dataset.name, src, version, f"is required but missing{alias} in record {i}")


def _blank_to_none(values: list[Any]) -> list[Any]:
    return [None if v is None or (isinstance(v, str) and v.strip() == "") else v for v in values]


def _cast(dataset: Dataset, version: ApiVersion, f: Field, values: list[Any]) -> pl.Series:
    dtype = f.dtype
    src = f.source_name(version)

    def bad(series: pl.Series, target: str) -> SchemaError:
        sample = [v for v in values if v not in (None, "")][:3]
        return SchemaError(dataset.name, src, version, f"has values that are not {target}: {sample!r}")

    if dtype == pl.Date:
        texts = pl.Series(f.name, [None if v is None else str(v) for v in _blank_to_none(values)], pl.String)
        parsed = texts.str.replace_all("-", "", literal=True).str.strptime(pl.Date, "%Y%m%d", strict=False)
        if parsed.null_count() != texts.null_count():
            raise bad(texts, "dates (YYYY-MM-DD or YYYYMMDD)")
        return parsed
    if dtype == pl.Float64:
        cleaned = _blank_to_none(values)
        if all(v is None or (isinstance(v, _NUMBER) and not isinstance(v, bool)) for v in cleaned):
            return pl.Series(f.name, cleaned, pl.Float64, strict=False)
        texts = pl.Series(f.name, [None if v is None else str(v) for v in cleaned], pl.String)
        parsed = texts.str.strip_chars().cast(pl.Float64, strict=False)
        if parsed.null_count() != texts.null_count():
            raise bad(texts, "numbers")
        return parsed
    if dtype == pl.Boolean:
        out: list[bool | None] = []
        for v in _blank_to_none(values):
            if v is None:
                out.append(None)
            elif v in (True, 1, "1", "true", "True"):
                out.append(True)
            elif v in (False, 0, "0", "false", "False"):
                out.append(False)
            else:
                raise bad(pl.Series(values), "flags (0/1)")
        return pl.Series(f.name, out, pl.Boolean)
    if dtype == pl.String:
        if f.name == "Code" and dataset.code_is_issue:
            return pl.Series(f.name, [_code(v) for v in values], pl.String)
        return pl.Series(f.name, [None if v is None else str(v) for v in values], pl.String)
    # A dtype this module does not special-case: let Polars cast strictly and name the field on failure.
    try:
        return pl.Series(f.name, values).cast(dtype, strict=True)
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        raise bad(pl.Series(values, strict=False), str(dtype)) from None


def _code(value: Any) -> str | None:
    """Issue code as the 5-character J-Quants code (``1301`` -> ``13010``)."""
    if value is None:
        return None
    text = str(value).strip()
    if text == "":
        return None
    return text + "0" if len(text) == 4 else text


def _infer(name: str, values: list[Any]) -> pl.Series:
    """An unknown field: let Polars infer its type; fall back to strings for mixed values."""
    try:
        return pl.Series(name, values, strict=True)
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
        return pl.Series(name, [None if v is None else str(v) for v in values], pl.String)
