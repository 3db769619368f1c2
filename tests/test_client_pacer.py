"""Unit tests of the shared request pacer (fake clock; a real two-process test of the slot file)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os

import pytest

from gogooku3.jquants.pacer import RatePacer, fingerprint, reserve_slot


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Virtual time: waking up at `now + seconds` (time never goes back for other sleepers).
        self.sleeps.append(seconds)
        self.now = max(self.now, self.now + seconds)


def _max_in_window(times: list[float], window: float = 60.0) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_reserve_slot_spaces_slots_and_never_schedules_in_the_past(tmp_path):
    path = tmp_path / "k.slot"
    assert reserve_slot(path, 0.5, 100.0) == 100.0
    assert reserve_slot(path, 0.5, 100.0) == 100.5
    assert reserve_slot(path, 0.5, 100.1) == 101.0
    # idle gap: the schedule does not bank credit, the next slot is "now"
    assert reserve_slot(path, 0.5, 500.0) == 500.0
    assert reserve_slot(path, 0.5, 500.0) == 500.5


def test_corrupt_state_file_recovers(tmp_path):
    path = tmp_path / "k.slot"
    path.write_bytes(b"garbage\xff")
    assert reserve_slot(path, 1.0, 10.0) == 10.0
    assert reserve_slot(path, 1.0, 10.0) == 11.0


async def test_concurrent_acquires_are_evenly_spaced_and_respect_the_window(tmp_path):
    clock = FakeClock()
    pacer = RatePacer(120, key="t", state_dir=tmp_path, safety=1.0, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            await pacer.acquire()
            sent.append(clock.now)
            await asyncio.sleep(0)  # let the other workers interleave

    await asyncio.gather(*(worker(40) for _ in range(8)))
    assert len(sent) == 320
    gaps = [b - a for a, b in zip(sorted(sent), sorted(sent)[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.5)
    # 120/min evenly spaced: at most limit+1 sends in any closed 60 s window, i.e. no more than
    # the plan allows in any half-open window a sliding-window server counts.
    assert _max_in_window(sent) <= 120


async def test_safety_margin_leaves_headroom(tmp_path):
    clock = FakeClock()
    pacer = RatePacer(500, key="t", state_dir=tmp_path, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(1500):
        await pacer.acquire()
        sent.append(clock.now)
    assert _max_in_window(sent) < 500
    assert pacer.interval_s == pytest.approx(60 / (500 * 0.99))


async def test_disabled_pacer_never_sleeps(tmp_path):
    clock = FakeClock()
    pacer = RatePacer(float("inf"), key="t", state_dir=tmp_path, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        assert await pacer.acquire() == 0.0
    assert clock.sleeps == []


async def test_unusable_state_dir_falls_back_to_in_process_pacing(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    clock = FakeClock()
    pacer = RatePacer(60, key="t", state_dir=blocker, safety=1.0, clock=clock, sleep=clock.sleep)
    assert pacer.path is None
    await pacer.acquire()
    await pacer.acquire()
    assert clock.sleeps == [pytest.approx(1.0)]


def test_fingerprint_hides_the_credential():
    fp = fingerprint("https://api.jquants.com/v2", "v2", "super-secret-key")
    assert "secret" not in fp and len(fp) == 24
    assert fp != fingerprint("https://api.jquants.com/v2", "v2", "other-key")
    assert fp == fingerprint("https://api.jquants.com/v2", "v2", "super-secret-key")


def _reserve_many(path: str, interval: float, n: int, queue) -> None:
    import time

    slots = [reserve_slot(path, interval, time.time()) for _ in range(n)]
    queue.put((os.getpid(), slots))


def test_two_processes_share_one_schedule(tmp_path):
    """Slots reserved concurrently by two processes interleave on one evenly spaced schedule."""
    path = str(tmp_path / "shared.slot")
    interval, n = 0.01, 200
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(path, interval, n, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len({pid for pid, _ in results}) == 2
    slots = sorted(s for _, ss in results for s in ss)
    assert len(slots) == 2 * n
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    # every slot is distinct and at least one interval after the previous one, whichever process took it
    assert min(gaps) >= interval - 1e-6


async def _pace_in_process(state_dir: str, n: int) -> list[float]:
    import time

    pacer = RatePacer(6000, key="shared", state_dir=state_dir, safety=1.0)
    out = []
    for _ in range(n):
        await pacer.acquire()
        out.append(time.time())
    return out


def _pacer_proc(state_dir: str, n: int, queue) -> None:
    queue.put(asyncio.run(_pace_in_process(state_dir, n)))


def test_two_processes_with_pacers_stay_under_one_limit(tmp_path):
    """Two processes each pacing at the full rate together do not exceed it (sends 10 ms apart)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_pacer_proc, args=(str(tmp_path), 60, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    sends = sorted(t for _ in procs for t in queue.get(timeout=60))
    for p in procs:
        p.join(timeout=60)
    assert len(sends) == 120
    # Each send happens at or after its slot; slots are 10 ms apart, so the 120 sends span at
    # least 119 intervals in total (a per-process-only pacer would finish in ~half that).
    assert sends[-1] - sends[0] >= 119 * 0.01 - 0.005


class StallingClock(FakeClock):
    """Every sleep overshoots by `stall` seconds (a blocked event loop) while `stalls` lasts."""

    def __init__(self, stall: float, stalls: int) -> None:
        super().__init__()
        self.stall, self.stalls = stall, stalls

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        extra = self.stall if self.stalls > 0 else 0.0
        self.stalls -= 1
        self.now += seconds + extra


async def test_a_slot_missed_in_a_stall_is_forfeited_not_bunched(tmp_path):
    clock = StallingClock(stall=1.5, stalls=1)
    pacer = RatePacer(60, key="t", state_dir=tmp_path, safety=1.0, clock=clock, sleep=clock.sleep)
    await pacer.acquire()  # slot 1000.0, no wait
    await pacer.acquire()  # slot 1001.0, but wakes at 1002.5: forfeits, takes 1002.5
    assert clock.now == pytest.approx(1002.5) and pacer.forfeited == 1
    await pacer.acquire()  # the next slot is one interval after the late send, not before it
    assert clock.now == pytest.approx(1003.5)


class CrawlingClock(FakeClock):
    """A hopelessly slow process: a second passes between any two looks at the clock."""

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


async def test_forfeits_are_bounded_so_a_slow_loop_still_sends(tmp_path):
    clock = CrawlingClock()
    pacer = RatePacer(
        60, key="t", state_dir=tmp_path, safety=1.0, max_forfeits=2, clock=clock, sleep=clock.sleep
    )
    await pacer.acquire()  # every wake-up is late, yet acquire returns after 2 forfeits
    assert pacer.forfeited == 2
    await pacer.acquire()
    assert pacer.forfeited == 4
