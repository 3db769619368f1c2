"""Walk-forward folds with embargo over a panel's trading days.

Each fold is, in time order: train, embargo, validation (early stopping), embargo, test. The test
windows of consecutive folds are consecutive and never overlap, and they end the range::

    fold 0: [train .......][emb][valid][emb][test 0]
    fold 1: [train ..............][emb][valid][emb][test 1]
    ...

A sample on day t reads features of days t-L+1..t and its target covers t+1..t+h, so a gap of at
least the longest horizon between two blocks keeps a block's targets out of the next block's days:
the embargo is 20 trading days by default and never less than the longest horizon. With
``mode="expanding"`` (default) every fold trains from the first usable day; with ``"rolling"`` each
trains on the ``train_days`` before its embargo.

Day indices are positions in the panel's ``days``; ``stop`` is exclusive.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

DEFAULT_FOLDS = 4
DEFAULT_EMBARGO = 20
DEFAULT_VALID_DAYS = 60
DEFAULT_MIN_TRAIN_DAYS = 120
Mode = Literal["expanding", "rolling"]


class FoldError(ValueError):
    """The range cannot hold the requested folds; the message says how many days it needs."""


@dataclass(frozen=True)
class Block:
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def range(self) -> range:
        return range(self.start, self.stop)

    def dates(self, days: tuple[dt.date, ...]) -> tuple[dt.date, dt.date]:
        return days[self.start], days[self.stop - 1]


@dataclass(frozen=True)
class Fold:
    index: int
    train: Block
    valid: Block
    test: Block

    def describe(self, days: tuple[dt.date, ...]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in ("train", "valid", "test"):
            first, last = getattr(self, name).dates(days)
            out[f"{name}_start"], out[f"{name}_end"] = first.isoformat(), last.isoformat()
        return out


@dataclass(frozen=True)
class FoldPlan:
    """How to cut a range into folds. ``test_days=None`` divides what is left after the first
    fold's training, validation and embargoes evenly between the folds."""

    n_folds: int = DEFAULT_FOLDS
    embargo: int = DEFAULT_EMBARGO
    valid_days: int = DEFAULT_VALID_DAYS
    min_train_days: int = DEFAULT_MIN_TRAIN_DAYS
    test_days: int | None = None
    mode: Mode = "expanding"
    train_days: int | None = None  # rolling window length; default min_train_days

    def check(self, horizons: tuple[int, ...]) -> None:
        if self.n_folds < 1:
            raise FoldError(f"--folds must be >= 1, got {self.n_folds}")
        if self.embargo < max(horizons):
            raise FoldError(
                f"embargo of {self.embargo} trading days is shorter than the longest horizon "
                f"({max(horizons)}d): training targets would overlap the next block"
            )
        if self.mode not in ("expanding", "rolling"):
            raise FoldError(f"fold mode {self.mode!r}: expected 'expanding' or 'rolling'")
        for name in ("valid_days", "min_train_days"):
            if getattr(self, name) < 1:
                raise FoldError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.test_days is not None and self.test_days < 1:
            raise FoldError(f"test_days must be >= 1, got {self.test_days}")

    def days_needed(self, test_days: int = 1) -> int:
        return self.min_train_days + 2 * self.embargo + self.valid_days + self.n_folds * test_days


def walk_forward(first: int, stop: int, plan: FoldPlan, horizons: tuple[int, ...]) -> list[Fold]:
    """Folds over the usable day indices [first, stop) (days with a full input window and a known
    1-step target). Raises :class:`FoldError` when the range is too short for ``plan``."""
    plan.check(horizons)
    usable = stop - first
    fixed = plan.min_train_days + 2 * plan.embargo + plan.valid_days
    test_days = plan.test_days or (usable - fixed) // plan.n_folds
    if test_days < 1 or fixed + plan.n_folds * test_days > usable:
        raise FoldError(
            f"{plan.n_folds} fold(s) need at least {plan.days_needed(max(test_days, 1))} usable trading days "
            f"({plan.min_train_days} train + 2 x {plan.embargo} embargo + {plan.valid_days} validation + "
            f"{plan.n_folds} x {max(test_days, 1)} test), the range has {usable}"
        )
    folds = []
    test_start = stop - plan.n_folds * test_days
    for k in range(plan.n_folds):
        test = Block(test_start + k * test_days, test_start + (k + 1) * test_days)
        valid = Block(test.start - plan.embargo - plan.valid_days, test.start - plan.embargo)
        train_stop = valid.start - plan.embargo
        if plan.mode == "rolling":
            train_start = max(first, train_stop - (plan.train_days or plan.min_train_days))
        else:
            train_start = first
        folds.append(Fold(k, Block(train_start, train_stop), valid, test))
    return folds
