"""The ``gogooku3 emulator`` command's options, checked and turned into an :class:`EmulatorConfig`.

The rules live in the configs (:class:`EmulatorConfig`, :class:`~gogooku3.market.MarketConfig`),
which refuse a bad field with a :class:`~gogooku3.market.ConfigFieldError`; this module only
translates such a field back to the option it came from, so that the user reads what they typed
(``--latency-ms -1``, not ``EmulatorConfig.latency_s=-0.001``). What no config holds (the port,
the date syntax) is checked here.
"""

from __future__ import annotations

import datetime as dt

from gogooku3.calendar import parse_date
from gogooku3.emulator.config import EmulatorConfig
from gogooku3.market import ConfigFieldError

#: The option that sets each config field (``latency_s`` is given in milliseconds).
OPTION_OF_FIELD: dict[str, str] = {
    "seed": "--seed",
    "n_codes": "--codes",
    "start": "--start",
    "end": "--end",
    "plan": "--plan",
    "signal": "--signal",
    "page_size": "--page-size",
    "latency_s": "--latency-ms",
    "fault_rate": "--fault-rate",
    "faults": "--faults",
    "closures": "--closure",
}


class OptionError(ValueError):
    """A refused option value; ``str()`` is one line: the option, the value as given, what is wrong."""

    def __init__(self, option: str, value: object, problem: str) -> None:
        self.option, self.value, self.problem = option, value, problem
        shown = repr(value) if isinstance(value, str) else str(value)
        super().__init__(f"{option} {shown}: {problem}")


def check_port(port: int, option: str = "--port") -> int:
    """``port`` if a TCP port number; 0 means the server binds a free port and reports it."""
    if not 0 <= port <= 65535:
        raise OptionError(option, port, "must be a TCP port in 0..65535 (0: any free port)")
    return port


def _date(option: str, text: str) -> dt.date:
    try:
        return parse_date(text)
    except ValueError:
        raise OptionError(option, text, "expected a date as YYYY-MM-DD or YYYYMMDD") from None


def config_from_options(
    *,
    seed: int,
    codes: int,
    start: str,
    end: str | None,
    plan: str,
    signal: float,
    page_size: int,
    latency_ms: float,
    fault_rate: float,
    faults: str,
    closures: list[str] | tuple[str, ...] = (),
    today: dt.date | None = None,
) -> EmulatorConfig:
    """The config the options describe (``end=None``: ``today``, by default the JST date now);
    raises :class:`OptionError` naming the first bad option."""
    given: dict[str, object] = {
        "seed": seed,
        "n_codes": codes,
        "start": start,
        "end": end if end is not None else "today",
        "plan": plan,
        "signal": signal,
        "page_size": page_size,
        "latency_s": latency_ms,
        "fault_rate": fault_rate,
        "faults": faults,
        "closures": list(closures),
    }
    closed = tuple(_date("--closure", c) for c in closures)
    start_day = _date("--start", start)
    end_day = _date("--end", end) if end is not None else None
    try:
        return EmulatorConfig.build(
            seed=seed,
            codes=codes,
            start=start_day,
            end=end_day,
            plan=plan,
            signal=signal,
            page_size=page_size,
            latency_s=latency_ms / 1000.0,
            fault_rate=fault_rate,
            faults=[f.strip() for f in faults.split(",") if f.strip()],
            today=today,
            closures=closed,
        )
    except ConfigFieldError as exc:
        if exc.field not in OPTION_OF_FIELD:  # a field no option sets: a bug here, not a user error
            raise
        raise OptionError(OPTION_OF_FIELD[exc.field], given[exc.field], exc.problem) from exc
