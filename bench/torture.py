#!/usr/bin/env python3
"""Reliability torture runs for database_backup_scheduler.py, in bulk; prints a markdown table.

    python bench/torture.py                                   # the defaults below
    python bench/torture.py --crash-trials 100 --load-trials 20 --fault-trials 20 --size-mb 50
    python bench/torture.py --only crash --crash-trials 10    # one family: load, crash, fault

The scenarios of tests/test_reliability.py, many more times, on a bigger database:

- load: backups while two other processes commit continuously (WAL, then rollback journal;
  the last quarter of the trials with one writer); every backup must pass integrity_check
  and the invariant (totals == SUM/COUNT of items). Figures: the backup's duration as the
  run log records it, and the writers' worst commit latency while the run was in progress.
  Two writers also wait for each other, so the lone writer's figure is what a backup costs
  the app: in rollback-journal mode, about the time of the copy (given per 100 MB).
- crash: kill -9 of --run after a random delay in [0, typical run time], then (as many as
  --targeted-trials) as soon as each phase is seen: copy, verify/hash/fsync, rename or link,
  pruning, log write. Afterwards no file with a backup's name fails --verify, no earlier
  backup is lost or changed, the log parses and keeps every earlier run, and the next run
  succeeds and leaves no temporary file. The table says where the kills landed, read from
  what each killed run left on disk.
- faults: a disk that fills, a read-only or immutable backup folder, a log that cannot be
  written, a source that vanishes or is replaced mid-run, a lock holder killed. Each must
  fail with exit 1 (2 for a refused setting) and a message naming the cause, keep the
  earlier backups and the log, and be followed by a clean run once the fault is gone.

The tmpfs, bind-mount and chattr cases need root on Linux; elsewhere their rows say
"skipped" and why. Needs no pytest. Scratch files go to --scratch (default: a temporary
folder) and are removed afterwards, except those of failed trials when --keep is given.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "database_backup_scheduler.py"
sys.path.insert(0, str(REPO))

import database_backup_scheduler as dbs  # noqa: E402

KEEP_DAYS = 30
SEEDED_RUNS = 900  # of the default 1000 kept: writing the log takes measurable time
DB_NAME = "app.db"

# ======================================================================================
# Databases and files
# ======================================================================================


def make_db(path: Path, megabytes: float, journal_mode: str = "wal", payload: int = 4000) -> Path:
    """The tests' database (conftest.make_db): ``items``, and a ``totals`` row equal to their
    SUM and COUNT, about ``megabytes`` MB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = max(1, int(megabytes * 1e6 / (payload + 100)))
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
        conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, value INTEGER, pad BLOB)")
        conn.execute("CREATE TABLE totals(id INTEGER PRIMARY KEY, total INTEGER, count INTEGER)")
        with conn:
            conn.execute(
                "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
                "INSERT INTO items(value, pad) SELECT x, randomblob(?) FROM n",
                (rows - 1, payload),
            )
            conn.execute("INSERT INTO totals SELECT 1, SUM(value), COUNT(*) FROM items")
    finally:
        conn.close()
    return path


def read_invariant(path: Path) -> tuple[int, int, int, int]:
    """(total, count, SUM(value), COUNT(*)), opened read-only and immutable."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        total, count = conn.execute("SELECT total, count FROM totals WHERE id = 1").fetchone()
        summed, counted = conn.execute(
            "SELECT COALESCE(SUM(value), 0), COUNT(*) FROM items"
        ).fetchone()
    finally:
        conn.close()
    return total, count, summed, counted


def integrity(path: Path) -> str:
    """PRAGMA integrity_check of a file opened read-only and immutable."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def commit_one_change(path: Path) -> None:
    """One committed write that keeps the invariant, so that the next backup is a new copy."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            conn.execute("INSERT INTO items(value, pad) VALUES (7, randomblob(100))")
            conn.execute("UPDATE totals SET total = total + 7, count = count + 1 WHERE id = 1")
    finally:
        conn.close()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def backup_files(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file with a backup's name in ``folder``, by name."""
    if not folder.is_dir():
        return {}
    return {
        entry.name: sha256(Path(entry.path))
        for entry in os.scandir(folder)
        if dbs.is_backup_name(entry.name) and entry.is_file(follow_symlinks=False)
    }


def temp_files(*folders: Path) -> list[str]:
    """Temporary files left: ``.dbbackup-*`` and a run log's ``.<log>.<hex>.tmp``."""
    left = []
    for folder in folders:
        if folder.is_dir():
            left += [
                name
                for name in sorted(os.listdir(folder))
                if name.startswith(dbs.TEMP_PREFIX) or (name.startswith(".") and ".tmp" in name)
            ]
    return left


def is_expired(filename: str, now: dt.datetime) -> bool:
    parsed = dbs.parse_backup_name(filename)
    return parsed is not None and parsed.taken_at < now - dt.timedelta(days=KEEP_DAYS)


def seed_backups(
    folder: Path, name: str, small: Path, now: dt.datetime, expired: int = 30
) -> dict[str, str]:
    """Earlier backups of ``name``: 3 from the last days (kept) and ``expired`` to prune."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = small.read_bytes()
    ages = [dt.timedelta(days=d, hours=1) for d in (1, 2, 3)]
    ages += [dt.timedelta(days=KEEP_DAYS + 5 + d) for d in range(expired)]
    for age in ages:
        target = folder / dbs.format_backup_name(name, now - age)
        target.write_bytes(data)
        target.chmod(0o600)
    return backup_files(folder)


def seed_log(path: Path, recorded: dict[Path, str] | None = None) -> list[dict[str, Any]]:
    """A run log of SEEDED_RUNS earlier runs; the last records ``recorded`` (path -> SHA-256)."""
    runs = []
    for i in range(SEEDED_RUNS):
        started = dt.datetime(2020, 1, 1, 3, 0, tzinfo=dt.timezone.utc) + dt.timedelta(days=i)
        results: list[dict[str, Any]] = [
            {
                "database": "old.db",
                "source": "/nowhere/old.db",
                "status": "ok",
                "backup": f"/nowhere/old.db.{started:%Y%m%d_%H%M%S}.bak",
                "size_bytes": 8192,
                "sha256": "0" * 64,
                "duration_s": 0.01,
            }
        ]
        if i == SEEDED_RUNS - 1 and recorded:
            results = [
                {
                    "database": DB_NAME,
                    "source": "",
                    "status": "ok",
                    "backup": str(backup),
                    "size_bytes": backup.stat().st_size,
                    "sha256": digest,
                    "content_sha256": digest,
                    "duration_s": 0.5,
                }
                for backup, digest in recorded.items()
            ]
        runs.append(
            {
                "started_at": started.isoformat(),
                "finished_at": started.isoformat(),
                "trigger": "schedule",
                "status": "ok",
                "results": results,
                "pruned": [],
                "warnings": [],
            }
        )
    path.write_text(json.dumps({"version": 1, "runs": runs}, indent=2), encoding="utf-8")
    return runs


def read_log(path: Path) -> tuple[list[dict[str, Any]] | None, str]:
    """(runs, problem): the runs of a log that parses, or (None, why not)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"the log does not parse: {exc}"
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        return None, "the log has no runs list"
    return data["runs"], ""


def check_log(path: Path, earlier: Sequence[dict[str, Any]]) -> list[str]:
    """The log parses and still holds every earlier run, in order."""
    runs, problem = read_log(path)
    if runs is None:
        return [problem]
    if runs[: len(earlier)] != list(earlier):
        return [f"the log lost or changed earlier runs ({len(runs)} runs now)"]
    return []


def check_backups(
    folder: Path,
    before: dict[str, str],
    *,
    now: dt.datetime,
    log: Path,
    invariant: tuple[int, int, int, int] | None,
    failed: Sequence[str] = (),
) -> list[str]:
    """No file with a backup's name fails --verify; no earlier backup is lost or changed.

    New backups must hold ``invariant`` (the source's). Expired backups may be pruned,
    except those of the databases in ``failed``: a failed database is never pruned.
    """
    problems = []
    runs, _ = read_log(log)
    recorded = dbs.recorded_backups({"runs": runs or []})
    for entry in sorted(os.scandir(folder), key=lambda e: e.name) if folder.is_dir() else []:
        if not dbs.is_backup_name(entry.name):
            continue
        path = Path(entry.path)
        expected = recorded.get(dbs._path_key(path), {}).get("sha256")
        checked = dbs.verify_backup(path, expected=expected)
        if not checked.ok:
            problems.append(f"{entry.name} fails verification: {checked.error}")
        elif entry.name not in before and invariant is not None:
            held = read_invariant(path)
            if held != invariant or held[:2] != held[2:]:
                problems.append(f"{entry.name} holds {held}, the source held {invariant}")
    for name, digest in before.items():
        path = folder / name
        if not os.path.lexists(path):
            parsed = dbs.parse_backup_name(name)
            if not is_expired(name, now) or (parsed and parsed.name in failed):
                problems.append(f"earlier backup {name} was lost")
        elif sha256(path) != digest:
            problems.append(f"earlier backup {name} was changed")
    return problems


# ======================================================================================
# Processes, mounts and flags
# ======================================================================================


Outcome = tuple[list[str], str]  # a trial's problems, and what the CLI said


class Skip(Exception):
    """This scenario cannot run here (no root, no tmpfs, no chattr)."""


def tool_command(tool: Path, *args: object) -> list[str]:
    return [sys.executable, str(tool), *(str(a) for a in args)]


def run_tool(tool: Path, *args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; stdout and stderr as text."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        tool_command(tool, *args),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=timeout,
    )


def start_tool(tool: Path, *args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        tool_command(tool, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], limit: float = 60) -> bool:
    """Poll ``condition`` every millisecond until it holds (True) or ``proc`` ends (False)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.001)
    return False


def copy_started(folder: Path) -> Callable[[], bool]:
    """True once a ``.dbbackup-`` temporary file exists in ``folder``."""

    def started() -> bool:
        try:
            return any(n.startswith(dbs.TEMP_PREFIX) for n in os.listdir(folder))
        except OSError:
            return False

    return started


def _privileged() -> str | None:
    """None when mounts and chattr may work here; else the reason they cannot."""
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root"
    return None


def _must(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise Skip(f"`{' '.join(command)}` failed: {done.stderr.strip() or done.returncode}")


@contextlib.contextmanager
def tmpfs(folder: Path, megabytes: float) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` MB mounted on ``folder`` for the block."""
    reason = _privileged()
    if reason:
        raise Skip(f"mounting a tmpfs {reason}")
    folder.mkdir(parents=True, exist_ok=True)
    _must(["mount", "-t", "tmpfs", "-o", f"size={int(megabytes * 1024)}k", "tmpfs", str(folder)])
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize_tmpfs(folder: Path, megabytes: float) -> None:
    _must(["mount", "-o", f"remount,size={int(megabytes * 1024)}k", str(folder)])


@contextlib.contextmanager
def read_only_bind(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted onto itself read-only for the block."""
    reason = _privileged()
    if reason:
        raise Skip(f"a read-only bind mount {reason}")
    _must(["mount", "--bind", str(folder), str(folder)])
    try:
        _must(["mount", "-o", "remount,ro,bind", str(folder)])
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def set_immutable(path: Path, on: bool) -> None:
    """chattr +i / -i (Linux, root, a file system with the flag)."""
    reason = _privileged()
    if reason or not shutil.which("chattr"):
        raise Skip(f"chattr {reason or 'is not installed'}")
    _must(["chattr", "+i" if on else "-i", str(path)])


# ======================================================================================
# Scenarios
# ======================================================================================


@dataclasses.dataclass
class Bench:
    """The scratch folder, the script copy, and template databases made once."""

    scratch: Path
    tool: Path
    size_mb: float
    templates: dict[str, Path]
    small: Path
    keep: bool = False

    @classmethod
    def create(cls, scratch: Path, size_mb: float, keep: bool) -> Bench:
        app = scratch / "app"
        app.mkdir(parents=True)
        tool = app / SCRIPT.name
        shutil.copy2(SCRIPT, tool)
        templates = {
            mode: make_db(scratch / "templates" / f"{mode}.db", size_mb, mode)
            for mode in ("wal", "delete")
        }
        small = make_db(scratch / "templates" / "small.db", 0.02, "delete", payload=100)
        return cls(scratch, tool, size_mb, templates, small, keep)

    def trial_dir(self, scenario: str, number: int) -> Path:
        folder = self.scratch / scenario / f"{number:04d}"
        folder.mkdir(parents=True)
        return folder

    def done(self, folder: Path, problems: list[str]) -> None:
        if not (problems and self.keep):
            shutil.rmtree(folder, ignore_errors=True)


@dataclasses.dataclass
class Row:
    """One line of the table: a scenario, its trials, failures and figures."""

    scenario: str
    trials: int = 0
    failures: int = 0
    figures: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)
    skipped: str | None = None

    def record(self, problems: list[str]) -> None:
        self.trials += 1
        if problems:
            self.failures += 1
            self.problems.append(f"trial {self.trials}: " + "; ".join(problems))


def run_args(source: Path, backups: Path, log: Path, *more: object) -> list[object]:
    return [
        "--run",
        "--archive-every-days",  # databases only: the folder is no app's
        "0",
        "--db",
        f"{DB_NAME}={source}",
        "--backup-dir",
        backups,
        "--log-file",
        log,
        "--keep-days",
        KEEP_DAYS,
        "--keep-last",
        3,
        *more,
    ]


# -- crash: kill -9 at a random moment --------------------------------------------------


@dataclasses.dataclass
class CrashSetup:
    """A source, earlier backups (3 kept, 30 expired, one the log records) and a log."""

    folder: Path
    source: Path
    backups: Path
    log: Path
    now: dt.datetime
    before: dict[str, str]
    earlier_runs: list[dict[str, Any]]
    invariant: tuple[int, int, int, int]

    @classmethod
    def create(cls, bench: Bench, folder: Path, rng: random.Random) -> CrashSetup:
        source = folder / DB_NAME
        shutil.copyfile(bench.templates[rng.choice(["wal", "delete"])], source)
        backups, log, now = folder / "backups", folder / "log.json", dt.datetime.now()
        seed_backups(backups, DB_NAME, bench.small, now, expired=100)
        previous = backups / dbs.format_backup_name(DB_NAME, now - dt.timedelta(hours=12))
        shutil.copyfile(source, previous)
        previous.chmod(0o600)
        earlier_runs = seed_log(log, {previous: sha256(previous)})
        (backups / "notes.txt").write_text("not a backup\n", encoding="utf-8")
        if rng.random() < 0.5:  # else unchanged: the run links to ``previous``
            commit_one_change(source)
        return cls(
            folder,
            source,
            backups,
            log,
            now,
            backup_files(backups),
            earlier_runs,
            read_invariant(source),
        )

    def args(self) -> list[object]:
        return run_args(self.source, self.backups, self.log)

    def phase(self, finished: bool) -> str:
        """Where the run was when it was killed, from what it left on disk."""
        if finished:
            return "finished before the kill"
        runs, _ = read_log(self.log)
        if runs is not None and len(runs) > len(self.earlier_runs):
            return "after the log write"
        if temp_files(self.folder):
            return "log write"
        now_there = backup_files(self.backups)
        new = [n for n in now_there if n not in self.before]
        expired = [n for n in self.before if is_expired(n, self.now)]
        expired_left = [n for n in expired if n in now_there]
        temps = [self.backups / n for n in temp_files(self.backups)]
        if new:
            if temps or len(expired_left) == len(expired):
                return "rename/link"
            return "pruning" if expired_left else "log write"
        if temps:
            size = max(p.stat().st_size for p in temps if p.exists())
            return "copy" if size < self.source.stat().st_size else "verify/hash/fsync"
        return "start-up/lock/listing"

    def check(self) -> list[str]:
        problems = check_backups(
            self.backups, self.before, now=self.now, log=self.log, invariant=self.invariant
        )
        problems += check_log(self.log, self.earlier_runs)
        if not (self.backups / "notes.txt").is_file():
            problems.append("a foreign file in the backup folder was deleted")
        return problems

    def reached(self, target: str) -> bool:
        """True once the run has visibly reached phase ``target`` (see CRASH_TARGETS)."""
        names = set(os.listdir(self.backups))
        temps = [self.backups / n for n in names if n.startswith(dbs.TEMP_PREFIX)]
        if target == "copy":
            return bool(temps)
        if target in ("copy midway", "verify/hash/fsync"):
            share = 0.5 if target == "copy midway" else 1.0
            size = self.source.stat().st_size * share
            with contextlib.suppress(FileNotFoundError):
                return any(p.stat().st_size >= size for p in temps)
            return False
        if target == "rename/link":
            return any(dbs.is_backup_name(n) and n not in self.before for n in names)
        if target == "pruning":
            return any(n not in names for n in self.before if is_expired(n, self.now))
        if target == "log write":
            return bool(temp_files(self.folder))
        raise ValueError(target)


CRASH_TARGETS = (
    "copy",
    "copy midway",
    "verify/hash/fsync",
    "rename/link",
    "pruning",
    "log write",
)


def crash_trial(
    bench: Bench, folder: Path, rng: random.Random, typical_s: float, target: str | None = None
) -> tuple[list[str], str]:
    """Kill one run, after a random delay or as soon as it reaches ``target``.

    Returns (problems, the phase the kill landed in, as read from what it left).
    """
    setup = CrashSetup.create(bench, folder, rng)
    proc = start_tool(bench.tool, *setup.args())
    if target is None:
        time.sleep(rng.uniform(0, typical_s))
    else:
        wait_for(lambda: setup.reached(target), proc)
    finished = proc.poll() is not None
    if not finished:
        os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    phase = setup.phase(finished)
    problems = [f"after a kill in {phase}: {p}" for p in setup.check()]
    after = run_tool(bench.tool, *setup.args())
    if after.returncode != 0:
        problems.append(f"the next run exited {after.returncode}: {after.stderr.strip()[-300:]}")
    left = temp_files(setup.backups, setup.folder)
    if left:
        problems.append(f"temporary files left after the next run (kill in {phase}): {left}")
    problems += [f"after the next run: {p}" for p in setup.check()]
    return problems, phase


def typical_run_time(bench: Bench) -> float:
    """The median wall time of three uninterrupted runs on a crash trial's setup."""
    times = []
    for number in range(4):
        folder = bench.trial_dir("calibrate", number)
        setup = CrashSetup.create(bench, folder, random.Random(number))
        started = time.monotonic()
        run_tool(bench.tool, *setup.args())
        times.append(time.monotonic() - started)
        bench.done(folder, [])
    return statistics.median(times[1:])  # the first warms the page cache


def crash_scenario(bench: Bench, trials: int, rng: random.Random, targeted: bool) -> Row:
    """Random moments; or, when ``targeted``, each phase in turn as soon as it is seen."""
    if targeted:
        row = Row("crash: kill -9 as soon as a phase is seen (" + ", ".join(CRASH_TARGETS) + ")")
    else:
        row = Row("crash: kill -9 of --run at a random moment in [0, typical run time]")
    typical = typical_run_time(bench)
    phases: Counter[str] = Counter()
    for number in range(trials):
        folder = bench.trial_dir("crash-targeted" if targeted else "crash", number)
        target = CRASH_TARGETS[number % len(CRASH_TARGETS)] if targeted else None
        problems, phase = crash_trial(bench, folder, rng, typical, target)
        phases[phase] += 1
        row.record(problems)
        bench.done(folder, problems)
    landed = ", ".join(f"{name} {count}" for name, count in phases.most_common())
    row.figures = f"kills landed in: {landed}"
    if not targeted:
        row.figures = f"typical run {typical:.2f} s; " + row.figures
    return row


# -- load: backups while other processes write ------------------------------------------

WRITER = textwrap.dedent(
    """
    import json, os, sqlite3, sys, time
    path, stop_file, out_file = sys.argv[1:4]
    conn = sqlite3.connect(path, timeout=300, isolation_level=None)
    samples, errors, i = [], [], 0
    print("ready", flush=True)
    while not os.path.exists(stop_file):
        started = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE items SET value = value + 1 WHERE id = ?", (i % 500 + 1,))
            conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(300))", (i,))
            conn.execute(
                "UPDATE totals SET total = total + 1 + ?, count = count + 1 WHERE id = 1", (i,)
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            errors.append(repr(exc))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        samples.append((started, time.monotonic()))
        i += 1
        time.sleep(0.002)
    with open(out_file, "w") as handle:
        json.dump({"samples": samples, "errors": errors}, handle)
    """
)


@contextlib.contextmanager
def writers(source: Path, folder: Path, count: int = 2) -> Iterator[list[dict[str, Any]]]:
    """``count`` processes committing continuously to ``source``; their samples after the block.

    Each sample is a commit's (start, end) on the monotonic clock, which Linux, macOS and
    Windows share between processes.
    """
    stop_file = folder / "stop-writers"
    outputs = [folder / f"writer-{n}.json" for n in range(count)]
    for path in [stop_file, *outputs]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(source), str(stop_file), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outputs
    ]
    results: list[dict[str, Any]] = []
    try:
        for proc in procs:
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(
                    f"a writer did not start: {proc.stderr.read() if proc.stderr else ''}"
                )
        time.sleep(0.3)
        yield results
    finally:
        stop_file.touch()
        for proc, out in zip(procs, outputs):
            _, err = finish(proc, timeout=120)
            if proc.returncode != 0 or not out.exists():
                results.append(
                    {"samples": [], "errors": [f"writer exited {proc.returncode}: {err}"]}
                )
            else:
                results.append(json.loads(out.read_text()))


def worst_latency(samples: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """The longest commit that overlapped [start, end], in seconds (0 when none did)."""
    return max((e - s for s, e in samples if e >= start and s <= end), default=0.0)


@dataclasses.dataclass
class LoadFigures:
    """What backups under load measured: each trial's problems, and the times."""

    problems: list[list[str]] = dataclasses.field(default_factory=list)
    durations: list[float] = dataclasses.field(default_factory=list)
    worst_during: list[float] = dataclasses.field(default_factory=list)
    worst_outside: float = 0.0
    commits: int = 0


def backups_under_load(
    bench: Bench, source: Path, folder: Path, trials: int, writer_count: int, rng: random.Random
) -> LoadFigures:
    """Take ``trials`` backups while ``writer_count`` processes commit to ``source``."""
    backups, log = folder / "backups", folder / "log.json"
    figures = LoadFigures()
    windows: list[tuple[float, float]] = []
    with writers(source, folder, writer_count) as results:
        for _ in range(trials):
            started = time.monotonic()
            done = run_tool(bench.tool, *run_args(source, backups, log, "--json"))
            windows.append((started, time.monotonic()))
            figures.problems.append(check_backup_under_load(done, figures.durations))
            time.sleep(rng.uniform(0.05, 0.3))
    samples = [(s, e) for r in results for s, e in r["samples"]]
    errors = [e for r in results for e in r["errors"]]
    if errors:
        figures.problems[-1].append(f"the writers failed {len(errors)} commit(s): {errors[:3]}")
    figures.worst_during = [worst_latency(samples, s, e) for s, e in windows]
    outside = [e - s for s, e in samples if not any(e >= ws and s <= we for ws, we in windows)]
    figures.worst_outside = max(outside, default=0.0)
    figures.commits = len(samples)
    return figures


def check_backup_under_load(
    done: subprocess.CompletedProcess[str], durations: list[float]
) -> list[str]:
    """The run succeeded and its backup passes integrity_check and the invariant."""
    if done.returncode != 0:
        return [f"exit {done.returncode}: {done.stdout[-300:]}{done.stderr[-300:]}"]
    [result] = json.loads(done.stdout)["results"]
    durations.append(result["duration_s"])
    backup = Path(result["backup"])
    problems = []
    verdict = integrity(backup)
    if verdict != "ok":
        problems.append(f"{backup.name}: integrity_check: {verdict}")
    else:
        total, count, summed, counted = read_invariant(backup)
        if (total, count) != (summed, counted):
            problems.append(f"{backup.name}: totals {total}/{count}, items {summed}/{counted}")
    backup.unlink()  # keeps the scratch disk small; the next run copies afresh anyway
    return problems


def load_scenario(bench: Bench, mode: str, trials: int, rng: random.Random) -> Row:
    """``trials`` backups under load: most with two writers, the last quarter with one.

    Two writers also wait for each other, so a lone writer measures what the backup
    alone costs the app: in rollback-journal mode, about the time of the copy.
    """
    label = "WAL" if mode == "wal" else "rollback journal"
    row = Row(f"load: backups during continuous writes, {label}")
    folder = bench.scratch / f"load-{mode}"
    folder.mkdir()
    source = folder / DB_NAME
    shutil.copyfile(bench.templates[mode], source)
    size_mb = source.stat().st_size / 1e6
    lone = max(1, trials // 4) if trials > 1 else 0
    busy = backups_under_load(bench, source, folder, trials - lone, 2, rng)
    alone = backups_under_load(bench, source, folder, lone, 1, rng) if lone else LoadFigures()
    for problems in busy.problems + alone.problems:
        row.record(problems)
    durations = busy.durations + alone.durations
    parts = [f"{size_mb:.0f} MB; backup {_median_ms(durations)} ms median"]
    if busy.worst_during:
        parts.append(
            f"2 writers' worst commit during a run: median {_median_ms(busy.worst_during)} ms, "
            f"max {max(busy.worst_during) * 1000:.0f} ms (outside runs: max "
            f"{busy.worst_outside * 1000:.0f} ms)"
        )
    if alone.worst_during:
        parts.append(
            f"a lone writer's worst commit during a run: median {_median_ms(alone.worst_during)} ms"
        )
        if mode == "delete":
            per_100 = statistics.median(alone.worst_during) * 1000 / size_mb * 100
            parts.append(f"**the app waits ≈ {per_100:.0f} ms per 100 MB**")
    parts.append(f"{busy.commits + alone.commits} commits")
    row.figures = "; ".join(parts)
    shutil.rmtree(folder, ignore_errors=True)
    return row


def _median_ms(seconds: Sequence[float]) -> str:
    return f"{statistics.median(seconds) * 1000:.0f}" if seconds else "-"


# -- faults -----------------------------------------------------------------------------


@dataclasses.dataclass
class FaultSetup:
    """A big source, a small second database, seeded backups of the second, and a log."""

    folder: Path
    source: Path
    second: Path
    backups: Path
    log: Path
    now: dt.datetime
    before: dict[str, str]
    earlier_runs: list[dict[str, Any]]
    message: str = ""

    @classmethod
    def create(cls, bench: Bench, folder: Path, backups: Path | None = None) -> FaultSetup:
        source = folder / DB_NAME
        shutil.copyfile(bench.templates["wal"], source)
        second = folder / "second.db"
        shutil.copyfile(bench.small, second)
        backups = backups or folder / "backups"
        log, now = folder / "log.json", dt.datetime.now()
        seed_backups(backups, DB_NAME, bench.small, now)
        seed_backups(backups, "second.db", bench.small, now)
        earlier = seed_log(log)
        return cls(folder, source, second, backups, log, now, backup_files(backups), earlier)

    def args(self, *more: object) -> list[object]:
        return [
            "--run",
            "--archive-every-days",
            "0",
            "--db",
            f"{DB_NAME}={self.source}",
            "--db",
            f"second.db={self.second}",
            "--backup-dir",
            self.backups,
            "--log-file",
            self.log,
            "--keep-days",
            KEEP_DAYS,
            *more,
        ]

    def expect_failure(
        self,
        done: subprocess.CompletedProcess[str] | tuple[int, str, str],
        code: int,
        *mentions: str,
        failed: Sequence[str] = (DB_NAME, "second.db"),
        said_for: Sequence[str] = (),
    ) -> list[str]:
        """Exit ``code``, a message with each of ``mentions``, no traceback, nothing lost.

        The mentions must be in the error lines (in the line of each database of
        ``said_for``, when given); the expired backups of the ``failed`` databases must
        all still be there.
        """
        if isinstance(done, tuple):
            returncode, out, err = done
        else:
            returncode, out, err = done.returncode, done.stdout, done.stderr
        output = out + err
        self.message = f"exit {returncode}: " + first_error(output, self.folder)
        problems = []
        if returncode != code:
            problems.append(f"exit {returncode}, expected {code}")
        errors = error_lines(output)
        places = {name: [e for e in errors if e.startswith(f"{name}:")] for name in said_for}
        places = places or {"": errors}
        for name, lines in places.items():
            for text in mentions:
                if not any(text in line for line in lines):
                    where = f"the error for {name}" if name else "the error"
                    problems.append(f"{where} does not mention {text!r}: {lines}")
        if "Traceback" in output or "unexpected error" in output:
            problems.append(f"a traceback or an unexpected error: {output.strip()[-300:]}")
        problems += check_backups(
            self.backups, self.before, now=self.now, log=self.log, invariant=None, failed=failed
        )
        problems += check_log(self.log, self.earlier_runs)
        return problems

    def recover(self, bench: Bench) -> list[str]:
        """Once the fault is gone, the next run succeeds and leaves no temporary file."""
        done = run_tool(bench.tool, *self.args())
        problems = []
        if done.returncode != 0:
            problems.append(
                f"the run after the fault exited {done.returncode}: {done.stdout[-300:]}"
            )
        left = temp_files(self.backups, self.folder)
        if left:
            problems.append(f"temporary files left after the next run: {left}")
        problems += check_backups(
            self.backups, self.before, now=self.now, log=self.log, invariant=None
        )
        problems += check_log(self.log, self.earlier_runs)
        return problems


def fault_disk_fills(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    """The backup folder is on a tmpfs that can hold the earlier backups but not the copy."""
    disk = folder / "disk"
    with tmpfs(disk, max(2.0, bench.size_mb * rng.uniform(0.3, 0.8))):
        setup = FaultSetup.create(bench, folder, disk / "backups")
        done = run_tool(bench.tool, *setup.args())
        problems = setup.expect_failure(
            done, 1, "full", str(setup.backups), failed=[DB_NAME], said_for=[DB_NAME]
        )
        left = temp_files(setup.backups)
        if left:
            problems.append(f"the failed copy was left on the full disk: {left}")
        resize_tmpfs(disk, bench.size_mb * 3 + 10)
        problems += setup.recover(bench)
    return problems, setup.message


def fault_read_only_folder(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    setup = FaultSetup.create(bench, folder)
    with read_only_bind(setup.backups):
        done = run_tool(bench.tool, *setup.args())
        problems = setup.expect_failure(done, 1, "read-only", str(setup.backups))
    return problems + setup.recover(bench), setup.message


def fault_immutable_mid_run(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    """chattr +i on the backup folder once the copy has started."""
    setup = FaultSetup.create(bench, folder)
    set_immutable(setup.backups, False)  # raises Skip early where chattr cannot work
    proc = start_tool(bench.tool, *setup.args())
    try:
        if wait_for(copy_started(setup.backups), proc):
            set_immutable(setup.backups, True)
        out, err = finish(proc)
    finally:
        set_immutable(setup.backups, False)
    problems = setup.expect_failure(
        (proc.returncode, out, err), 1, str(setup.backups), said_for=[DB_NAME, "second.db"]
    )
    return problems + setup.recover(bench), setup.message


def fault_log_on_full_disk(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    disk = folder / "logdisk"
    with tmpfs(disk, 2):
        setup = FaultSetup.create(bench, folder)
        log = disk / "log.json"
        shutil.copyfile(setup.log, log)
        setup.log = log
        filler = disk / "filler"
        with open(filler, "wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
        before = log.read_bytes()
        done = run_tool(bench.tool, *setup.args())
        problems = setup.expect_failure(done, 1, "full", str(log), failed=[])
        if log.read_bytes() != before:
            problems.append("the log changed although it could not be written")
        filler.unlink()
        problems += setup.recover(bench)
    return problems, setup.message


def fault_log_is_dev_full(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    if not Path("/dev/full").exists():
        raise Skip("/dev/full does not exist here")
    setup = FaultSetup.create(bench, folder)
    args = setup.args()
    args[args.index("--log-file") + 1] = "/dev/full"
    done = run_tool(bench.tool, *args)
    problems = setup.expect_failure(done, 2, "not a regular file", "/dev/full")
    made = [n for n in backup_files(setup.backups) if n not in setup.before]
    if made:
        problems.append(f"a refused run made backups: {made}")
    return problems + setup.recover(bench), setup.message


def fault_source_vanishes(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    """The second database is deleted while the first is being copied."""
    setup = FaultSetup.create(bench, folder)
    kept = folder / "second.kept"
    shutil.copyfile(setup.second, kept)
    proc = start_tool(bench.tool, *setup.args())
    wait_for(copy_started(setup.backups), proc)
    setup.second.unlink()
    out, err = finish(proc)
    problems = setup.expect_failure(
        (proc.returncode, out, err),
        1,
        "does not exist",
        str(setup.second),
        failed=["second.db"],
        said_for=["second.db"],
    )
    if not any(dbs.is_backup_name(n, DB_NAME) for n in backup_files(setup.backups)):
        problems.append("the first database, still there, was not backed up")
    os.replace(kept, setup.second)
    return problems + setup.recover(bench), setup.message


def fault_source_replaced(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    """The second database is replaced by a file that is not a database mid-run."""
    setup = FaultSetup.create(bench, folder)
    kept = folder / "second.kept"
    shutil.copyfile(setup.second, kept)
    stranger = folder / "stranger"
    stranger.write_bytes(os.urandom(rng.randint(1, 64 * 1024)))
    proc = start_tool(bench.tool, *setup.args())
    wait_for(copy_started(setup.backups), proc)
    os.replace(stranger, setup.second)
    replaced = setup.second.read_bytes()
    out, err = finish(proc)
    problems = setup.expect_failure(
        (proc.returncode, out, err),
        1,
        "not an SQLite database",
        str(setup.second),
        failed=["second.db"],
        said_for=["second.db"],
    )
    if setup.second.read_bytes() != replaced:
        problems.append("the tool changed the file that replaced the database")
    os.replace(kept, setup.second)
    return problems + setup.recover(bench), setup.message


HOLD_SOURCE = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def fault_lock_holder_killed(bench: Bench, folder: Path, rng: random.Random) -> Outcome:
    """A run holding the lock is killed; a run waiting for the lock then proceeds.

    The app holds the (rollback-journal) source exclusively, so the first run sits in the
    copy, holding the run lock, until it is killed.
    """
    setup = FaultSetup.create(bench, folder)
    shutil.copyfile(bench.templates["delete"], setup.source)
    app = subprocess.Popen(
        [sys.executable, "-c", HOLD_SOURCE, str(setup.source)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    problems = []
    try:
        if not (app.stdout and app.stdout.readline().strip() == "ready"):
            raise RuntimeError("the app could not lock its database")
        holder = start_tool(bench.tool, *setup.args("--busy-timeout", 120))
        if not wait_for(copy_started(setup.backups), holder):
            problems.append("the first run never started its copy")
        waiter = start_tool(bench.tool, *setup.args("--lock-timeout", 120))
        said = waiter.stderr.readline() if waiter.stderr else ""
        if "another run holds the lock" not in said:
            problems.append(f"the second run did not wait for the lock: {said!r}")
        time.sleep(rng.uniform(0, 0.3))
        os.kill(holder.pid, signal.SIGKILL)
        finish(holder)
    finally:
        app.kill()
        app.communicate()
    killed_at = time.monotonic()
    out, err = finish(waiter, timeout=120)
    waited = time.monotonic() - killed_at
    if waiter.returncode != 0:
        problems.append(f"the waiting run exited {waiter.returncode}: {out[-300:]}{err[-300:]}")
    left = temp_files(setup.backups, setup.folder)
    if left:
        problems.append(f"temporary files left by the killed run: {left}")
    problems += check_backups(
        setup.backups, setup.before, now=setup.now, log=setup.log, invariant=None
    )
    problems += check_log(setup.log, setup.earlier_runs)
    return problems, f"the waiting run: exit {waiter.returncode}, {waited:.2f} s after the kill"


def error_lines(output: str) -> list[str]:
    """The CLI's error lines without their mark: ``error: …`` and ``<database>: …``."""
    lines = []
    for line in output.splitlines():
        for mark in ("\u274c ", "[FAILED] "):
            if line.startswith(mark) and "Backup finished" not in line:
                lines.append(line[len(mark) :].strip())
    return lines


def first_error(output: str, folder: Path) -> str:
    """The first error line of the CLI's output, the trial's folder shortened to "…"."""
    lines = error_lines(output)
    return f'"{lines[0].replace(str(folder), "…")}"' if lines else "no error message"


FAULTS: list[tuple[str, Callable[[Bench, Path, random.Random], Outcome]]] = [
    ("fault: disk fills during the copy (tmpfs)", fault_disk_fills),
    ("fault: backup folder read-only (bind mount)", fault_read_only_folder),
    ("fault: backup folder made immutable mid-run (chattr +i)", fault_immutable_mid_run),
    ("fault: log on a full disk (tmpfs)", fault_log_on_full_disk),
    ("fault: --log-file /dev/full (refused, exit 2)", fault_log_is_dev_full),
    ("fault: second database deleted mid-run", fault_source_vanishes),
    ("fault: second database replaced by a non-database mid-run", fault_source_replaced),
    ("fault: lock holder killed, waiting run proceeds", fault_lock_holder_killed),
]


def fault_scenario(
    bench: Bench,
    label: str,
    scenario: Callable[[Bench, Path, random.Random], Outcome],
    trials: int,
    rng: random.Random,
) -> Row:
    row = Row(label)
    slug = scenario.__name__
    times = []
    messages: Counter[str] = Counter()
    for number in range(trials):
        folder = bench.trial_dir(slug, number)
        started = time.monotonic()
        try:
            problems, message = scenario(bench, folder, rng)
            messages[message] += 1
        except Skip as exc:
            row.skipped = str(exc)
            bench.done(folder, [])
            break
        times.append(time.monotonic() - started)
        row.record(problems)
        bench.done(folder, problems)
    if times:
        said = messages.most_common(1)[0][0] if messages else ""
        row.figures = f"{said}; {statistics.median(times):.2f} s per trial"
    return row


# ======================================================================================
# Report and command line
# ======================================================================================


def render_table(rows: Sequence[Row]) -> str:
    lines = ["| scenario | trials | failures | figures |", "| --- | ---: | ---: | --- |"]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.scenario} | 0 | - | skipped: {row.skipped} |")
        else:
            lines.append(f"| {row.scenario} | {row.trials} | {row.failures} | {row.figures} |")
    return "\n".join(lines)


def render_failures(rows: Sequence[Row], limit: int = 5) -> str:
    lines = []
    for row in rows:
        if row.problems:
            lines.append(f"- {row.scenario}:")
            lines += [f"  - {text[:400]}" for text in row.problems[:limit]]
            if len(row.problems) > limit:
                lines.append(f"  - ... and {len(row.problems) - limit} more")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Reliability torture runs for database_backup_scheduler.py."
    )
    parser.add_argument("--crash-trials", type=int, default=100, metavar="N")
    parser.add_argument(
        "--targeted-trials",
        type=int,
        metavar="N",
        help="kills at each phase in turn, as soon as it is seen (default: crash trials / 2)",
    )
    parser.add_argument("--load-trials", type=int, default=20, metavar="N", help="per mode")
    parser.add_argument("--fault-trials", type=int, default=20, metavar="N", help="per fault")
    parser.add_argument("--size-mb", type=float, default=50, metavar="MB", help="source size")
    parser.add_argument("--only", choices=["load", "crash", "fault"], action="append")
    parser.add_argument("--seed", type=int, help="random seed (default: from the clock)")
    parser.add_argument("--scratch", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the files of failed trials")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    families = set(args.only or ["load", "crash", "fault"])
    scratch = Path(tempfile.mkdtemp(prefix="torture-", dir=args.scratch))
    started = time.monotonic()
    rows: list[Row] = []
    try:
        bench = Bench.create(scratch, args.size_mb, args.keep)
        if "load" in families:
            for mode in ("wal", "delete"):
                rows.append(load_scenario(bench, mode, args.load_trials, rng))
                print(render_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        if "crash" in families:
            rows.append(crash_scenario(bench, args.crash_trials, rng, targeted=False))
            print(render_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            targeted = args.targeted_trials
            targeted = args.crash_trials // 2 if targeted is None else targeted
            rows.append(crash_scenario(bench, targeted, rng, targeted=True))
            print(render_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        if "fault" in families:
            for label, scenario in FAULTS:
                rows.append(fault_scenario(bench, label, scenario, args.fault_trials, rng))
                print(render_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        if not (args.keep and any(r.failures for r in rows)):
            shutil.rmtree(scratch, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    print(
        f"database_backup_scheduler {dbs.__version__}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs; source {args.size_mb:g} MB; seed {seed}; {minutes:.1f} min"
    )
    print()
    print(render_table(rows))
    failures = render_failures(rows)
    if failures:
        print()
        print("Failures:")
        print(failures)
        if args.keep:
            print(f"(files of failed trials kept in {scratch})")
    return 1 if any(r.failures for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
