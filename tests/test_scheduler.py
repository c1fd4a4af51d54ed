"""The scheduler: --schedule's timetable, catch-up, sleeps, signals and time zones; and --cron.

In-process tests drive ``run_scheduler`` through simulated days on a fake clock passed in: it
stands still, and a fake sleep moves it on by exactly what the scheduler asked for, so a week
passes in a fraction of a second while the timetable, the backup folder and SQLite stay real.
The computer sleeping through 03:00 is a jump of the clock inside one of those sleeps, as a
real suspend looks to a process whose monotonic sleep does not count it.

Process tests start ``--schedule`` for real and stop it with real signals; the cron tests run the
printed crontab line with ``/bin/sh`` the way cron would.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Callable, Optional

import pytest
import pytz
from conftest import App, database_held, integrity, let_go, make_app, make_db, read_invariant

from database_backup_scheduler import (
    LOCK_FILE_NAME,
    TEMP_PREFIX,
    BackupError,
    Config,
    ExitCode,
    StopFlag,
    build_config,
    build_parser,
    format_backup_name,
    load_timezone,
    render_cron_lines,
    run_backups,
    run_scheduler,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals, tzset, /bin/sh")

# Generous limits for the process tests: a slow CI machine must not make them flaky.
STARTUP_TIMEOUT_S = 60.0
STOP_WITHIN_S = 5.0


# ======================================================================================
# Helpers: configs, backups, simulated days
# ======================================================================================


def schedule_config(app_root: Path, *flags: str) -> Config:
    """The Config that ``--schedule FLAGS`` builds for an app rooted at ``app_root``."""
    args = build_parser().parse_args(["--schedule", *flags])
    return build_config(args, app_root=app_root, cwd=app_root)


def make_backup(config: Config, name: str, taken_at: dt.datetime) -> Path:
    """A real SQLite backup of database ``name`` named as taken at local time ``taken_at``."""
    path = config.backup_dir / format_backup_name(name, taken_at)
    return make_db(path, rows=3, journal_mode="delete")


class FakeClock:
    """A clock that stands still until moved; it reads as aware local time, as the real one.

    It keeps an instant (UTC), so moving it across a daylight-saving change moves the local
    wall clock as a real one would.
    """

    def __init__(self, start: dt.datetime) -> None:
        self.instant = start.astimezone(dt.timezone.utc)  # a naive start is local time

    def __call__(self) -> dt.datetime:
        return self.instant.astimezone()

    def local(self) -> dt.datetime:
        """The naive local time, as backups are named."""
        return self().replace(tzinfo=None)

    def shift(self, by: float | dt.timedelta) -> None:
        self.instant += by if isinstance(by, dt.timedelta) else dt.timedelta(seconds=by)

    def move_to(self, moment: dt.datetime) -> None:
        self.instant = moment.astimezone(dt.timezone.utc)


@dataclasses.dataclass
class Simulation:
    """What a simulated stretch of time showed: runs, requested sleeps, and what was printed."""

    calls: list[dt.datetime] = dataclasses.field(default_factory=list)
    triggers: list[str] = dataclasses.field(default_factory=list)
    sleeps: list[float] = dataclasses.field(default_factory=list)
    said: list[str] = dataclasses.field(default_factory=list)
    events: list[str] = dataclasses.field(default_factory=list)

    @property
    def next_backups(self) -> list[str]:
        """The times of the "Next backup: ..." lines, in order."""
        return [
            line[len("Next backup: ") :].split(" (in ")[0]
            for line in self.said
            if line.startswith("Next backup: ")
        ]


def simulate(
    config: Config,
    *,
    start: dt.datetime,
    until: dt.datetime,
    work: Optional[Callable[[str, FakeClock], None]] = None,
    work_takes: Optional[dt.timedelta] = None,
    suspend: Optional[tuple[dt.datetime, dt.datetime]] = None,
) -> Simulation:
    """Run the scheduler on a simulated clock from ``start`` (naive local) until ``until``.

    The job records the simulated local time it is called at, then does ``work(trigger, clock)``
    (e.g. a real run on that clock) and lets ``work_takes`` pass. The fake sleep moves the clock
    on by the requested seconds; ``suspend=(asleep_at, wakes_at)`` makes the first sleep that
    reaches ``asleep_at`` end at ``wakes_at`` instead, like a computer suspended in the middle
    of the wait.
    """
    sim = Simulation()
    stop = StopFlag()
    clock = FakeClock(start)
    pending_suspend = suspend

    def job(trigger: str) -> None:
        now = clock.local()
        sim.calls.append(now)
        sim.triggers.append(trigger)
        sim.events.append(f"run {now:%Y-%m-%d %H:%M:%S}")
        if work is not None:
            work(trigger, clock)
        if work_takes is not None:
            clock.shift(work_takes)

    def fake_sleep(seconds: float) -> None:
        nonlocal pending_suspend
        sim.sleeps.append(seconds)
        clock.shift(seconds)
        if pending_suspend is not None and clock.local() >= pending_suspend[0]:
            clock.move_to(pending_suspend[1])
            pending_suspend = None
        if clock.local() >= until:
            stop.request()

    def say(text: str) -> None:
        sim.said.append(text)
        sim.events.append(text)

    run_scheduler(config, job, stop=stop, say=say, clock=clock, sleep=fake_sleep)
    return sim


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, *, month: int = 1) -> dt.datetime:
    """A naive local time in 2025 (January by default: no DST change anywhere near it)."""
    return dt.datetime(2025, month, day, hour, minute, second)


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    """An app root with the main database in ``instance/`` and no backups yet."""
    root = tmp_path / "app"
    make_db(root / "instance" / "pet_painting.db", rows=20)
    return root


@contextlib.contextmanager
def computer_zone(zone: str) -> Iterator[None]:
    """Make this process's local time zone ``zone`` (POSIX ``TZ`` + tzset), then restore it."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX-only")
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.fixture
def utc_computer() -> Iterator[None]:
    """The computer's local time zone is UTC during the test."""
    with computer_zone("UTC"):
        yield


# ======================================================================================
# Timetable
# ======================================================================================


def test_without_at_backs_up_every_day_at_0300_and_not_before(app_root: Path) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(5, 23))

    sim = simulate(config, start=at(6), until=at(9))

    assert sim.calls == [at(6, 3), at(7, 3), at(8, 3)]
    assert sim.triggers == ["schedule"] * 3


def test_each_at_time_fires_every_day(app_root: Path) -> None:
    config = schedule_config(app_root, "--at", "03:00", "--at", "14:30:15")
    make_backup(config, "pet_painting.db", at(5, 23))

    sim = simulate(config, start=at(6), until=at(8))

    assert sim.calls == [at(6, 3), at(6, 14, 30, 15), at(7, 3), at(7, 14, 30, 15)]


def test_sleeps_toward_the_next_run_in_waits_of_at_most_60_s(app_root: Path) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(5, 23))

    sim = simulate(config, start=at(6, 2, 58, 30), until=at(9))

    # 90 s before 03:00: one capped wait, then exactly the rest; the clock lands on 03:00:00.
    assert sim.sleeps[:2] == [60.0, 30.0]
    assert sim.calls[0] == at(6, 3)
    assert all(1.0 <= seconds <= 60.0 for seconds in sim.sleeps)
    # Waking once a minute over ~2.9 days, not once a second (that would be ~250,000 wakes).
    span = (at(9) - at(6, 2, 58, 30)).total_seconds()
    assert len(sim.sleeps) <= span / 60 + 2


def test_next_run_is_printed_after_start_and_after_each_run(app_root: Path) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(5, 23))

    sim = simulate(config, start=at(6), until=at(8, 12))

    assert sim.events == [
        "Scheduler started: backups daily at 03:00. Stop with Ctrl+C.",
        sim.said[1],
        "run 2025-01-06 03:00:00",
        sim.said[2],
        "run 2025-01-07 03:00:00",
        sim.said[3],
        "run 2025-01-08 03:00:00",
        sim.said[4],
    ]
    assert sim.next_backups == [
        "2025-01-06 03:00:00",
        "2025-01-07 03:00:00",
        "2025-01-08 03:00:00",
        "2025-01-09 03:00:00",
    ]


# ======================================================================================
# Catch-up on start
# ======================================================================================


def test_catch_up_backs_up_at_once_when_there_is_no_backup(app_root: Path) -> None:
    config = schedule_config(app_root)

    sim = simulate(config, start=at(6, 10), until=at(8))

    assert sim.calls == [at(6, 10), at(7, 3)]
    assert "No backup from the last 24 hours: backing up now." in sim.said


def test_catch_up_backs_up_at_once_when_the_newest_backup_is_older_than_a_day(
    app_root: Path,
) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(4, 8))
    make_backup(config, "pet_painting.db", at(5, 9))  # 25 h before the start

    sim = simulate(config, start=at(6, 10), until=at(8))

    assert sim.calls == [at(6, 10), at(7, 3)]


def test_no_catch_up_when_a_backup_is_younger_than_a_day(app_root: Path) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(5, 11))  # 23 h before the start

    sim = simulate(config, start=at(6, 10), until=at(8))

    assert sim.calls == [at(7, 3)]
    assert not any("backing up now" in line for line in sim.said)


def test_catch_up_when_any_database_lacks_a_fresh_backup(app_root: Path) -> None:
    make_db(app_root / "instance" / "second.db", rows=5)
    config = schedule_config(
        app_root, "--db", "instance/pet_painting.db", "--db", "instance/second.db"
    )
    make_backup(config, "pet_painting.db", at(6, 9))
    make_backup(config, "second.db", at(3, 3))

    sim = simulate(config, start=at(6, 10), until=at(7))

    assert sim.calls == [at(6, 10)]


def test_missing_optional_database_needs_no_backup_for_catch_up(app_root: Path) -> None:
    config = schedule_config(app_root)  # the app-root pet_painting.db is optional and absent
    assert not config.databases[1].path.exists()
    make_backup(config, "pet_painting.db", at(6, 9))

    sim = simulate(config, start=at(6, 10), until=at(7))

    assert sim.calls == []


def test_real_runs_name_backups_so_that_a_restart_next_day_needs_no_catch_up(
    app_root: Path,
) -> None:
    config = schedule_config(app_root)

    def back_up(trigger: str, clock: FakeClock) -> None:
        run_backups(config, trigger=trigger, clock=clock)

    first = simulate(config, start=at(6, 10), until=at(7, 12), work=back_up)
    restarted = simulate(config, start=at(7, 12), until=at(8, 12), work=back_up)

    assert first.calls == [at(6, 10), at(7, 3)]
    assert restarted.calls == [at(8, 3)]


def test_a_run_time_passed_during_the_catch_up_run_is_not_run_again_at_once(
    app_root: Path,
) -> None:
    config = schedule_config(app_root)

    # Started at 02:59:50 with no backup: the catch-up run takes 30 s, past 03:00.
    sim = simulate(
        config, start=at(6, 2, 59, 50), until=at(7, 12), work_takes=dt.timedelta(seconds=30)
    )

    assert sim.calls == [at(6, 2, 59, 50), at(7, 3)]


# ======================================================================================
# A computer that slept through the run time
# ======================================================================================


def test_wake_after_days_asleep_backs_up_once_then_follows_the_timetable(app_root: Path) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(5, 23))

    sim = simulate(config, start=at(6), until=at(13), suspend=(at(6, 12), at(10, 10)))

    assert sim.calls == [at(6, 3), at(10, 10), at(11, 3), at(12, 3)]
    assert sim.next_backups[-1] == "2025-01-13 03:00:00"


def test_wake_after_sleeping_through_several_at_times_backs_up_once(app_root: Path) -> None:
    config = schedule_config(app_root, "--at", "03:00", "--at", "15:00")
    make_backup(config, "pet_painting.db", at(5, 23))

    # Asleep from 04:00 on the 6th until 10:00 on the 9th: five run times missed.
    sim = simulate(config, start=at(6), until=at(10, 12), suspend=(at(6, 4), at(9, 10)))

    assert sim.calls == [at(6, 3), at(9, 10), at(9, 15), at(10, 3)]


def test_sleep_that_misses_no_run_time_changes_nothing(app_root: Path) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(5, 23))

    sim = simulate(config, start=at(6), until=at(8), suspend=(at(6, 4), at(6, 20)))

    assert sim.calls == [at(6, 3), at(7, 3)]


# ======================================================================================
# Failing runs
# ======================================================================================


def test_failed_real_run_is_logged_and_the_next_run_comes_at_its_time(app_root: Path) -> None:
    config = schedule_config(app_root, "--db", "missing.db=instance/missing.db")

    def back_up(trigger: str, clock: FakeClock) -> None:
        run_backups(config, trigger=trigger, clock=clock)

    sim = simulate(config, start=at(6, 10), until=at(8, 12), work=back_up)

    # The catch-up at the start fails; nothing refires until 03:00 the next day.
    assert sim.calls == [at(6, 10), at(7, 3), at(8, 3)]
    runs = json.loads(config.log_file.read_text(encoding="utf-8"))["runs"]
    assert [run["status"] for run in runs] == ["failed"] * 3
    assert [run["trigger"] for run in runs] == ["schedule"] * 3
    started = [dt.datetime.fromisoformat(run["started_at"]).replace(tzinfo=None) for run in runs]
    assert started == sim.calls
    assert all("does not exist" in run["results"][0]["error"] for run in runs)
    assert sim.next_backups == ["2025-01-07 03:00:00", "2025-01-08 03:00:00", "2025-01-09 03:00:00"]


# ======================================================================================
# Stopping
# ======================================================================================


def test_stop_requested_before_a_sleep_skips_the_sleep() -> None:
    stop = StopFlag()
    stop.request()  # e.g. SIGTERM during a backup: only noted, the backup goes on

    started = time.monotonic()
    stop.sleep(30)

    assert stop.requested
    assert time.monotonic() - started < 1


@posix_only
def test_signal_during_a_sleep_ends_it_at_once() -> None:
    stop = StopFlag()
    previous = signal.signal(signal.SIGALRM, stop.request)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        started = time.monotonic()
        stop.sleep(30)
        slept = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert stop.requested
    assert slept < 5


def test_stop_requested_in_a_sleep_ends_the_scheduler_before_the_next_run(app_root: Path) -> None:
    config = schedule_config(app_root)
    make_backup(config, "pet_painting.db", at(5, 23))
    calls: list[str] = []
    stop = StopFlag()
    clock = FakeClock(at(6, 2, 59))

    def sleep(seconds: float) -> None:
        clock.shift(seconds)  # now 03:00: the run is due, but a stop came first
        stop.request()

    run_scheduler(config, calls.append, stop=stop, say=lambda text: None, clock=clock, sleep=sleep)

    assert calls == []


# ======================================================================================
# Time zones
# ======================================================================================


def local_times_in(zone: str, naive_utc: list[dt.datetime]) -> list[dt.datetime]:
    """Naive UTC times as naive wall-clock times in ``zone``."""
    tz = pytz.timezone(zone)
    return [pytz.utc.localize(moment).astimezone(tz).replace(tzinfo=None) for moment in naive_utc]


@posix_only
def test_timezone_shanghai_fires_at_0300_there_which_is_1900_utc(
    app_root: Path, utc_computer: None
) -> None:
    config = schedule_config(app_root, "--timezone", "Asia/Shanghai")
    make_backup(config, "pet_painting.db", at(5, 23))

    sim = simulate(config, start=at(6), until=at(9))  # 08:00 in Shanghai

    assert sim.calls == [at(6, 19), at(7, 19), at(8, 19)]
    assert sim.said[0].startswith("Scheduler started: backups daily at 03:00 Asia/Shanghai.")


@posix_only
def test_timezone_run_time_follows_a_dst_change_in_that_zone(
    app_root: Path, utc_computer: None
) -> None:
    config = schedule_config(app_root, "--timezone", "America/New_York")
    make_backup(config, "pet_painting.db", at(6, 23, month=3))

    # New York moves from EST (UTC-5) to EDT (UTC-4) on 2025-03-09.
    sim = simulate(config, start=at(7, month=3), until=at(12, month=3))

    assert sim.calls == [
        at(7, 8, month=3),
        at(8, 8, month=3),
        at(9, 7, month=3),
        at(10, 7, month=3),
        at(11, 7, month=3),
    ]
    assert {moment.time() for moment in local_times_in("America/New_York", sim.calls)} == {
        dt.time(3)
    }


@posix_only
def test_timezone_run_time_in_the_dst_gap_still_runs_once_a_day(
    app_root: Path, utc_computer: None
) -> None:
    # 02:30 does not exist in New York on 2025-03-09 (02:00 EST jumps to 03:00 EDT).
    config = schedule_config(app_root, "--timezone", "America/New_York", "--at", "02:30")
    make_backup(config, "pet_painting.db", at(6, 23, month=3))

    sim = simulate(config, start=at(7, month=3), until=at(12, month=3))

    days = collections.Counter(m.date() for m in local_times_in("America/New_York", sim.calls))
    assert days == {dt.date(2025, 3, day): 1 for day in range(7, 12)}, sim.calls


@posix_only
def test_timezone_run_time_is_back_at_the_at_time_the_day_after_a_dst_gap(
    app_root: Path, utc_computer: None
) -> None:
    config = schedule_config(app_root, "--timezone", "America/New_York", "--at", "02:30")
    make_backup(config, "pet_painting.db", at(6, 23, month=3))

    sim = simulate(config, start=at(7, month=3), until=at(12, month=3))

    wall_clock = local_times_in("America/New_York", sim.calls)
    gap_day = [m for m in wall_clock if m.date() == dt.date(2025, 3, 9)]
    assert [m for m in wall_clock if m.date() != dt.date(2025, 3, 9)] == [
        dt.datetime(2025, 3, day, 2, 30) for day in (7, 8, 10, 11)
    ]
    # On the gap day itself 02:30 does not exist: the run comes soon after 03:00 instead.
    assert len(gap_day) == 1 and dt.time(3) <= gap_day[0].time() <= dt.time(3, 30)


@posix_only
@pytest.mark.parametrize(
    "start", [at(29, month=10), at(1, 12, month=11)], ids=["days-before", "day-before"]
)
def test_timezone_run_time_in_the_repeated_hour_runs_once_that_day(
    app_root: Path, utc_computer: None, start: dt.datetime
) -> None:
    # 01:30 happens twice in New York on 2025-11-02 (02:00 EDT falls back to 01:00 EST).
    config = schedule_config(app_root, "--timezone", "America/New_York", "--at", "01:30")
    make_backup(config, "pet_painting.db", start - dt.timedelta(hours=1))

    sim = simulate(config, start=start, until=at(5, month=11))

    wall_clock = local_times_in("America/New_York", sim.calls)
    days = collections.Counter(moment.date() for moment in wall_clock)
    assert days[dt.date(2025, 11, 2)] == 1, wall_clock
    assert {moment.time() for moment in wall_clock} == {dt.time(1, 30)}


@posix_only
@pytest.mark.parametrize(
    ("zone", "run_at", "first_day", "month"),
    [
        ("America/New_York", "02:30", 7, 3),  # 02:30 does not exist on 2025-03-09
        ("America/New_York", "01:30", 31, 10),  # 01:30 happens twice on 2025-11-02
        ("Europe/Berlin", "02:30", 28, 3),  # 02:30 does not exist on 2025-03-30
    ],
)
def test_dst_change_of_the_computers_own_zone_still_runs_once_a_day(
    app_root: Path, zone: str, run_at: str, first_day: int, month: int
) -> None:
    start = at(first_day, month=month)
    with computer_zone(zone):
        config = schedule_config(app_root, "--at", run_at)
        make_backup(config, "pet_painting.db", start - dt.timedelta(hours=1))

        sim = simulate(config, start=start, until=start + dt.timedelta(days=5))

    days = collections.Counter(moment.date() for moment in sim.calls)
    assert days == {start.date() + dt.timedelta(days=n): 1 for n in range(5)}, sim.calls


def test_unknown_timezone_is_a_usage_error() -> None:
    with pytest.raises(BackupError) as caught:
        load_timezone("Mars/Olympus_Mons")

    assert caught.value.exit_code == ExitCode.USAGE
    assert "Mars/Olympus_Mons" in caught.value.message


def test_schedule_with_unknown_timezone_exits_2_before_any_backup(app: App) -> None:
    result = app.run("--schedule", "--timezone", "Mars/Olympus_Mons", timeout=60)

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Mars/Olympus_Mons" in result.stderr
    assert app.backups() == []


# ======================================================================================
# The --schedule process and its signals
# ======================================================================================


class SchedulerProcess:
    """A running ``--schedule`` process whose output is read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, found: Callable[[], bool], timeout: float = STARTUP_TIMEOUT_S) -> bool:
        """Poll until ``found()`` or the process ends or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found():
                return True
            if not self.running():
                return found()
            time.sleep(0.02)
        return found()

    def stop(self, signum: int, timeout: float = 120.0) -> tuple[int, float]:
        """Send ``signum``; return (exit code, seconds until the process ended)."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        elapsed = time.monotonic() - started
        for reader in self._readers:
            reader.join(timeout=10)
        return code, elapsed

    def describe(self) -> str:
        return f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@pytest.fixture
def start_scheduler(app: App) -> Iterator[Callable[..., SchedulerProcess]]:
    """Start ``--schedule`` processes in ``app``; any still running at teardown is killed."""
    started: list[SchedulerProcess] = []

    def start(*args: str) -> SchedulerProcess:
        process = SchedulerProcess(app.popen("--schedule", "--at", far_from_now(), *args))
        started.append(process)
        return process

    yield start
    for process in started:
        if process.running():
            process.proc.kill()
        process.proc.wait(timeout=30)


def far_from_now() -> str:
    """An --at time 12 hours away, so that only the catch-up run happens during a test."""
    return f"{dt.datetime.now() + dt.timedelta(hours=12):%H:%M}"


def run_log(app: App) -> list[dict]:
    """The backup runs logged (a scheduled run's restore drill is logged as its own entry)."""
    if not app.log_file.exists():
        return []
    runs = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"]
    return [run for run in runs if run.get("kind", "backup") == "backup"]


def temp_files(folder: Path) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]
    except FileNotFoundError:
        return []


@posix_only
def test_schedule_with_no_backups_backs_up_within_seconds_and_keeps_running(
    app: App, start_scheduler: Callable[..., SchedulerProcess]
) -> None:
    process = start_scheduler()

    assert process.wait_for(lambda: len(app.backups("pet_painting.db")) == 1), process.describe()
    assert process.wait_for(lambda: "Next backup:" in process.stdout), process.describe()
    time.sleep(2)

    assert process.running(), process.describe()
    assert len(app.backups("pet_painting.db")) == 1
    assert [run["trigger"] for run in run_log(app)] == ["schedule"]
    # The first scheduled run also proves the restore: no drill has passed yet.
    entries = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"]
    assert [(e.get("kind", "backup"), e["status"]) for e in entries] == [
        ("backup", "ok"),
        ("drill", "ok"),
    ]
    assert "Restore drill passed" in process.stdout


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_the_waiting_scheduler_at_once_with_exit_0(
    app: App, start_scheduler: Callable[..., SchedulerProcess], signum: int
) -> None:
    process = start_scheduler()
    assert process.wait_for(lambda: "Next backup:" in process.stdout), process.describe()
    time.sleep(0.5)  # well inside its sleep of up to 60 s

    code, seconds = process.stop(signum, timeout=30)

    assert code == ExitCode.OK, process.describe()
    assert seconds < STOP_WITHIN_S
    assert "Scheduler stopped" in process.stdout
    assert "Traceback" not in process.stderr


@posix_only
def test_failed_run_is_reported_and_logged_and_the_scheduler_keeps_running(
    app: App, start_scheduler: Callable[..., SchedulerProcess]
) -> None:
    process = start_scheduler("--db", "missing.db=instance/missing.db")

    assert process.wait_for(lambda: "Next backup:" in process.stdout), process.describe()
    time.sleep(2)

    assert process.running(), process.describe()
    assert "does not exist" in process.stdout
    assert [run["status"] for run in run_log(app)] == ["failed"]  # logged once, no refire
    code, seconds = process.stop(signal.SIGTERM, timeout=30)
    assert code == ExitCode.OK
    assert seconds < STOP_WITHIN_S


@posix_only
def test_run_that_cannot_take_the_run_lock_is_reported_and_the_scheduler_keeps_running(
    app: App, start_scheduler: Callable[..., SchedulerProcess]
) -> None:
    import fcntl

    app.backup_dir.mkdir(parents=True)
    with open(app.backup_dir / LOCK_FILE_NAME, "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        process = start_scheduler("--lock-timeout", "0.5")

        assert process.wait_for(lambda: "Next backup:" in process.stdout), process.describe()
        time.sleep(2)

        assert process.running(), process.describe()
        assert "another run holds the lock" in process.stderr
        assert app.backups() == []
        code, _ = process.stop(signal.SIGTERM, timeout=30)
    assert code == ExitCode.OK, process.describe()
    assert process.stdout.count("Next backup:") == 1


ANSWER_WITHIN_S = 2.0


@pytest.fixture
def held_database(app: App) -> Iterator[subprocess.Popen[str]]:
    """``instance/held.db`` (rollback journal) locked by another process until ``let_go``."""
    database = make_db(app.root / "instance" / "held.db", rows=20, journal_mode="delete")
    with database_held(database) as holder:
        yield holder


@pytest.fixture
def busy_scheduler(
    app: App,
    start_scheduler: Callable[..., SchedulerProcess],
    held_database: subprocess.Popen[str],
) -> SchedulerProcess:
    """--schedule catching up at once on the held database: its backup waits for the lock."""
    process = start_scheduler("--db", "held.db=instance/held.db", "--busy-timeout", "30")
    assert process.wait_for(lambda: "backing up now" in process.stdout), process.describe()
    assert process.wait_for(lambda: bool(temp_files(app.backup_dir))), process.describe()
    time.sleep(0.5)  # well inside its wait for the lock
    assert process.running() and app.backups("held.db") == [], process.describe()
    return process


STOPPING = "stopping once the backup in progress has finished; press Ctrl+C again to stop now"


def ask_to_stop_during_the_backup(process: SchedulerProcess, signum: int) -> bool:
    """Send ``signum`` to a scheduler busy with a backup; whether it answered at once."""
    process.proc.send_signal(signum)
    return process.wait_for(lambda: STOPPING in process.stderr, timeout=ANSWER_WITHIN_S)


@posix_only
def test_ctrl_c_during_a_backup_says_at_once_that_the_scheduler_stops_after_it(
    app: App, busy_scheduler: SchedulerProcess, held_database: subprocess.Popen[str]
) -> None:
    answered = ask_to_stop_during_the_backup(busy_scheduler, signal.SIGINT)
    still_busy = busy_scheduler.running() and app.backups("held.db") == []
    let_go(held_database)

    assert answered, busy_scheduler.describe()
    assert still_busy, busy_scheduler.describe()


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_a_backup_lets_it_finish_then_stops_with_exit_0(
    app: App, busy_scheduler: SchedulerProcess, held_database: subprocess.Popen[str], signum: int
) -> None:
    answered = ask_to_stop_during_the_backup(busy_scheduler, signum)
    let_go(held_database)  # the backup in progress can go on now
    code = busy_scheduler.proc.wait(timeout=60)

    assert answered, busy_scheduler.describe()
    assert code == ExitCode.OK, busy_scheduler.describe()
    assert busy_scheduler.wait_for(lambda: "Scheduler stopped." in busy_scheduler.stdout), (
        busy_scheduler.describe()
    )
    [backup] = app.backups("held.db")
    assert integrity(backup) == "ok"
    assert read_invariant(backup) == read_invariant(app.root / "instance" / "held.db")
    assert temp_files(app.backup_dir) == []
    runs = run_log(app)
    assert [(run["status"], run["trigger"]) for run in runs] == [("ok", "schedule")]
    assert runs[0]["results"][0]["backup"] == str(backup)


@posix_only
def test_second_ctrl_c_during_a_backup_stops_it_at_once_with_exit_130(
    app: App, busy_scheduler: SchedulerProcess, held_database: subprocess.Popen[str]
) -> None:
    answered = ask_to_stop_during_the_backup(busy_scheduler, signal.SIGINT)
    try:
        code, seconds = busy_scheduler.stop(signal.SIGINT, timeout=ANSWER_WITHIN_S + 3)
    except subprocess.TimeoutExpired:
        code, seconds = None, None
    let_go(held_database)
    if code is None:
        code = busy_scheduler.proc.wait(timeout=60)

    assert answered, busy_scheduler.describe()
    assert seconds is not None, (
        f"still running {ANSWER_WITHIN_S + 3} s later\n{busy_scheduler.describe()}"
    )
    assert code == 130, busy_scheduler.describe()
    assert busy_scheduler.wait_for(lambda: "interrupted" in busy_scheduler.stderr), (
        busy_scheduler.describe()
    )
    assert temp_files(app.backup_dir) == []
    assert app.backups("held.db") == []


# ======================================================================================
# --cron
# ======================================================================================


def cron_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line[:1].isdigit()]


def cron_command(line: str) -> list[str]:
    """The command of a crontab line as the shell gets it: cron turns ``\\%`` into ``%``."""
    command = line.split(" ", 5)[5]
    return shlex.split(command.replace("\\%", "%"))


def test_cron_prints_a_line_per_at_time_with_absolute_paths(app: App) -> None:
    result = app.run("--cron", "--at", "03:00", "--at", "14:30", timeout=60)

    assert result.returncode == ExitCode.OK, result.stderr
    lines = cron_lines(result.stdout)
    assert [line.split(" * * * ")[0] for line in lines] == ["0 3", "30 14"]
    root = app.root.resolve()
    for line in lines:
        assert cron_command(line) == [
            "cd",
            str(root),
            "&&",
            sys.executable,
            str(app.script.resolve()),
            "--run",
            "--lang",
            "en",  # the language of who made the line (the tests run in English)
            "--trigger",
            "cron",
            ">>",
            str(root / "database_backup_cron.log"),
            "2>&1",
        ]
    assert result.stdout.count("| crontab -") == 2


@pytest.mark.parametrize("action", ["--cron", "--windows-task"])
def test_task_refuses_to_write_a_webhook_url_given_as_a_flag(app: App, action: str) -> None:
    secret = "https://oapi.dingtalk.com/robot/send?access_token=SECRET"

    result = app.run(action, "--notify-url", secret, timeout=60)

    assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    assert "config" in result.stderr
    assert not (app.root / "run_database_backup.bat").exists()


def test_cron_line_passes_the_config_file_by_absolute_path(app: App, tmp_path: Path) -> None:
    settings = tmp_path / "settings dir" / "backup config.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"keep_days": 7}), encoding="utf-8")

    result = app.run("--cron", "--config", "backup config.json", cwd=settings.parent, timeout=60)

    assert result.returncode == ExitCode.OK, result.stderr
    (line,) = cron_lines(result.stdout)
    command = cron_command(line)
    assert command[5:8] == ["--run", "--config", str(settings.resolve())]


@pytest.mark.parametrize("folder", ["my app 100%", "it's 50% 'quoted'"])
def test_cron_escapes_percent_and_quotes_paths_with_spaces(tmp_path: Path, folder: str) -> None:
    root = tmp_path / folder
    config = schedule_config(root, "--at", "03:00", "--at", "14:30")
    script = root / "sub dir" / "database_backup_scheduler.py"

    lines = render_cron_lines(config, python="/opt/py 3%/bin/python", script=script)

    assert len(lines) == 2
    for line in lines:
        assert "%" not in line.replace("\\%", "")
        command = cron_command(line)
        assert command[:5] == ["cd", str(root), "&&", "/opt/py 3%/bin/python", str(script)]
        assert command[-3:] == [">>", str(root / "database_backup_cron.log"), "2>&1"]


@posix_only
@pytest.mark.parametrize("folder", ["app", "my app 100%"])
def test_cron_command_backs_up_when_run_by_the_shell_from_any_folder(
    tmp_path: Path, folder: str
) -> None:
    target = make_app(tmp_path / folder, rows=20)
    result = target.run("--cron", timeout=60)
    (line,) = cron_lines(result.stdout)
    command = line.split(" ", 5)[5].replace("\\%", "%")  # what cron hands to /bin/sh

    ran = subprocess.run(["/bin/sh", "-c", command], cwd="/", timeout=120)

    assert ran.returncode == 0
    assert len(target.backups("pet_painting.db")) == 1
    cron_log = target.root / "database_backup_cron.log"
    assert "Backup finished" in cron_log.read_text(encoding="utf-8")
    assert [run["trigger"] for run in run_log(target)] == ["cron"]


@posix_only
def test_cron_line_backs_up_the_databases_and_folder_given_with_the_command(
    app: App, tmp_path: Path
) -> None:
    other = make_db(tmp_path / "data" / "other.db", rows=7)
    elsewhere = tmp_path / "elsewhere"
    result = app.run(
        "--cron", "--db", f"other.db={other}", "--backup-dir", str(elsewhere), timeout=60
    )
    (line,) = cron_lines(result.stdout)

    subprocess.run(["/bin/sh", "-c", line.split(" ", 5)[5].replace("\\%", "%")], timeout=120)

    backups = sorted(p.name for p in elsewhere.glob("*.bak")) if elsewhere.exists() else []
    assert len(backups) == 1 and backups[0].startswith("other.db."), (line, backups)


@posix_only
@pytest.mark.parametrize("folder", ["my app 100%", "nightly\\new"])
def test_cron_install_line_adds_the_crontab_line_unchanged(tmp_path: Path, folder: str) -> None:
    target = make_app(tmp_path / folder, rows=20)
    result = target.run("--cron", timeout=60)
    (line,) = cron_lines(result.stdout)
    install = [x.strip() for x in result.stdout.splitlines() if x.strip().startswith("(crontab")]
    # A stand-in for crontab(1), which must not touch this machine's real crontab.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    table = tmp_path / "crontab.txt"
    table.write_text("# existing entry\n", encoding="utf-8")
    fake = bin_dir / "crontab"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = "-l" ]; then cat "$TABLE"; exit 0; fi\n'
        'cat > "$TABLE.new" && mv "$TABLE.new" "$TABLE"\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TABLE": str(table)}

    subprocess.run(["/bin/sh", "-c", install[0]], env=env, check=True, timeout=60)

    assert table.read_text(encoding="utf-8") == f"# existing entry\n{line}\n"
