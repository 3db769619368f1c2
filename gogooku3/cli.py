"""The ``gogooku3`` command line. Each command parses and validates its arguments, then calls the
library; heavy imports happen inside the commands so ``gogooku3 --help`` stays instant."""

from __future__ import annotations

import datetime as dt
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="gogooku3: J-Quants -> lake -> features")
trades_spec_app = typer.Typer(no_args_is_help=True, help="Weekly investor-type flows.")
features_app = typer.Typer(no_args_is_help=True, help="Feature build.")
app.add_typer(trades_spec_app, name="trades-spec")
app.add_typer(features_app, name="features")


def _fail(message: str, code: int = 2) -> None:
    from gogooku3.redaction import scrub

    typer.echo(f"error: {scrub(message)}", err=True)
    raise typer.Exit(code)


def _date(value: str, option: str) -> dt.date:
    from gogooku3.calendar import parse_date

    try:
        return parse_date(value)
    except ValueError as exc:
        _fail(f"{option}: {exc}")
        raise  # unreachable


def _lake(value: str | None) -> str | None:
    """``--lake`` as given (None: the configured lake). An empty value is an error, not the default:
    a script whose variable came out empty must not write into whatever lake the environment names."""
    if value is not None and not value.strip():
        _fail("--lake is empty: give a lake URI (a path, file://... or s3://bucket/prefix) or leave it out")
    return value


@app.command()
def fetch(
    date: str = typer.Option(..., "--date", help="JST logical date, YYYY-MM-DD"),
    endpoint: list[str] = typer.Option(
        None,
        "--endpoint",
        help="a dataset such as daily_quotes or trading_calendar (repeatable; default all)",
    ),
    lake: str = typer.Option(None, "--lake", help="lake URI (default GOGOOKU3_LAKE_URI or ./data/lake)"),
    end: str = typer.Option(
        None,
        "--end",
        help="backfill every calendar day from --date through --end (each day is one logical date)",
    ),
    force: bool = typer.Option(
        False, "--force", help="refetch partitions that are already complete and verified in the lake"
    ),
) -> None:
    """Fetch one JST date (or each date of a range) of J-Quants data into the lake.

    A dataset whose partition of a day is already complete (committed, checksum verified, written
    after that day's last publication) is skipped, saying so, to spare the plan's request quota;
    ``--force`` refetches it. The trading calendar (a snapshot of the whole calendar) is fetched once,
    on the first day: the exchange's calendar then decides which days are trading days. Credentials and protocol come from the environment (JQUANTS_API_KEY, or
    JQUANTS_API_VERSION=v1 with JQUANTS_AUTH_EMAIL/JQUANTS_AUTH_PASSWORD or JQUANTS_REFRESH_TOKEN;
    JQUANTS_BASE_URL)."""
    from gogooku3.config import ConfigError, Settings
    from gogooku3.jquants.datasets import ENDPOINT_NAMES, SNAPSHOT_DATASETS, get_dataset

    day = _date(date, "--date")
    last = _date(end, "--end") if end is not None else day
    lake = _lake(lake)
    if last < day:
        _fail(f"--end {last} is before --date {day}")
    names = endpoint or list(ENDPOINT_NAMES)
    try:
        datasets = [get_dataset(n) for n in names]
        settings = Settings.from_env()
        settings.jquants.check_credentials()
    except (ValueError, ConfigError) as exc:
        _fail(str(exc))
    from gogooku3.fetch import fetch_to_lake_sync
    from gogooku3.jquants.errors import JQuantsError
    from gogooku3.jquants.pacer import PacerError, PacerUnavailableError
    from gogooku3.lake import LakeError

    first = day
    while day <= last:
        wanted = [d.name for d in datasets if day == first or d.name not in SNAPSHOT_DATASETS]
        try:
            results = fetch_to_lake_sync(
                settings,
                wanted,
                day,
                lake_uri=lake or settings.lake_uri,
                skip_complete=not force,
            )
        except (JQuantsError, LakeError, PacerError, PacerUnavailableError) as exc:
            _fail(f"{day}: {exc}", code=1)
        for r in results:
            typer.echo(r.summary())
        day += dt.timedelta(days=1)


@trades_spec_app.command("expand")
def trades_spec_expand(
    start: str = typer.Option(..., "--start", help="first JST trading date, YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="last JST trading date, YYYY-MM-DD"),
    lake: str = typer.Option(None, "--lake", help="lake URI (default GOGOOKU3_LAKE_URI or ./data/lake)"),
) -> None:
    """Expand raw/trades_spec into point-in-time daily rows in interim/trades_spec_daily."""
    from gogooku3.config import ConfigError, Settings
    from gogooku3.flows.job import run_expansion, summarize
    from gogooku3.lake import LakeError

    first, last = _date(start, "--start"), _date(end, "--end")
    lake = _lake(lake)
    try:
        settings = Settings.from_env()
        manifests = run_expansion(first, last, lake, settings)
    except (ValueError, ConfigError, LakeError) as exc:
        _fail(str(exc))
    typer.echo(summarize(manifests))


def _progress_to_stderr(name: str) -> None:
    """Show logger ``name``'s INFO lines on stderr (a task container's log), once per process. The
    library's loggers carry the scrubbing filter (gogooku3.redaction), so nothing secret reaches it."""
    import logging

    logger = logging.getLogger(name)
    if not any(getattr(h, "_gogooku3_progress", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._gogooku3_progress = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@features_app.command("build")
def features_build(
    start: str = typer.Option(..., "--start", help="first JST trading date, YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="last JST trading date, YYYY-MM-DD"),
    engine: str = typer.Option("cpu", "--engine", help="cpu (Polars) or gpu (cuDF + RMM pool)"),
    lake: str = typer.Option(None, "--lake", help="lake URI (default GOGOOKU3_LAKE_URI or ./data/lake)"),
) -> None:
    """Build features/features/date=D/ partitions from the raw and interim lake tables."""
    from gogooku3.config import ConfigError, Settings
    from gogooku3.features.engine_gpu import GpuUnavailableError
    from gogooku3.features.job import run_build, summarize
    from gogooku3.lake import LakeError

    first, last = _date(start, "--start"), _date(end, "--end")
    lake = _lake(lake)
    _progress_to_stderr("gogooku3.features")  # which history it read (or why), and its timings
    try:
        settings = Settings.from_env()
        manifests = run_build(first, last, engine, lake, settings)
    except (ValueError, ConfigError, LakeError) as exc:
        _fail(str(exc))
    except GpuUnavailableError as exc:  # engine gpu on a machine without a GPU or RAPIDS
        _fail(str(exc), code=3)
    typer.echo(summarize(manifests))


@app.command()
def train(
    start: str = typer.Option(..., "--start", help="first trading date of the features to read, YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="last trading date, YYYY-MM-DD"),
    folds: int = typer.Option(4, "--folds", help="walk-forward folds (consecutive test windows)"),
    size: str = typer.Option("base", "--size", help="tiny|small|base|large (tiny: CI and CPU trials)"),
    horizons: str = typer.Option("1,5,10,20", "--horizons", help="comma-separated target horizons (days)"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda"),
    lake: str = typer.Option(None, "--lake", help="lake URI (default GOGOOKU3_LAKE_URI or ./data/lake)"),
    out: str = typer.Option(
        "./data/train", "--out", help="output directory or s3://bucket/prefix (a rerun resumes in it)"
    ),
    summary_json: str = typer.Option(None, "--summary-json", help="also write the summary JSON here"),
    max_epochs: int = typer.Option(30, "--max-epochs"),
    patience: int = typer.Option(9, "--patience", help="early stopping on validation RankIC@1d"),
    embargo: int = typer.Option(20, "--embargo", help="trading days; never less than the longest horizon"),
    valid_days: int = typer.Option(60, "--valid-days"),
    min_train_days: int = typer.Option(120, "--min-train-days"),
    fold_mode: str = typer.Option("expanding", "--fold-mode", help="expanding|rolling"),
    rank_weight: float = typer.Option(
        0.5, "--rank-weight", help="weight of the soft-rank correlation loss (0: pinball only)"
    ),
    init: str = typer.Option(
        "ridge", "--init", help="ridge (start the network as the fold's ridge) | random"
    ),
    graph_k: int = typer.Option(10, "--graph-k", help="correlated peers per code in the day graph"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch and LightGBM"),
) -> None:
    """Walk-forward training of ATFT-GAT-FAN with ridge, LightGBM and best-feature baselines on the
    same folds. Writes out-of-sample predictions, a summary JSON, plots and the model artefacts
    under --out; a rerun with the same arguments resumes at the first unfinished fold."""
    from pathlib import Path

    from rich.console import Console

    from gogooku3.config import ConfigError, Settings
    from gogooku3.lake import LakeError
    from gogooku3.model.config import SIZES
    from gogooku3.training.folds import FoldPlan
    from gogooku3.training.graph import GraphConfig
    from gogooku3.training.job import parse_horizons, resolve_device, run_training
    from gogooku3.training.runstore import working_folder
    from gogooku3.training.trainer import TrainConfig
    from gogooku3.training.walkforward import RunConfig

    first, last = _date(start, "--start"), _date(end, "--end")
    lake = _lake(lake)
    if size not in SIZES:
        _fail(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    try:
        settings = Settings.from_env()
        # Not a terminal (a log file, a container's log): rich would wrap and truncate at 80 columns.
        console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
        with working_folder(out, settings.s3) as (out_dir, remote):
            cfg = RunConfig(
                start=first,
                end=last,
                out_dir=out_dir,
                horizons=parse_horizons(horizons),
                seed=seed,
                plan=FoldPlan(
                    n_folds=folds,
                    embargo=embargo,
                    valid_days=valid_days,
                    min_train_days=min_train_days,
                    mode=fold_mode,  # type: ignore[arg-type]
                ),
                train=TrainConfig(
                    size=size,
                    max_epochs=max_epochs,
                    patience=patience,
                    rank_weight=rank_weight,
                    init=init,
                    device=resolve_device(device),
                ),
                graph=GraphConfig(k=graph_k),
                threads=threads,
            )
            summary_path = Path(summary_json) if summary_json else None
            run_training(cfg, lake, settings, console, summary_path, remote)
    except (ValueError, ConfigError, LakeError) as exc:
        _fail(str(exc))


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port", help="0: bind any free port (see --port-file)"),
    port_file: str = typer.Option(
        None, "--port-file", help="write the port bound here (atomically) once the server answers"
    ),
    seed: int = typer.Option(7, "--seed"),
    codes: int = typer.Option(4000, "--codes"),
    start: str = typer.Option("2019-01-01", "--start"),
    end: str = typer.Option(None, "--end", help="default: today (JST)"),
    plan: str = typer.Option("premium", "--plan", help="free|light|standard|premium (rate limit enforced)"),
    signal: float = typer.Option(1.0, "--signal", help="planted-signal strength; 0 = pure noise"),
    page_size: int = typer.Option(1000, "--page-size"),
    latency_ms: float = typer.Option(0.0, "--latency-ms"),
    fault_rate: float = typer.Option(
        0.0, "--fault-rate", help="probability of an injected fault per request"
    ),
    faults: str = typer.Option(
        "429,5xx,drop,malformed,token_expiry", "--faults", help="comma-separated fault kinds to draw from"
    ),
    closure: list[str] = typer.Option(
        None,
        "--closure",
        help="a day the exchange stays closed although the rule says open (repeatable; its calendar says so)",
    ),
) -> None:
    """Serve the J-Quants-compatible emulator (v1 under /v1, v2 under /v2)."""
    from gogooku3.emulator.options import OptionError, check_port, config_from_options
    from gogooku3.emulator.server import ListenError, serve_forever

    try:
        check_port(port)
        cfg = config_from_options(
            seed=seed,
            codes=codes,
            start=start,
            end=end,
            plan=plan,
            signal=signal,
            page_size=page_size,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            faults=faults,
            closures=closure or (),
        )
    except OptionError as exc:
        _fail(str(exc))
    try:
        serve_forever(cfg, host=host, port=port, port_file=port_file)
    except ListenError as exc:
        _fail(f"--host/--port: {exc}", code=1)


def main() -> None:  # pragma: no cover
    sys.exit(app())
