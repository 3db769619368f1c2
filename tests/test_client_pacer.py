"""Tests of the shared request pacer: unit tests on a fake clock, processes racing on one slot file, the
Redis schedule on a real redis-server, and two ``gogooku3 fetch`` processes against one rate-limited
emulator, sharing a slot file or only Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker_env
import pytest

from gogooku3.config import ConfigError
from gogooku3.devtools.airflow_env import isolated
from gogooku3.emulator.config import EmulatorConfig
from gogooku3.emulator.ratelimit import SlidingWindowLimiter
from gogooku3.emulator.testing import running_emulator
from gogooku3.jquants.pacer import (
    LocalSchedule,
    PacerError,
    PacerUnavailableError,
    RatePacer,
    RedisSchedule,
    fingerprint,
    reserve_slot,
)
from gogooku3.lake import open_lake


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
    assert isinstance(pacer.schedule, LocalSchedule)
    await pacer.acquire()
    await pacer.acquire()
    assert clock.sleeps == [pytest.approx(1.0)]


def test_fingerprint_hides_the_credential():
    fp = fingerprint("https://api.jquants.com/v2", "v2", "super-secret-key")
    assert "secret" not in fp and len(fp) == 24
    assert fp != fingerprint("https://api.jquants.com/v2", "v2", "other-key")
    assert fp == fingerprint("https://api.jquants.com/v2", "v2", "super-secret-key")


def _reserve_in_bursts(path: str, interval: float, rounds: int, per_round: int, barrier, queue) -> None:
    import time

    slots: list[float] = []
    for _ in range(rounds):
        # Every process leaves the barrier at the same moment and hammers the one state file: the
        # read-modify-write of next_free then overlaps on both cores unless the flock serialises it.
        barrier.wait(timeout=60)
        slots.extend(reserve_slot(path, interval, time.time()) for _ in range(per_round))
    queue.put((os.getpid(), slots))


def test_processes_released_together_share_one_schedule(tmp_path):
    """Slots reserved at the same moment by several processes are distinct and an interval apart.

    Processes started one after another rarely reserve at the same instant, so a missing lock would
    go unnoticed; a barrier before each burst makes them collide thousands of times per run.
    """
    path = str(tmp_path / "shared.slot")
    procs_n, rounds, per_round, interval = 6, 30, 200, 0.001
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(procs_n)
    procs = [
        ctx.Process(target=_reserve_in_bursts, args=(path, interval, rounds, per_round, barrier, queue))
        for _ in range(procs_n)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len({pid for pid, _ in results}) == procs_n
    slots = sorted(s for _, ss in results for s in ss)
    total = procs_n * rounds * per_round
    assert len(slots) == total
    # a lost update hands two processes the same slot
    assert len(set(slots)) == total, f"{total - len(set(slots))} slots were handed out twice"
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    # every slot is at least one interval after the previous one, whichever process took it
    # (1e-6: the state file stores microseconds)
    assert min(gaps) >= interval - 1e-6, f"{sum(g < interval - 1e-6 for g in gaps)} gaps under the interval"


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


class _FastMinuteLimiter(SlidingWindowLimiter):
    """The emulator's own sliding-window rule with its "minute" lasting ``60 / speed`` real seconds.

    A limit can only be broken by more requests than the limit, and a correctly paced client needs a
    full minute for that many; compressing the server's minute lets a run of ~10 s be long enough for
    a pacing bug to overfill the window, while the rule itself stays the emulator's.
    """

    def __init__(self, limit_per_minute: int, speed: float) -> None:
        super().__init__(limit_per_minute, clock=lambda: time.monotonic() * speed)
        self.speed = speed

    def check(self, credential: str) -> float | None:
        wait = super().check(credential)
        return None if wait is None else wait / self.speed  # Retry-After in real seconds


#: Emulator: the Light plan's 60 requests per minute, the minute compressed 15x (60 per ~3.97 s).
SPEED = 15
#: What each CLI process is told: 80% of the compressed limit. On one shared schedule 60 consecutive
#: requests then span ~5.05 s, over a second more than the window, so a request sent late by anything
#: short of that is still accepted; two processes pacing only themselves send 1.6x the limit.
CLIENT_RATE = 0.8 * 60 * SPEED
PAGE_SIZE = 4
#: 4 days x 15 pages per process: 120 requests, twice what one window accepts.
DAYS = {
    "a": [dt.date(2024, 1, 9), dt.date(2024, 1, 10), dt.date(2024, 1, 11), dt.date(2024, 1, 12)],
    "b": [dt.date(2024, 1, 15), dt.date(2024, 1, 16), dt.date(2024, 1, 17), dt.date(2024, 1, 18)],
}


@pytest.fixture(params=["file", "redis"])
def shared_pacer(request, tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """What each of two fetch processes (named) is told about pacing; either way the schedule is the
    only thing they share: one pacer directory (one host), or only a Redis server, each process
    with a pacer directory of its own (two hosts)."""
    if request.param == "file":
        return lambda name: {"GOGOOKU3_PACER_DIR": str(tmp_path / "pacer")}
    url = request.getfixturevalue("redis_url")
    return lambda name: {"GOGOOKU3_PACER_DIR": str(tmp_path / f"pacer_{name}"), "GOGOOKU3_PACER_URL": url}


@pytest.mark.integration
def test_two_fetch_processes_sharing_a_pacer_never_hit_the_rate_limit(
    tmp_path: Path, shared_pacer: Callable[[str], dict[str, str]]
) -> None:
    """Two ``gogooku3 fetch`` processes, each pacing at 80% of the plan, run at once on one account:
    sharing one schedule (a slot file, or Redis across hosts) they stay under the limit together
    (zero 429s) and fetch every row."""
    cfg = EmulatorConfig.build(
        seed=5,
        codes=60,
        start=dt.date(2024, 1, 1),
        end=dt.date(2024, 1, 31),
        plan="light",
        page_size=PAGE_SIZE,
    )
    gogooku3 = str(Path(sys.executable).with_name("gogooku3"))
    with running_emulator(cfg) as emu:
        fast = _FastMinuteLimiter(cfg.limit_per_minute, SPEED)
        emu._call(lambda: setattr(emu._state, "limiter", fast))  # swapped on the server's loop
        assert emu._state.limiter is fast
        clean = isolated(os.environ)
        env = clean | {
            "JQUANTS_BASE_URL": emu.base_url_v2,
            "JQUANTS_API_KEY": emu.api_key,
            "JQUANTS_PLAN": "light",
            "JQUANTS_RATE_PER_MINUTE": str(CLIENT_RATE),
        }
        procs = {}
        for name, days in DAYS.items():
            span = ["--date", days[0].isoformat(), "--end", days[-1].isoformat()]
            argv = [gogooku3, "fetch", *span, "--endpoint", "daily_quotes", "--lake", str(tmp_path / name)]
            procs[name] = subprocess.Popen(
                argv, env=env | shared_pacer(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        outs = {name: proc.communicate(timeout=120) for name, proc in procs.items()}
        stats = emu.stats
        for name, proc in procs.items():
            assert proc.returncode == 0, f"fetch {name} failed:\n{outs[name][1][-3000:]}"
        expected_requests = 0
        for name, days in DAYS.items():
            lake = open_lake(str(tmp_path / name))
            for day in days:
                truth = emu.market.frame("daily_quotes", day)
                assert truth.height > 0
                got = lake.read_partition("raw", "daily_quotes", day)
                assert got.sort(["Code"]).equals(truth.sort(["Code"])), (name, day)
                expected_requests += math.ceil(truth.height / PAGE_SIZE)
    # More requests than the limit, so an unshared or missing pacer overfills a window.
    assert expected_requests >= 2 * cfg.limit_per_minute
    assert stats["rate_limited"] == 0, stats
    # every page was asked for exactly once and answered 200: no 429, nothing retried
    assert stats["responses"] == {"200": expected_requests}, stats
    assert stats["requests_total"] == expected_requests, stats


def test_a_nan_rate_is_refused_not_read_as_no_pacing(tmp_path):
    with pytest.raises(ValueError, match="rate_per_minute is NaN"):
        RatePacer(float("nan"), key="t", state_dir=tmp_path)


# ---------------------------------------------------------------- the Redis schedule (several hosts)


def test_redis_slots_follow_the_servers_clock_not_the_hosts(redis_url):
    """Two "hosts" whose clocks disagree by 30 years reserve in turn: each is given the delay until
    its slot by the server's clock, so together they keep one evenly spaced schedule. (A schedule
    kept in the callers' clocks would make the slow-clock host wait decades.)"""
    interval = 0.05
    key = f"skew-{os.getpid()}-{time.time_ns()}"
    hosts = [RedisSchedule(redis_url, key), RedisSchedule(redis_url, key)]
    skewed_now = [time.time(), time.time() + 30 * 365 * 86400]
    slots = []
    for k in range(20):
        t0 = time.monotonic()
        delay = hosts[k % 2].reserve(interval, skewed_now[k % 2])
        slots.append(t0 + delay)  # on one (monotonic) timeline: the caller sleeps `delay`
    assert all(0 <= b - a for a, b in zip(slots, slots[1:], strict=False))
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    # a round trip (the gap between t0 and Redis's TIME) is far below 10 ms here
    assert min(gaps) >= interval - 0.01 and max(gaps) <= interval + 0.01, gaps
    assert slots[-1] - slots[0] == pytest.approx(19 * interval, abs=0.02)


async def test_a_pacer_with_a_redis_url_shares_its_schedule_through_redis(redis_url, tmp_path):
    """Two pacers with separate state directories (two hosts) but one Redis URL take one schedule:
    1 s apart for a 60-per-minute rate, whichever pacer asks."""
    clock = FakeClock()
    key = f"shared-{time.time_ns()}"
    pacers = [
        RatePacer(
            60,
            key=key,
            state_dir=tmp_path / d,
            redis_url=redis_url,
            safety=1.0,
            clock=clock,
            sleep=clock.sleep,
        )
        for d in ("a", "b")
    ]
    assert all(isinstance(p.schedule, RedisSchedule) for p in pacers)
    waits = [await pacers[k % 2].acquire() for k in range(4)]
    # the fake clock does not move Redis's: each reservation is one more interval ahead
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=0.05)


def test_an_unanswering_pacer_redis_is_refused_at_start_naming_it_without_its_password(tmp_path):
    url = f"unix://:hunter2-pacer-password@{tmp_path}/nothing.sock"
    with pytest.raises(PacerUnavailableError) as err:
        RatePacer(60, key="t", redis_url=url)
    assert str(tmp_path / "nothing.sock") in str(err.value) and "does not answer" in str(err.value)
    assert "hunter2-pacer-password" not in str(err.value)
    # not a configuration error: the task retries it (a cold host can miss the first ping)
    assert not isinstance(err.value, ConfigError)
    with pytest.raises(PacerError, match="malformed"):
        RatePacer(60, key="t", redis_url="redis://:hunter2@host:notaport/0")


async def test_a_redis_outage_mid_run_paces_this_process_and_says_so(tmp_path, caplog):
    from gogooku3.devtools.redis_server import running_redis_server

    docker_env.need_host_package("redis-server")
    clock = FakeClock()
    with running_redis_server(tmp_path / "redis") as url:
        pacer = RatePacer(60, key="outage", redis_url=url, safety=1.0, clock=clock, sleep=clock.sleep)
        assert await pacer.acquire() == pytest.approx(0.0, abs=0.05)
    with caplog.at_level("WARNING", logger="gogooku3.jquants.pacer"):
        # the server is gone: still paced, one interval apart, by this process alone
        waits = [await pacer.acquire() for _ in range(3)]
    assert waits == [0.0, 1.0, 1.0]
    warnings = [r.getMessage() for r in caplog.records if "pacing this process only" in r.getMessage()]
    assert len(warnings) == 1 and url.removeprefix("unix://") in warnings[0]


def test_the_pacer_url_setting_is_checked_and_its_password_kept_secret():
    from gogooku3.config import ConfigError, JQuantsSettings
    from gogooku3.redaction import scrub

    with pytest.raises(ConfigError, match="GOGOOKU3_PACER_URL: expected a redis://"):
        JQuantsSettings.from_env({"GOGOOKU3_PACER_URL": "http://redis:6379/1"})
    url = "redis://:pacer-secret-7a1f@redis:6379/1"
    assert JQuantsSettings.from_env({"GOGOOKU3_PACER_URL": url}).pacer_url == url
    assert scrub(f"connecting to {url}") == "connecting to redis://:***@redis:6379/1"
