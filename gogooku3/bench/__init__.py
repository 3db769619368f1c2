"""Benchmarks, run with ``python -m gogooku3.bench [--only NAME] [--quick]`` (``make bench``).

A benchmark is any module in this package (name not starting with ``_``) exposing
``run(quick: bool) -> list[dict]``: one dict per table row, keys are column headers. Adding a
benchmark is adding a module; the runner discovers it. Benchmarks measure, they do not assert:
speed targets live here, never in tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType

Bench = Callable[[bool], list[dict]]


def discover() -> dict[str, Bench]:
    """``{name: run}`` of every benchmark module in this package, sorted by name.

    A module that fails to import still gets an entry whose ``run`` re-raises the import error, so
    one broken benchmark is reported as failed instead of hiding the others.
    """
    import gogooku3.bench as pkg

    found: dict[str, Bench] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        try:
            module: ModuleType = importlib.import_module(f"{pkg.__name__}.{info.name}")
        except Exception as exc:  # noqa: BLE001 - surfaced when the benchmark is run
            found[info.name] = _broken(exc)
            continue
        run = getattr(module, "run", None)
        if callable(run):
            found[info.name] = run
    return found


def _broken(exc: Exception) -> Bench:
    def run(quick: bool) -> list[dict]:
        raise exc

    return run


def markdown_table(rows: list[dict]) -> str:
    """Rows as a GitHub-flavoured markdown table (columns in first-seen order)."""
    if not rows:
        return "(no rows)"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
