"""Quality gates: run a GX 1.x expectation suite on a Polars frame, and the lake shell around it.

* :func:`run_gate` (functional core, in memory): converts the frame to pandas (nullable dtypes, so
  Int8 stays int8 and nulls stay nulls), validates it with a suite from ``include/expectations/``
  in an ephemeral GX context (through Checkpoints, one per distinct row condition, on the rows it
  selects: see :func:`_validate`), renders Data Docs into a temporary directory, and returns a
  :class:`GateResult` (pass/fail, statistics, the failing expectations with their counts, the
  validation result JSON, the Data Docs HTML as bytes).
* :func:`gate_partition` (imperative shell): reads one lake partition, runs the gate, saves the
  validation JSON and Data Docs next to the data as artifacts, marks the partition latest good only
  when it passed, and raises :class:`QualityGateFailed` otherwise.

Great Expectations is imported inside functions only: importing this module (from a DAG file, say)
costs nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from gogooku3.quality.suites import ROW_COUNT_TOLERANCE, SUITES_DIR, load_suite
from gogooku3.redaction import library_logger

if TYPE_CHECKING:
    from gogooku3.lake import Lake, LatestGood, Manifest

log = library_logger(__name__)

#: Column added to the validated frame when ``run_gate`` gets a ``mature_mask``.
MATURE_COLUMN = "__gx_mature__"
#: Data Docs files kept (the static fonts and images GX ships are ~4 MB per site: left out).
_DOCS_SUFFIXES = (".html", ".css")
#: BASIC: counts, observed values and a few unexpected values, all a failure line names. SUMMARY
#: adds value counts and row indexes of the unexpected values, which nothing here reads, and took
#: the gate of a trades_spec_daily partition from 4.9 s to 8.5 s (its 242 expectations, measured).
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 5}
#: Expectations on an aggregate of the rows, left out for an empty frame (see :func:`run_gate`).
_AGGREGATES_OF_ROWS = frozenset({"expect_column_max_to_be_between"})


class QualityGateFailed(Exception):
    """A partition failed its quality gate; ``str(e)`` names the failing expectations and counts."""

    def __init__(self, result: GateResult, where: str = "") -> None:
        self.result = result
        self.where = where
        head = f"quality gate {result.suite!r} failed" + (f" for {where}" if where else "")
        super().__init__("\n".join([head, *result.summary_lines()]))


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not hold, with what was observed."""

    expectation_type: str
    columns: tuple[str, ...]
    description: str
    observed: Any = None
    unexpected_count: int | None = None
    element_count: int | None = None
    unexpected_percent: float | None = None

    def line(self) -> str:
        cols = ",".join(self.columns)
        return (
            f"{self.expectation_type}({cols}): {self.description}"
            if cols
            else (f"{self.expectation_type}: {self.description}")
        )


@dataclass
class GateResult:
    """The outcome of one gate run."""

    passed: bool
    suite: str
    statistics: dict[str, Any]
    failures: list[FailedExpectation]
    result_json: dict[str, Any]
    data_docs_html: dict[str, bytes] = field(default_factory=dict, repr=False)
    parameters: dict[str, Any] = field(default_factory=dict)

    def summary_lines(self, limit: int = 20) -> list[str]:
        """Short lines for Slack: the verdict, then one line per failing expectation with its counts."""
        s = self.statistics
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"{self.suite}: {verdict} ({s.get('successful_expectations', 0)}/"
            f"{s.get('evaluated_expectations', 0)} expectations met)"
        ]
        lines += [f"- {f.line()}" for f in self.failures[:limit]]
        if len(self.failures) > limit:
            lines.append(f"- ... and {len(self.failures) - limit} more failing expectations")
        return lines

    def validation_json_bytes(self) -> bytes:
        return (json.dumps(self.result_json, indent=1, sort_keys=True, default=str) + "\n").encode()


# ------------------------------------------------------------------------------ conversion


def to_pandas(df: pl.DataFrame) -> Any:
    """Polars -> pandas with dtypes GX can check precisely (see :data:`gogooku3.quality.suites.GX_TYPES`).

    Integers, floats and booleans become pandas nullable dtypes (``Int8`` keeps ``.type`` int8 even
    with nulls), strings ``StringDtype``, ``Date`` ``datetime64[ms]``; any other dtype (a ``Datetime``
    where a ``Date`` belongs, a list ...) becomes a pyarrow-backed column, whose type never matches
    a suite's expected type, so a wrong dtype fails the type expectation instead of being coerced.
    """
    import pandas as pd

    nullable = {
        pl.Int8: pd.Int8Dtype(),
        pl.Int16: pd.Int16Dtype(),
        pl.Int32: pd.Int32Dtype(),
        pl.Int64: pd.Int64Dtype(),
        pl.UInt8: pd.UInt8Dtype(),
        pl.UInt16: pd.UInt16Dtype(),
        pl.UInt32: pd.UInt32Dtype(),
        pl.UInt64: pd.UInt64Dtype(),
        pl.Float32: pd.Float32Dtype(),
        pl.Float64: pd.Float64Dtype(),
        pl.Boolean: pd.BooleanDtype(),
        pl.String: pd.StringDtype(),
    }
    data = {}
    for name, dtype in df.schema.items():
        s = df.get_column(name)
        base = dtype.base_type()
        if base in nullable:
            data[name] = pd.array(s.to_list(), dtype=nullable[base])
        elif base == pl.Date:
            data[name] = pd.Series(s.cast(pl.Datetime("ms")).to_numpy(), dtype="datetime64[ms]")
        else:
            data[name] = pd.Series(s.to_arrow(), dtype=pd.ArrowDtype(s.to_arrow().type))
    return pd.DataFrame(data, index=pd.RangeIndex(df.height))


# ------------------------------------------------------------------------------ parameters


def default_expected_dates(df: pl.DataFrame, date_column: str = "Date") -> list[dt.date]:
    """The JPX trading days from the frame's first to its last date (empty frame: none)."""
    from gogooku3.calendar import trading_days

    if date_column not in df.columns or df.height == 0:
        return []
    col = df.get_column(date_column)
    if col.dtype != pl.Date or col.null_count() == df.height:
        return []
    return list(trading_days(col.min(), col.max()))


def row_bounds(expected_rows: int | None, default_min: int, tolerance: float = ROW_COUNT_TOLERANCE) -> tuple:
    """``(min_rows, max_rows)``: ``expected_rows`` +- ``tolerance`` (rounded outward), else ``(default_min, None)``."""
    if expected_rows is None:
        return default_min, None
    if expected_rows < 0:
        raise ValueError(f"expected_rows must be >= 0, got {expected_rows}")
    return math.floor(expected_rows * (1 - tolerance)), math.ceil(expected_rows * (1 + tolerance))


def _iso(d: dt.date | str) -> str:
    if isinstance(d, dt.datetime):
        raise TypeError(f"logical_date must be a date (JST), got datetime {d!r}")
    return d.isoformat() if isinstance(d, dt.date) else dt.date.fromisoformat(d).isoformat()


def _midnight(d: dt.date | str) -> dt.datetime:
    day = dt.date.fromisoformat(_iso(d))
    return dt.datetime(day.year, day.month, day.day)


# ------------------------------------------------------------------------------ the gate


def run_gate(
    suite_name: str,
    df: pl.DataFrame,
    *,
    logical_date: dt.date | str,
    expected_rows: int | None = None,
    mature_mask: pl.Series | pl.Expr | None = None,
    expected_dates: Sequence[dt.date] | None = None,
    row_tolerance: float = ROW_COUNT_TOLERANCE,
    build_docs: bool = True,
    suites_dir: Path = SUITES_DIR,
) -> GateResult:
    """Validate ``df`` against the suite ``include/expectations/<suite_name>.json``.

    Suite parameters injected here: ``logical_date`` (no row after it), ``expected_dates`` (default:
    the trading days the frame's date column spans: the suite's ``date_column``, else ``Date``),
    ``min_rows``/``max_rows`` (``expected_rows`` +- ``row_tolerance``; without ``expected_rows``
    only the suite's ``default_min_rows``). ``mature_mask`` (a boolean
    Series or expression over ``df``) excludes the rows where it is false from every coverage
    (not-null) expectation, on top of the maturity conditions the suite already carries.
    ``build_docs=False`` skips rendering Data Docs (faster; ``data_docs_html`` is then empty).
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"run_gate({suite_name}) needs a polars DataFrame, got {type(df).__name__}")
    suite_dict = load_suite(suite_name, suites_dir)
    if df.height == 0:
        # A column's max of no rows is undefined (GX: NaT, a failure); "nothing dated after the
        # logical date" holds for an empty partition (a week's margin on another day, say).
        kept = [e for e in suite_dict["expectations"] if e["type"] not in _AGGREGATES_OF_ROWS]
        suite_dict = {**suite_dict, "expectations": kept}
    meta = suite_dict.get("meta", {}).get("gogooku3", {})
    min_rows, max_rows = row_bounds(expected_rows, int(meta.get("default_min_rows", 0)), row_tolerance)
    date_column = meta.get("date_column", "Date")
    dates = default_expected_dates(df, date_column) if expected_dates is None else list(expected_dates)
    # Date columns reach GX as datetime64, so date parameters are passed as midnight datetimes.
    params = {
        "logical_date": _midnight(logical_date),
        "expected_dates": sorted({_midnight(d) for d in dates}),
        "min_rows": min_rows,
        "max_rows": max_rows,
    }
    frame = df
    if mature_mask is not None:
        mask = (
            frame.select(mature_mask.alias(MATURE_COLUMN))
            if isinstance(mature_mask, pl.Expr)
            else (pl.DataFrame({MATURE_COLUMN: mature_mask}))
        )
        if mask.height != frame.height:
            raise ValueError(f"mature_mask has {mask.height} rows, the frame {frame.height}")
        frame = frame.with_columns(mask.get_column(MATURE_COLUMN).cast(pl.Boolean).fill_null(False))
        suite_dict = _with_mature_mask(suite_dict)
    result_json, docs = _validate(suite_dict, frame, params, build_docs=build_docs)
    failures = [_failure(r) for r in result_json.get("results", []) if not r.get("success")]
    stats = dict(result_json.get("statistics", {}))
    passed = bool(result_json.get("success")) and not failures
    res = GateResult(passed, suite_name, stats, failures, result_json, docs, params)
    log.info("quality gate %s: %s", suite_name, "; ".join(res.summary_lines(limit=10)))
    return res


def _with_mature_mask(suite: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``suite`` whose coverage checks also require ``MATURE_COLUMN`` and whose column set allows it."""
    suite = json.loads(json.dumps(suite))
    extra = {"type": "comparison", "column": {"name": MATURE_COLUMN}, "operator": "==", "parameter": True}
    for e in suite["expectations"]:
        kw = e["kwargs"]
        if (
            e["type"] == "expect_column_values_to_not_be_null"
            and e.get("meta", {}).get("why") != "key column"
        ):
            cond = kw.get("row_condition")
            if cond is None:
                kw["row_condition"] = extra
            elif cond.get("type") == "and":
                cond["conditions"].append(extra)
            else:
                kw["row_condition"] = {"type": "and", "conditions": [cond, extra]}
        elif e["type"] == "expect_table_columns_to_match_set":
            kw["column_set"] = [*kw["column_set"], MATURE_COLUMN]
    return suite


#: Row-condition operators evaluated here (the rest of GX's forms are left to GX itself): the Polars
#: comparison, and the word that stands for the operator in a part's name.
_OPERATORS: dict[str, tuple[Any, str]] = {
    "==": (lambda c, v: c == v, "eq"),
    "!=": (lambda c, v: c != v, "ne"),
    "<": (lambda c, v: c < v, "lt"),
    "<=": (lambda c, v: c <= v, "le"),
    ">": (lambda c, v: c > v, "gt"),
    ">=": (lambda c, v: c >= v, "ge"),
    "IN": (lambda c, v: c.is_in(list(v)), "in"),
    "NOT_IN": (lambda c, v: ~c.is_in(list(v)), "not_in"),
}


def condition_filter(condition: dict[str, Any]) -> pl.Expr | None:
    """The Polars filter of a serialised GX row condition (comparisons joined by and/or), or
    ``None`` for a form it does not cover. A null compares as not matching, as in GX's pandas query."""
    kind = condition.get("type")
    if kind == "comparison" and condition.get("operator") in _OPERATORS:
        compare, _ = _OPERATORS[condition["operator"]]
        return compare(pl.col(condition["column"]["name"]), condition["parameter"]).fill_null(False)
    if kind in ("and", "or"):
        parts = [condition_filter(c) for c in condition.get("conditions", [])]
        if not parts or any(p is None for p in parts):
            return None
        return pl.all_horizontal(parts) if kind == "and" else pl.any_horizontal(parts)
    return None


@dataclass
class _Part:
    """Expectations sharing one row condition, validated on the rows (and columns) it selects."""

    condition: dict[str, Any] | None
    label: str
    #: (position in the suite, expectation)
    expectations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def _split_by_condition(expectations: list[dict[str, Any]], frame: pl.DataFrame) -> list[_Part]:
    """Part 0: the expectations without a row condition, and those whose condition Polars cannot
    evaluate on this frame (another form, a drifted column or dtype), which GX then applies itself
    and reports on as it would; then one part per distinct row condition, in suite order."""
    parts: dict[str, _Part] = {"": _Part(None, "")}
    usable: dict[str, bool] = {}
    for i, e in enumerate(expectations):
        cond = e.get("kwargs", {}).get("row_condition")
        key = "" if cond is None else json.dumps(cond, sort_keys=True)
        if key and key not in usable:
            usable[key] = _evaluates(cond, frame)
        if key and not usable[key]:
            key = ""
        if key not in parts:
            parts[key] = _Part(cond, _condition_label(cond))
        parts[key].expectations.append((i, e))
    return [p for p in parts.values() if p.expectations]


def _evaluates(condition: dict[str, Any], frame: pl.DataFrame) -> bool:
    where = condition_filter(condition)
    if where is None:
        return False
    try:
        frame.head(0).select(where)
    except pl.exceptions.PolarsError:
        return False
    return True


def _part_name(suite: str, condition: dict[str, Any]) -> str:
    """A part's suite name, which names its Data Docs page (a lake artifact; GX makes a dot a
    folder): ``features__where__is_mature_60d_eq_1`` for the rows where ``is_mature_60d == 1``."""
    label = _condition_label(condition)
    for op in sorted(_OPERATORS, key=len, reverse=True):
        label = label.replace(f" {op} ", f"_{_OPERATORS[op][1]}_")
    return f"{suite}__where__" + re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")


def _condition_label(condition: dict[str, Any]) -> str:
    kind = condition.get("type")
    if kind == "comparison":
        return f"{condition['column']['name']} {condition['operator']} {condition['parameter']!r}"
    joined = f" {kind} ".join(_condition_label(c) for c in condition.get("conditions", []))
    return f"({joined})"


def _part_frame(frame: pl.DataFrame, part: _Part) -> pl.DataFrame:
    """The whole frame for part 0; else the rows its condition selects, narrowed to the columns its
    expectations read (GX's own filtering copies every column of the frame for every metric)."""
    if part.condition is None:
        return frame
    rows = frame.filter(condition_filter(part.condition))
    if any(not _columns(e.get("kwargs", {})) for _, e in part.expectations):
        return rows  # a table-level expectation (row count, column set) sees every column
    read = {c for _, e in part.expectations for c in _columns(e.get("kwargs", {}))}
    # A column the frame lacks stays missing: GX then reports it as on the whole frame.
    return rows.select([c for c in frame.columns if c in read])


def _validate(
    suite_dict: dict, frame: pl.DataFrame, params: dict, *, build_docs: bool
) -> tuple[dict, dict[str, bytes]]:
    """Run the suite through Checkpoints in an ephemeral GX context; returns (result JSON, docs).

    The expectations are validated in parts, one per distinct row condition: a part's rows are
    selected here, in Polars, and its expectations run without the condition on them. That is the
    same check (an expectation's counts are over the rows its condition selects either way), at a
    fraction of the cost: GX's pandas engine filters the whole frame again for every metric of every
    conditional expectation. The parts' results are merged back into one validation result in suite
    order, each expectation with its row condition, so the JSON reads as one run of the suite.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GX's deprecation chatter (condition parsers, pandas)
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        with tempfile.TemporaryDirectory(prefix="gx_docs_") as site_dir:
            # In-memory stores; the only Data Docs site is our temporary directory (GX's default
            # ephemeral context would create, and leave behind, a temp site of its own).
            sites = {}
            if build_docs:
                sites["gate"] = {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": site_dir,
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                }
            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                data_docs_sites=sites,
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            )
            ctx = gx.get_context(mode="ephemeral", project_config=config)
            source = ctx.data_sources.add_pandas("gogooku3")
            name = suite_dict["name"]
            runs = []
            for n, part in enumerate(_split_by_condition(suite_dict["expectations"], frame)):
                part_name = name if part.condition is None else _part_name(name, part.condition)
                expectations = []
                for i, e in part.expectations:
                    e = json.loads(json.dumps(e))
                    if part.condition is not None:
                        del e["kwargs"]["row_condition"]
                        e["meta"] = {**e.get("meta", {}), "row_condition": part.label}
                    e["meta"] = {**e.get("meta", {}), _ORDER: i}
                    expectations.append(e)
                suite = ctx.suites.add(
                    gx.ExpectationSuite(
                        name=part_name, expectations=expectations, meta=suite_dict.get("meta")
                    )
                )
                batch_def = source.add_dataframe_asset(f"part_{n}").add_batch_definition_whole_dataframe(
                    "rows"
                )
                vd = ctx.validation_definitions.add(
                    gx.ValidationDefinition(name=f"{part_name} gate", data=batch_def, suite=suite)
                )
                checkpoint = ctx.checkpoints.add(
                    gx.Checkpoint(
                        name=f"{part_name} checkpoint",
                        validation_definitions=[vd],
                        result_format=_RESULT_FORMAT,
                    )
                )
                pdf = to_pandas(_part_frame(frame, part))
                run = checkpoint.run(batch_parameters={"dataframe": pdf}, expectation_parameters=params)
                (vr,) = run.run_results.values()
                runs.append((part, len(pdf), json.loads(json.dumps(vr.to_json_dict(), default=str))))
            result_json = _merge_parts(name, runs)
            docs = {}
            if build_docs:  # once, over every part's stored result (not once per part)
                ctx.build_data_docs(site_names=["gate"])
                docs = _collect_docs(Path(site_dir))
    return result_json, docs


_ORDER = "gogooku3_suite_position"


def _merge_parts(name: str, runs: list[tuple[_Part, int, dict[str, Any]]]) -> dict[str, Any]:
    """One validation result from the parts': results in suite order with their row conditions put
    back, statistics summed, success only if every part succeeded, the parts listed in ``meta``."""
    merged = {**runs[0][2], "suite_name": name}
    results = []
    for part, _, vr in runs:
        for r in vr.get("results", []):
            cfg = r.get("expectation_config", {})
            meta = dict(cfg.get("meta") or {})
            position = meta.pop(_ORDER)
            kwargs = dict(cfg.get("kwargs") or {})
            if part.condition is not None:
                meta.pop("row_condition", None)
                kwargs["row_condition"] = part.condition
            results.append((position, {**r, "expectation_config": {**cfg, "kwargs": kwargs, "meta": meta}}))
    merged["results"] = [r for _, r in sorted(results, key=lambda pr: pr[0])]
    stats = {k: sum(int(vr.get("statistics", {}).get(k, 0)) for _, _, vr in runs) for k in _COUNTS}
    evaluated = stats["evaluated_expectations"]
    stats["success_percent"] = 100.0 * stats["successful_expectations"] / evaluated if evaluated else None
    merged["statistics"] = stats
    merged["success"] = all(bool(vr.get("success")) for _, _, vr in runs)
    merged["meta"] = {
        **(merged.get("meta") or {}),
        "gogooku3_parts": [
            {"row_condition": part.label or None, "rows": rows, "expectations": len(part.expectations)}
            for part, rows, _ in runs
        ],
    }
    return merged


_COUNTS = ("evaluated_expectations", "successful_expectations", "unsuccessful_expectations")


def _collect_docs(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in _DOCS_SUFFIXES
    }


def _columns(kwargs: dict[str, Any]) -> tuple[str, ...]:
    for key in ("column_list", "column_set"):
        if kwargs.get(key):
            return tuple(str(c) for c in kwargs[key]) if key == "column_list" else ()
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k)]
    return tuple(str(c) for c in cols)


def _exception_message(exc: dict[str, Any]) -> str | None:
    """The first exception message of a result's ``exception_info`` (flat, or keyed by metric)."""
    infos = [exc] if "raised_exception" in exc else [v for v in exc.values() if isinstance(v, dict)]
    for info in infos:
        if info.get("raised_exception"):
            lines = str(info.get("exception_message") or "error").strip().splitlines()
            return lines[0] if lines else "error"
    return None


def _failure(r: dict[str, Any]) -> FailedExpectation:
    cfg = r.get("expectation_config", {})
    etype = cfg.get("type", "?")
    kwargs = cfg.get("kwargs", {})
    res = r.get("result") or {}
    exc = r.get("exception_info") or {}
    observed = res.get("observed_value")
    unexpected = res.get("unexpected_count")
    elements = res.get("element_count")
    pct = res.get("unexpected_percent")
    error = _exception_message(exc)
    if error is not None:
        desc = f"could not be evaluated: {error}"
    elif etype == "expect_column_distinct_values_to_equal_set":
        missing = sorted(str(v)[:10] for v in res.get("partial_missing_list") or [])
        extra = sorted(str(v)[:10] for v in res.get("partial_unexpected_list") or [])
        desc = f"dates missing {missing}, unexpected {extra}"
    elif unexpected is not None:
        desc = f"{unexpected} of {elements} rows unexpected ({(pct or 0.0):.1f}%)"
        if kwargs.get("mostly") is not None:
            desc += f", needs >= {float(kwargs['mostly']):.0%} ok"
        sample = res.get("partial_unexpected_list") or []
        if sample and etype != "expect_column_values_to_not_be_null":
            desc += f", e.g. {json.dumps(sample[:3], default=str)}"
    elif etype == "expect_table_columns_to_match_set":
        mism = (res.get("details") or {}).get("mismatched") or {}
        parts = [f"{k} {sorted(v)}" for k, v in mism.items() if v]
        desc = "columns " + ("; ".join(parts) if parts else f"observed {observed}")
    else:
        bounds = {k: kwargs[k] for k in ("min_value", "max_value", "type_", "value") if k in kwargs}
        desc = f"observed {observed!s} (expected {json.dumps(bounds, default=str)})"
    return FailedExpectation(etype, _columns(kwargs), desc, observed, unexpected, elements, pct)


# ------------------------------------------------------------------------------ lake shell


@dataclass(frozen=True)
class GateOutcome:
    """What :func:`gate_partition` did for a passing partition."""

    result: GateResult
    validation_uri: str
    docs_uri: str | None
    marker: LatestGood


def expected_rows_from_listed_info(lake: Lake, day: dt.date | str) -> int | None:
    """Codes listed on ``day`` (rows of ``raw/listed_info`` for that date), or None when not in the lake."""
    if not lake.has_partition("raw", "listed_info", day):
        return None
    return lake.read_partition("raw", "listed_info", day, columns=["Code"]).get_column("Code").n_unique()


def save_artifacts(
    lake: Lake, layer: str, dataset: str, day: dt.date | str, result: GateResult
) -> tuple[str, str | None]:
    """Write ``gx/validation.json`` and ``gx/data_docs/...`` next to the partition; returns their URIs."""
    validation_uri = lake.write_artifact(
        layer, dataset, day, "gx/validation.json", result.validation_json_bytes(), "application/json"
    )
    docs_uri = None
    for rel, data in result.data_docs_html.items():
        ctype = "text/html" if rel.endswith(".html") else "text/css"
        uri = lake.write_artifact(layer, dataset, day, f"gx/data_docs/{rel}", data, ctype)
        if rel == "index.html":
            docs_uri = uri
    return validation_uri, docs_uri


def gate_partition(
    lake: Lake,
    layer: str,
    dataset: str,
    day: dt.date | str,
    suite_name: str | None = None,
    *,
    logical_date: dt.date | str | None = None,
    expected_rows: int | None = None,
    mature_mask: pl.Series | pl.Expr | None = None,
    build_docs: bool = True,
) -> GateOutcome:
    """Gate one lake partition: validate, save artifacts, mark latest good only on success.

    ``suite_name`` defaults to ``dataset``; ``logical_date`` to ``day``. The partition's dates must
    be exactly ``day``. Raises :class:`~gogooku3.lake.MissingPartitionError` when the partition is
    absent (nothing is validated or saved) and :class:`QualityGateFailed` (after saving the
    artifacts, without touching the latest-good marker) when an expectation fails.
    """
    from gogooku3.lake.layout import to_date

    day = to_date(day)
    manifest: Manifest = lake.read_manifest(layer, dataset, day)  # MissingPartitionError names it
    df = lake.read_partition(layer, dataset, day)
    where = f"{layer}/{dataset} date={day.isoformat()} in {lake.uri}"
    result = run_gate(
        suite_name or dataset,
        df,
        logical_date=logical_date or day,
        expected_rows=expected_rows,
        mature_mask=mature_mask,
        expected_dates=[day] if df.height else [],
        build_docs=build_docs,
    )
    validation_uri, docs_uri = save_artifacts(lake, layer, dataset, day, result)
    if not result.passed:
        log.error("quality gate failed for %s; validation saved at %s", where, validation_uri)
        raise QualityGateFailed(result, where)
    marker = lake.mark_good(
        layer, dataset, day, validation_ref=validation_uri, expected_checksum=manifest.checksum
    )
    return GateOutcome(result, validation_uri, docs_uri, marker)


__all__ = [
    "MATURE_COLUMN",
    "FailedExpectation",
    "GateOutcome",
    "GateResult",
    "QualityGateFailed",
    "default_expected_dates",
    "expected_rows_from_listed_info",
    "gate_partition",
    "row_bounds",
    "run_gate",
    "save_artifacts",
    "to_pandas",
]
