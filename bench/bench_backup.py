#!/usr/bin/env python3
"""Benchmark a whole ``--run`` against ``sqlite3 .backup`` and ``cp`` + fsync, side by side.

    python bench/bench_backup.py --sizes 100M --trials 3
    python bench/bench_backup.py --sizes 1G --trials 5 --modes wal,rollback
    python bench/bench_backup.py --sizes 4G --trials 1 --modes wal --parts timing
    python bench/bench_backup.py --sizes 300M,1G --trials 7 --parts unchanged --keep

Parts (``--parts``; timing, phases, writer and storage by default):
- timing: for each size and journal mode, the three tools run as fresh processes, each
  once untimed (so every one reads a warm page cache), then alternately ``--trials``
  times, in a rotating order. Each output is deleted, and every queued write flushed,
  before the next run, outside the timed region; ``--run`` gets an empty backup folder
  and run log every time, so it makes a real copy and never takes the unchanged-database
  hard link.
  Peak memory is each child's own ``ru_maxrss`` from ``os.wait4``, the children being
  started by a small launcher process (Linux would otherwise count this process's memory
  into each child's).
- phases: where one ``--run`` spends its time (copy, quick_check, SHA-256, fsync), timed
  in-process with the module's own functions, one at a time.
- writer: a second process commits a small transaction every ~5 ms (busy_timeout 5000)
  while one ``--run``, then one ``sqlite3 -cmd ".timeout 5000" .backup``, copies the
  database: the worst and p99 commit latency while each copy runs. Each is done with the
  writer at synchronous FULL and at OFF: OFF leaves out the writer's own fsyncs, which
  queue behind the copy's writes on the same disk, so what remains is lock waiting. The
  sqlite3 CLI is killed after max(15 s, 10 × its idle time): under a steady writer its
  step-by-step backup restarts on every commit and may never finish.
- unchanged (not in the default set: ``--parts unchanged``): for each size and journal
  mode, ``--run`` over an unchanged database, that is into a backup folder that already
  holds a backup of exactly this database, recorded in the run log (made by one untimed
  ``--run`` first), beside ``sqlite3 .backup`` of the same database into a new file, a
  fresh ``--run`` (empty backup folder, no run log), and a "fresh, pruning" ``--run``
  (``--keep-last 1``): into a folder holding one expired backup of the same size, a copy
  of the database named as taken 40 days ago, not in any run log (there is none), written
  and fsynced before the trial, untimed; the run makes a fresh copy and deletes that file,
  as a nightly run of a changed database does once retention is in its steady state (the
  run log is checked for exactly that one pruned name). The four alternate as in timing.
  After each unchanged run, untimed, its new name is deleted and the run log restored, so
  every trial starts from one backup recorded once. Also the backup folder's disk use
  after the last unchanged run (links counted once: one copy expected).
  One cost the unchanged row pays and the fresh row does not (0.16 to 0.2 s at 1 GiB,
  measured on its own): re-linking the older name to the fresh copy with ``os.replace``
  drops the last link of the old file, and freeing it costs ~45 ms of CPU (page-cache
  eviction) and ~110 ms of synchronous discards on ext4 mounted with ``discard``; the
  fresh row deletes its previous output outside the timed region, the pruning row frees a
  file of the same size inside it.
- storage: 30 ``--run`` of an unchanged 100 MiB database into one backup folder (bytes on
  disk with hard links counted once, as ``du`` does), and the size of one ``--compress``
  backup against the database.

Sizes are binary (1G = 1 GiB). The databases are made fast (big rows, an index,
journal off, synchronous off); each row holds random bytes, hex text and zeros, so a
gzip backup is about half the database. Nothing is asserted: it prints figures, then
the same figures as markdown, ready to paste into a README.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import importlib.util
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "database_backup_scheduler.py"
MIB = 1024 * 1024
GIB = 1024 * MIB
PAGE_SIZE = 4096
ROWS_PER_BATCH = 20_000
STORAGE_SIZE = 100 * MIB
STORAGE_RUNS = 30
WRITER_PAUSE_S = 0.005
WRITER_BASELINE_S = 1.0

TOOLS = ("cp+fsync", "sqlite3 .backup", "--run")
PARTS = ("timing", "phases", "writer", "storage", "unchanged")
DEFAULT_PARTS = ("timing", "phases", "writer", "storage")
MODES = {"wal": "wal", "rollback": "delete"}

# The baseline: copy the bytes and make them durable, nothing else.
CP_FSYNC = (
    "import os, shutil, sys\n"
    "shutil.copyfile(sys.argv[1], sys.argv[2])\n"
    "fd = os.open(sys.argv[2], os.O_RDONLY)\n"
    "os.fsync(fd)\n"
    "os.close(fd)\n"
)

# A web app's writer: one small transaction at a time, timed from the call to its commit.
WRITER = """
import json, os, sqlite3, sys, time
db, out, stop, pause, sync = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
conn = sqlite3.connect(db, timeout=5.0, isolation_level=None)
conn.execute("PRAGMA busy_timeout=5000")
conn.execute("PRAGMA synchronous=" + sync)
conn.execute("INSERT INTO writes(at, note) VALUES (0, 'warm-up')")
print("ready", flush=True)
samples = []
while not os.path.exists(stop):
    started = time.monotonic()
    try:
        conn.execute("INSERT INTO writes(at, note) VALUES (?, 'tick')", (started,))
        ok = True
    except sqlite3.OperationalError:
        ok = False
    samples.append([started, time.monotonic() - started, ok])
    time.sleep(pause)
conn.close()
with open(out, "w") as handle:
    json.dump(samples, handle)
"""


# ======================================================================================
# Helpers
# ======================================================================================


def parse_size(text: str) -> int:
    """``100M``, ``1G``, ``512K`` or a number of bytes; binary units."""
    text = text.strip().upper().rstrip("B").rstrip("I")
    units = {"K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def size_label(size: int) -> str:
    for unit, factor in (("G", GIB), ("M", MIB), ("K", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def log(text: str) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(text, file=sys.stderr, flush=True)


def p99(values: Sequence[float]) -> float:
    """The 99th percentile by nearest rank (the worst value when there are under 100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def disk_bytes_once(folder: Path, containing: str = "") -> tuple[int, int, int]:
    """(files, sum of their sizes, bytes allocated on disk with each inode counted once)."""
    seen: set[tuple[int, int]] = set()
    files = apparent = allocated = 0
    for entry in os.scandir(folder):
        if containing not in entry.name or not entry.is_file(follow_symlinks=False):
            continue
        info = entry.stat(follow_symlinks=False)
        files += 1
        apparent += info.st_size
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            allocated += info.st_blocks * 512
    return files, apparent, allocated


def du_bytes(folder: Path) -> Optional[int]:
    """``du``'s figure for a folder (it counts a hard-linked file once), when du exists."""
    if not shutil.which("du"):
        return None
    done = subprocess.run(["du", "-s", "-B1", str(folder)], capture_output=True, text=True)
    try:
        return int(done.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def file_system_of(folder: Path) -> str:
    """The file system holding ``folder``, with its mount options on Linux ("ext4 rw,discard")."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        entries = []
    target = os.path.realpath(folder)
    best = None
    for entry in entries:
        point = entry[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if len(entry) >= 4 and inside and (best is None or len(point) >= len(best[1])):
            best = entry
    if best is not None:
        return f"{best[2]} {best[3]}"
    if not shutil.which("stat"):
        return "?"
    done = subprocess.run(["stat", "-f", "-c", "%T", str(folder)], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def sqlite_cli_version() -> str:
    done = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True)
    return done.stdout.split()[0] if done.stdout else "?"


# ======================================================================================
# Databases
# ======================================================================================


def make_database(path: Path, size: int) -> None:
    """A rollback-journal database of about ``size`` bytes: ~4 KB rows and an index.

    Journal off and synchronous off: nothing is written twice and nothing waits for
    the disk, so a GiB takes seconds.
    """
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, "
            "payload BLOB, padding BLOB)"
        )
        conn.execute("CREATE INDEX items_k ON items(k)")
        conn.execute("CREATE TABLE writes(id INTEGER PRIMARY KEY, at REAL, note TEXT)")
        while True:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            if pages * PAGE_SIZE >= size:
                break
            left = size - pages * PAGE_SIZE
            rows = max(1, min(ROWS_PER_BATCH, left // 4200 + 1))
            conn.execute(
                "INSERT INTO items(k, name, payload, padding) "
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
                "SELECT abs(random()) % 1000000000, hex(randomblob(400)), randomblob(1600), "
                "zeroblob(1600) FROM c",
                (rows,),
            )
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


def journal_variant(base: Path, target: Path, mode: str) -> None:
    """A copy of ``base`` in the given journal mode (``wal`` or ``rollback``)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(base, target)
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        got = conn.execute(f"PRAGMA journal_mode={MODES[mode]}").fetchone()[0]
        assert got.lower() == MODES[mode], got
    finally:
        conn.close()


class Databases:
    """Makes each size once, and its journal-mode variants from it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def base(self, size: int) -> Path:
        path = self.workdir / f"base-{size_label(size)}.db"
        if not path.exists():
            started = time.perf_counter()
            make_database(path, size)
            took = time.perf_counter() - started
            log(f"made {path.name}: {path.stat().st_size / MIB:,.0f} MiB in {took:.1f} s")
        return path

    def get(self, size: int, mode: str) -> Path:
        path = self.workdir / f"bench-{size_label(size)}-{mode}.db"
        if not path.exists():
            journal_variant(self.base(size), path, mode)
        return path

    def drop(self, size: int) -> None:
        for path in self.workdir.glob(f"*-{size_label(size)}*.db*"):
            path.unlink()


# ======================================================================================
# Children
# ======================================================================================


@dataclasses.dataclass
class Sample:
    """One child process: wall time, its own peak RSS, exit code, what it printed."""

    seconds: float
    max_rss_kb: int
    returncode: int
    output: str = ""
    timed_out: bool = False


# Linux counts a parent's resident memory at fork into the child's ru_maxrss (exec keeps
# the larger figure), so a child of this process could never show less than this
# process uses. Children are therefore started by a small launcher (os only, no site),
# which times each one and reads its own rusage with os.wait4.
LAUNCHER = """
import json, os, signal, sys, time
killed = []
def on_alarm(signum, frame):
    killed.append(True)
    os.kill(child, signal.SIGKILL)
signal.signal(signal.SIGALRM, on_alarm)
for line in sys.stdin:
    job = json.loads(line)
    killed.clear()
    out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    started = time.perf_counter()
    child = os.fork()
    if child == 0:
        try:
            os.chdir(job["cwd"])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.execvp(job["argv"][0], job["argv"])
        finally:
            os._exit(127)
    os.close(out)
    if job["timeout"]:
        signal.setitimer(signal.ITIMER_REAL, job["timeout"])
    _, status, usage = os.wait4(child, 0)
    seconds = time.perf_counter() - started
    signal.setitimer(signal.ITIMER_REAL, 0)
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps([seconds, usage.ru_maxrss, code, bool(killed)]), flush=True)
"""


class Launcher:
    """A small long-lived process that starts, times and reaps each measured child."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def run(self, argv: Sequence[str], cwd: Path, timeout: Optional[float]) -> Sample:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with tempfile.NamedTemporaryFile("w+", suffix=".out") as captured:
            job = {"argv": list(argv), "cwd": str(cwd), "timeout": timeout, "out": captured.name}
            self.proc.stdin.write(json.dumps(job) + "\n")
            reply = self.proc.stdout.readline()
            if not reply:
                raise SystemExit("the launcher process died")
            seconds, max_rss_kb, code, timed_out = json.loads(reply)
            output = Path(captured.name).read_text(errors="replace")
        return Sample(seconds, max_rss_kb, code, output, timed_out)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


_launcher: list[Launcher] = []


def run_child(argv: Sequence[str], *, cwd: Path, timeout: Optional[float] = None) -> Sample:
    """Run one fresh process; time it from spawn to exit; its own peak RSS (``os.wait4``)."""
    if not _launcher:
        _launcher.append(Launcher())
    return _launcher[0].run(argv, cwd, timeout)


def stop_launcher() -> None:
    while _launcher:
        _launcher.pop().close()


def tool_argv(tool: str, source: Path, out: Path, extra: Sequence[str] = ()) -> list[str]:
    """The command line of one tool, writing its output into the empty folder ``out``."""
    if tool == "cp+fsync":
        return [sys.executable, "-c", CP_FSYNC, str(source), str(out / "copy.db")]
    if tool == "sqlite3 .backup":
        # ``extra`` may hold ``-cmd ".timeout MS"``: a busy timeout, as the tool has one.
        return ["sqlite3", *extra, str(source), f'.backup "{out / "copy.db"}"']
    return [
        sys.executable,
        str(SCRIPT),
        "--run",
        "--db",
        str(source),
        "--backup-dir",
        str(out / "backups"),
        "--log-file",
        str(out / "log.json"),
        "--archive-every-days",  # the database's folder is no app's: no archive of it
        "0",
        *extra,
    ]


def workdir_with_room(path: str, need: int) -> Path:
    """The folder ``path``, made if missing, on a disk with ``need`` bytes free; else exit
    with a message saying how much is free and needed."""
    workdir = Path(path)
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if need > free:
        raise SystemExit(f"{workdir} has {free / GIB:.1f} GiB free; this needs ~{need / GIB:.1f}")
    return workdir


def fresh_folder(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def check_ok(tool: str, sample: Sample) -> None:
    if sample.returncode != 0:
        raise SystemExit(f"{tool} failed (exit {sample.returncode}):\n{sample.output}")


# ======================================================================================
# Part: timing
# ======================================================================================


@dataclasses.dataclass
class TimingRow:
    size: int
    mode: str
    tool: str
    samples: list[Sample]

    @property
    def times(self) -> list[float]:
        return [s.seconds for s in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def peak_rss_mb(self) -> float:
        return max(s.max_rss_kb for s in self.samples) / 1024


def bench_timing(
    dbs: Databases, size: int, mode: str, trials: int, workdir: Path, settle: float = 0.0
) -> list[TimingRow]:
    """Each tool once untimed, then ``trials`` rounds, each tool once per round.

    The previous output is deleted and every queued write flushed before each run, then
    ``settle`` seconds pass: long enough, on a VM that returns free memory to its host, for
    every run to start as a nightly run does, writing into memory the host took back.
    """
    source = dbs.get(size, mode)
    out = workdir / "out"
    rows = {tool: TimingRow(size, mode, tool, []) for tool in TOOLS}

    def new_folder() -> Path:
        fresh_folder(out)
        os.sync()
        time.sleep(settle)
        return out

    for tool in TOOLS:  # warm-up: the page cache holds the source for all three alike
        check_ok(tool, run_child(tool_argv(tool, source, new_folder()), cwd=workdir))
    for trial in range(trials):
        order = TOOLS[trial % 3 :] + TOOLS[: trial % 3]
        for tool in order:
            argv = tool_argv(tool, source, new_folder())
            sample = run_child(argv, cwd=workdir)
            check_ok(tool, sample)
            rows[tool].samples.append(sample)
        log(
            f"  {size_label(size)} {mode} trial {trial + 1}/{trials}: "
            + ", ".join(f"{t} {rows[t].samples[-1].seconds:.2f} s" for t in TOOLS)
        )
    shutil.rmtree(out)
    return [rows[tool] for tool in TOOLS]


def render_timing(rows: Sequence[TimingRow]) -> list[list[str]]:
    table = [
        [
            "size",
            "mode",
            "tool",
            "median s",
            "min s",
            "max s",
            "MiB/s",
            "÷ sqlite3 .backup",
            "÷ cp+fsync",
            "peak RSS MB",
        ]
    ]
    for row in rows:
        peers = {r.tool: r.median for r in rows if r.size == row.size and r.mode == row.mode}
        table.append(
            [
                size_label(row.size),
                row.mode,
                row.tool,
                f"{row.median:.3f}",
                f"{min(row.times):.3f}",
                f"{max(row.times):.3f}",
                f"{row.size / MIB / row.median:,.0f}",
                f"{row.median / peers['sqlite3 .backup']:.2f}",
                f"{row.median / peers['cp+fsync']:.2f}",
                f"{row.peak_rss_mb:.1f}",
            ]
        )
    return table


def render_targets(rows: Sequence[TimingRow]) -> list[str]:
    """The issue's targets, one line per size and mode: met or not (figures, not a test)."""
    lines = []
    for row in rows:
        if row.tool != "--run":
            continue
        peers = {r.tool: r.median for r in rows if r.size == row.size and r.mode == row.mode}
        vs_sqlite = row.median / peers["sqlite3 .backup"]
        vs_cp = row.median / peers["cp+fsync"]
        lines.append(
            f"{size_label(row.size)} {row.mode}: --run / sqlite3 .backup = {vs_sqlite:.2f} "
            f"({'met' if vs_sqlite <= 1.0 else 'MISSED'}, target <= 1.0); "
            f"--run / cp+fsync = {vs_cp:.2f} ({'met' if vs_cp <= 2.5 else 'MISSED'}, "
            f"target <= 2.5); peak RSS {row.peak_rss_mb:.1f} MB "
            f"({'met' if row.peak_rss_mb < 64 else 'MISSED'}, target < 64)"
        )
    by_mode: dict[str, list[TimingRow]] = {}
    for row in rows:
        if row.tool == "--run":
            by_mode.setdefault(row.mode, []).append(row)
    for mode, runs in by_mode.items():
        if len(runs) > 1:
            per_gib = ", ".join(
                f"{size_label(r.size)}: {r.median / (r.size / GIB):.2f} s/GiB" for r in runs
            )
            lines.append(f"linearity, --run {mode}: {per_gib}")
    return lines


# ======================================================================================
# Part: unchanged
# ======================================================================================

UNCHANGED_TOOLS = ("sqlite3 .backup", "fresh --run", "unchanged --run", "fresh, pruning --run")
# The expired backup the "fresh, pruning" row finds: older than the default --keep-days 30.
EXPIRED_AGE_DAYS = 40


@dataclasses.dataclass
class UnchangedRow:
    """One size and mode: the four tools' samples, round by round, and the folder's disk."""

    size: int
    mode: str
    samples: dict[str, list[Sample]]
    shared: int  # unchanged runs whose log says the new name shares the previous file
    names_after: int  # backup names right after the last timed unchanged run
    disk_after: int  # their bytes on disk, each inode counted once
    du_after: Optional[int]
    db_bytes: int
    pruned_one: int = 0  # pruning runs that made a fresh copy and pruned just the expired one

    def times(self, tool: str) -> list[float]:
        return [s.seconds for s in self.samples[tool]]

    def median(self, tool: str) -> float:
        return statistics.median(self.times(tool))

    def paired(self, top: str, bottom: str) -> float:
        """The median of the round-by-round ratios (the runs of a round are neighbours)."""
        return statistics.median(a / b for a, b in zip(self.times(top), self.times(bottom)))


def _backup_names(folder: Path) -> set[str]:
    return {e.name for e in os.scandir(folder) if ".bak" in e.name and e.is_file()}


def bench_unchanged(
    dbs: Databases, size: int, mode: str, trials: int, workdir: Path, settle: float = 0.0
) -> UnchangedRow:
    """``--run`` over an unchanged database beside ``.backup``, a fresh ``--run``, and a
    fresh ``--run`` that prunes one expired backup.

    An untimed ``--run`` first puts one backup of the database into ``unchanged/backups``
    and records it in ``unchanged/log.json``. Each timed "unchanged" run then backs up the
    same, unchanged database into that folder, so the module takes its unchanged-database
    path (the new name shares one file with the previous one). After each such run, outside
    the timed region, the new name is deleted and the run log is put back as the setup run
    left it: every unchanged run starts from one backup, recorded once. ``.backup`` and the
    fresh ``--run`` write into an empty folder each time (a fresh ``--run`` has no backup
    and no run log).

    The "fresh, pruning" run is a nightly run of a changed database once retention is in
    its steady state: it makes a fresh copy and deletes one expired backup of the same size.
    Before each one, untimed, its folder is emptied and gets one copy of the setup run's
    backup under a backup name dated ``EXPIRED_AGE_DAYS`` days ago, written and fsynced;
    there is no run log, so the module cannot take the unchanged path (a recorded backup
    with these contents would be shared, not freed). It runs with ``--keep-last 1`` (and the
    default ``--keep-days 30``), so that backup is pruned; its run log is checked for exactly
    that one pruned name and no shared file. The four alternate in a rotating order, each
    once untimed first.
    """
    sys.path.insert(0, str(REPO))
    import database_backup_scheduler as module

    source = dbs.get(size, mode)
    out = workdir / "out"
    home = fresh_folder(workdir / "unchanged")
    pruning = workdir / "pruning"
    backups, run_log = home / "backups", home / "log.json"
    check_ok("--run", run_child(tool_argv("--run", source, home), cwd=workdir))
    (first,) = _backup_names(backups)
    log_bytes = run_log.read_bytes()
    parsed = module.parse_backup_name(first)
    assert parsed is not None, first
    samples: dict[str, list[Sample]] = {tool: [] for tool in UNCHANGED_TOOLS}
    shared = names_after = disk_after = pruned_one = 0
    du_after: Optional[int] = None
    expired: list[str] = []  # the expired backup's name in the current pruning trial

    def ready() -> None:
        os.sync()
        time.sleep(settle)

    def reset_unchanged() -> None:
        """Back to one backup, recorded once: the new name goes, the log as it was."""
        for name in _backup_names(backups) - {first}:
            (backups / name).unlink()
        run_log.write_bytes(log_bytes)

    def expired_name() -> str:
        taken_at = dt.datetime.now().replace(microsecond=0)
        taken_at -= dt.timedelta(days=EXPIRED_AGE_DAYS)
        return module.format_backup_name(parsed.name, taken_at)

    def set_up_pruning() -> None:
        """No run log, and a backup folder holding one expired backup, written and synced."""
        folder = pruning / "backups"
        fresh_folder(pruning)
        folder.mkdir()
        expired[:] = [expired_name()]
        shutil.copyfile(backups / first, folder / expired[0])
        for path in (folder / expired[0], folder, pruning):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def run(tool: str) -> Sample:
        if tool == "unchanged --run":
            ready()
            sample = run_child(tool_argv("--run", source, home), cwd=workdir)
        elif tool == "fresh, pruning --run":
            set_up_pruning()
            ready()
            argv = tool_argv("--run", source, pruning, ["--keep-last", "1"])
            sample = run_child(argv, cwd=workdir)
        else:
            fresh_folder(out)
            ready()
            sample = run_child(tool_argv(tool.replace("fresh ", ""), source, out), cwd=workdir)
        check_ok(tool, sample)
        return sample

    def shares_file() -> bool:
        """The newest run's result, as the run log has it: a name sharing the previous file."""
        runs = json.loads(run_log.read_text())["runs"]
        results = runs[-1].get("results") or []
        return bool(results) and bool(results[0].get("linked_to"))

    def pruned_just_the_expired() -> bool:
        """The pruning run made a fresh copy (no linked_to) and pruned one name: the expired
        one; one backup, its own, is left."""
        runs = json.loads((pruning / "log.json").read_text())["runs"]
        results = runs[-1].get("results") or []
        if len(runs) != 1 or len(results) != 1 or results[0].get("linked_to"):
            return False
        pruned = [Path(p).name for p in results[0].get("pruned") or []]
        left = _backup_names(pruning / "backups")
        made = Path(results[0].get("backup") or "").name
        return pruned == expired and left == {made}

    for tool in UNCHANGED_TOOLS:  # warm-up, untimed
        run(tool)
    reset_unchanged()
    count = len(UNCHANGED_TOOLS)
    for trial in range(trials):
        order = UNCHANGED_TOOLS[trial % count :] + UNCHANGED_TOOLS[: trial % count]
        for tool in order:
            sample = run(tool)
            samples[tool].append(sample)
            if tool == "unchanged --run":
                shared += shares_file()
                names_after = len(_backup_names(backups))
                disk_after = disk_bytes_once(backups, ".bak")[2]
                du_after = du_bytes(backups)
                reset_unchanged()
            elif tool == "fresh, pruning --run":
                pruned_one += pruned_just_the_expired()
        log(
            f"  {size_label(size)} {mode} unchanged trial {trial + 1}/{trials}: "
            + ", ".join(f"{t} {samples[t][-1].seconds:.2f} s" for t in UNCHANGED_TOOLS)
        )
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(pruning, ignore_errors=True)
    shutil.rmtree(home)
    return UnchangedRow(
        size,
        mode,
        samples,
        shared,
        names_after,
        disk_after,
        du_after,
        source.stat().st_size,
        pruned_one,
    )


def render_unchanged(rows: Sequence[UnchangedRow]) -> list[list[str]]:
    table = [
        [
            "size",
            "mode",
            ".backup median s",
            "fresh --run median s",
            "unchanged --run median s",
            "unchanged ÷ .backup",
            "fresh ÷ .backup",
            "unchanged ÷ fresh",
        ]
    ]
    for row in rows:
        backup, fresh, same = (row.median(t) for t in UNCHANGED_TOOLS[:3])
        table.append(
            [
                size_label(row.size),
                row.mode,
                f"{backup:.3f}",
                f"{fresh:.3f}",
                f"{same:.3f}",
                f"{same / backup:.2f}",
                f"{fresh / backup:.2f}",
                f"{same / fresh:.2f}",
            ]
        )
    return table


def render_unchanged_notes(rows: Sequence[UnchangedRow]) -> list[str]:
    lines = [
        "unchanged --run: a --run into a backup folder that already holds one backup of this "
        "same, unchanged database, recorded in the run log (made by one untimed --run first); "
        "fresh --run: an empty backup folder and no run log; .backup: sqlite3 SRC "
        '".backup NEW" into an empty folder',
        "between unchanged trials (untimed) the new backup name is deleted and the run log "
        "restored to its state after the setup run, so each trial starts from one backup "
        "recorded once (no --keep-last / --keep-days pruning inside the timed run)",
    ]
    for row in rows:
        spans = ", ".join(
            f"{tool} {min(row.times(tool)):.3f}–{max(row.times(tool)):.3f} s"
            for tool in UNCHANGED_TOOLS
        )
        trials = len(row.times(UNCHANGED_TOOLS[0]))
        lines.append(f"{size_label(row.size)} {row.mode}: min–max {spans}")
        lines.append(
            f"{size_label(row.size)} {row.mode}: round by round, median of the ratios: "
            f"unchanged ÷ .backup {row.paired('unchanged --run', 'sqlite3 .backup'):.2f}, "
            f"fresh ÷ .backup {row.paired('fresh --run', 'sqlite3 .backup'):.2f}, "
            f"unchanged ÷ fresh {row.paired('unchanged --run', 'fresh --run'):.2f}"
        )
        du = f", du -s {row.du_after / MIB:,.1f} MiB" if row.du_after is not None else ""
        lines.append(
            f"{size_label(row.size)} {row.mode}: {row.shared} of {trials} unchanged runs "
            f"shared the previous file (linked_to in the run log); backup folder after the "
            f"last: {row.names_after} names, {row.disk_after / MIB:,.1f} MiB on disk with "
            f"links counted once ({row.disk_after / row.db_bytes:.2f}× the database{du}; "
            "one copy expected)"
        )
    return lines


@dataclasses.dataclass
class PruningRow:
    """The "fresh, pruning" row of one size and mode, in a table of its own."""

    row: UnchangedRow


def render_pruning(rows: Sequence[PruningRow]) -> list[list[str]]:
    table = [
        [
            "size",
            "mode",
            "fresh, pruning --run median s",
            "pruning ÷ .backup",
            "pruning ÷ unchanged",
            "pruning ÷ fresh",
            "unchanged − pruning s",
        ]
    ]
    for wrapped in rows:
        row = wrapped.row
        backup, fresh, same, pruning = (row.median(t) for t in UNCHANGED_TOOLS)
        table.append(
            [
                size_label(row.size),
                row.mode,
                f"{pruning:.3f}",
                f"{pruning / backup:.2f}",
                f"{pruning / same:.2f}",
                f"{pruning / fresh:.2f}",
                f"{same - pruning:.3f}",
            ]
        )
    return table


def render_pruning_notes(rows: Sequence[PruningRow]) -> list[str]:
    lines = [
        "fresh, pruning --run: a --run (--keep-last 1, --keep-days 30) into a backup folder "
        f"holding one expired backup, a copy of this database named as taken "
        f"{EXPIRED_AGE_DAYS} days ago and not recorded in any run log (no run log): it makes a "
        "fresh copy and deletes that file, as a nightly run of a changed database does once "
        "30 days of backups are kept; the folder is set up, the copy written and fsynced, "
        "before each trial, untimed, and the pruning run is timed in the same rotation as "
        "the other three",
    ]
    for wrapped in rows:
        row = wrapped.row
        label = f"{size_label(row.size)} {row.mode}"
        trials = len(row.times(UNCHANGED_TOOLS[0]))
        lines.append(
            f"{label}: round by round, median of the ratios: "
            f"pruning ÷ .backup {row.paired('fresh, pruning --run', 'sqlite3 .backup'):.2f}, "
            f"pruning ÷ unchanged {row.paired('fresh, pruning --run', 'unchanged --run'):.2f}, "
            f"pruning ÷ fresh {row.paired('fresh, pruning --run', 'fresh --run'):.2f}"
        )
        lines.append(
            f"{label}: {row.pruned_one} of {trials} pruning runs made a fresh copy (no "
            "linked_to) and pruned exactly the expired backup, leaving only their own "
            "(the run log's pruned list)"
        )
    return lines


# ======================================================================================
# Part: phases
# ======================================================================================


def bench_phases(dbs: Databases, size: int, mode: str, workdir: Path) -> Optional[list[str]]:
    """Time the parts of one backup in-process, one after the other (they overlap in --run)."""
    sys.path.insert(0, str(REPO))
    import database_backup_scheduler as module

    needed = (
        "_SourceFiles", "_TrailingHash", "_copy_in_read_transaction", "_snapshot",
        "check_database_file", "sha256_file", "_fsync_file",
    )  # fmt: skip
    if not all(hasattr(module, name) for name in needed):
        log("phases: the module's internals changed; skipped")
        return None
    source = dbs.get(size, mode)
    out = fresh_folder(workdir / "phases")
    temp = out / "copy.db"
    timings: list[tuple[str, float]] = []

    def timed(label: str, work: Callable[[], object]) -> None:
        nonlocal temp
        if label.startswith("copy"):  # a new file each time: no deletion runs into a part
            temp = out / f"copy{len(timings)}.db"
            temp.touch()
        os.sync()  # each part starts without the previous part's writes still queued
        started = time.perf_counter()
        work()
        timings.append((label, time.perf_counter() - started))

    def direct_copy(hashing: bool) -> None:
        src = sqlite3.connect(module.sqlite_uri(source, "rw"), uri=True, isolation_level=None)
        files = module._SourceFiles(source)
        hasher = module._TrailingHash(temp) if hashing else None
        try:
            with open(temp, "r+b", buffering=0) as handle:
                module._copy_in_read_transaction(
                    src, files, handle, hasher.advance if hasher else (lambda n: None)
                )
            if hasher:
                hasher.finish()
                hasher.result()
        finally:
            src.close()
            files.close()

    def api_copy() -> None:
        src = sqlite3.connect(module.sqlite_uri(source, "rw"), uri=True, isolation_level=None)
        try:
            module._snapshot(src, temp, 60.0)
        finally:
            src.close()

    timed("copy through SQLite's backup API (fallback)", api_copy)
    timed("copy, direct (read transaction)", lambda: direct_copy(False))
    timed("copy, direct, with SHA-256 behind it", lambda: direct_copy(True))
    timed("quick_check of the copy", lambda: module.check_database_file(temp))
    timed("fsync", lambda: module._fsync_file(temp))
    timed("SHA-256 of a finished file (reference)", lambda: module.sha256_file(temp))
    timed("hashlib alone (in-memory 1 MiB chunks)", lambda: _hash_speed(temp))
    shutil.rmtree(out)
    total = sum(t for label, t in timings[2:5])
    lines = [
        f"{size_label(size)} {mode}, in-process, one part at a time; --run overlaps them:",
        "the copy and its hash on one core each, then quick_check while the hash ends",
        f"(direct copy with its hash + quick_check + fsync, one after the other: {total:.2f} s)",
    ]
    lines += [f"  {label:<44} {t:7.3f} s" for label, t in timings]
    return lines


def bench_startup(workdir: Path, rounds: int = 21) -> list[str]:
    """What a process costs before it copies anything: medians of fresh processes."""

    def child(argv: Sequence[str]) -> float:
        times = []
        for _ in range(rounds):
            sample = run_child(argv, cwd=workdir)
            check_ok(argv[0], sample)
            times.append(sample.seconds)
        return statistics.median(times)

    source = SCRIPT.read_text(encoding="utf-8")
    compiles = []
    for _ in range(rounds):
        started = time.perf_counter()
        compile(source, str(SCRIPT), "exec")
        compiles.append(time.perf_counter() - started)
    rows = [
        ("sqlite3 CLI (sqlite3 :memory: 'select 1')", child(["sqlite3", ":memory:", "select 1"])),
        ("python -c pass", child([sys.executable, "-c", "pass"])),
        ("python -S -c pass (no site module)", child([sys.executable, "-S", "-c", "pass"])),
        (f"python {SCRIPT.name} --version", child([sys.executable, str(SCRIPT), "--version"])),
        ("compiling the script, in-process", statistics.median(compiles)),
    ]
    lines = [f"start-up, median of {rounds} (a script run by path is compiled every time):"]
    return lines + [f"  {label:<46} {t:7.3f} s" for label, t in rows]


def _hash_speed(path: Path) -> None:
    with open(path, "rb") as handle:
        digest = hashlib.sha256()
        for chunk in iter(lambda: handle.read(MIB), b""):
            digest.update(chunk)


# ======================================================================================
# Part: writer latency
# ======================================================================================


@dataclasses.dataclass
class WriterResult:
    size: int
    mode: str
    tool: str
    sync: str
    backup_s: float
    outcome: str
    commits: int
    worst_ms: float
    p99_ms: float
    baseline_p99_ms: float
    busy_errors: int


def bench_writer(
    dbs: Databases, size: int, mode: str, tool: str, sync: str, workdir: Path, timeout: float
) -> WriterResult:
    """One copy by ``tool`` while a writer commits; latencies of the commits it overlapped."""
    source = dbs.get(size, mode)
    out = fresh_folder(workdir / "writer")
    stop, samples_file = out / "stop", out / "samples.json"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(source), str(samples_file), str(stop)]
        + [str(WRITER_PAUSE_S), sync],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(WRITER_BASELINE_S)
        began = time.monotonic()
        extra = ["-cmd", ".timeout 5000"] if tool == "sqlite3 .backup" else []
        argv = tool_argv(tool, source, fresh_folder(out / "copy"), extra)
        sample = run_child(argv, cwd=workdir, timeout=timeout)
        ended = time.monotonic()
        time.sleep(0.3)
    finally:
        stop.touch()
        writer.wait(timeout=60)
    records = json.loads(samples_file.read_text())
    during = [(lat, ok) for start, lat, ok in records if start < ended and start + lat > began]
    baseline = [lat for start, lat, ok in records if start + lat < began]
    if sample.timed_out:
        outcome = f"killed after {timeout:.0f} s"
    elif sample.returncode != 0:
        last = (sample.output.strip().splitlines() or ["?"])[-1]
        outcome = f"failed: {last[:60]}"
    else:
        outcome = "ok"
    shutil.rmtree(out)
    latencies = [lat for lat, _ in during] or [0.0]
    return WriterResult(
        size,
        mode,
        tool,
        sync,
        sample.seconds,
        outcome,
        len(during),
        max(latencies) * 1000,
        p99(latencies) * 1000,
        p99(baseline) * 1000 if baseline else 0.0,
        sum(1 for _, ok in during if not ok),
    )


def render_writer(results: Sequence[WriterResult]) -> list[list[str]]:
    table = [
        [
            "size",
            "mode",
            "copy by",
            "writer sync",
            "copy s",
            "outcome",
            "commits during",
            "worst ms",
            "p99 ms",
            "p99 ms idle",
            "busy errors",
        ]
    ]
    for r in results:
        table.append(
            [
                size_label(r.size),
                r.mode,
                r.tool,
                r.sync,
                f"{r.backup_s:.2f}",
                r.outcome,
                str(r.commits),
                f"{r.worst_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.baseline_p99_ms:.1f}",
                str(r.busy_errors),
            ]
        )
    return table


# ======================================================================================
# Part: storage
# ======================================================================================


def bench_storage(dbs: Databases, mode: str, workdir: Path, runs: int) -> list[list[str]]:
    """``runs`` runs of an unchanged database into one folder; one compressed backup."""
    source = dbs.get(STORAGE_SIZE, mode)
    size = source.stat().st_size
    out = fresh_folder(workdir / "storage")
    samples = []
    for _ in range(runs):
        sample = run_child(tool_argv("--run", source, out), cwd=workdir)
        check_ok("--run", sample)
        samples.append(sample)
    folder = out / "backups"
    files, apparent, allocated = disk_bytes_once(folder, ".bak")
    du = du_bytes(folder)
    log_data = json.loads((out / "log.json").read_text())
    linked = sum(1 for run in log_data["runs"] for r in run["results"] if r.get("linked_to"))
    first, rest = samples[0].seconds, [s.seconds for s in samples[1:]]
    table = [["measure", "value"]]
    table.append(["database", f"{size / MIB:,.1f} MiB ({mode})"])
    table.append(["runs into one folder", f"{runs} ({linked} linked to the previous backup)"])
    table.append(["backup files", str(files)])
    table.append(["sum of file sizes", f"{apparent / MIB:,.1f} MiB ({apparent / size:.1f}× db)"])
    table.append(
        ["on disk, links counted once", f"{allocated / MIB:,.1f} MiB ({allocated / size:.2f}× db)"]
    )
    if du is not None:
        table.append(["du -s", f"{du / MIB:,.1f} MiB"])
    table.append([f"vs {runs} × db size", f"{allocated / (runs * size) * 100:.1f}%"])
    table.append(["first run s", f"{first:.2f}"])
    if rest:
        table.append(["median unchanged run s", f"{statistics.median(rest):.2f}"])
    table.append(["peak RSS MB (max)", f"{max(s.max_rss_kb for s in samples) / 1024:.1f}"])
    shutil.rmtree(out)
    kinds = ["gzip"] + (["zstd"] if importlib.util.find_spec("zstandard") else [])
    for kind in kinds:
        out = fresh_folder(workdir / "storage")
        sample = run_child(tool_argv("--run", source, out, ["--compress", kind]), cwd=workdir)
        if sample.returncode != 0:
            last = (sample.output.strip().splitlines() or ["?"])[-2:]
            table.append([f"--compress {kind}", "FAILED: " + " / ".join(x.strip() for x in last)])
            shutil.rmtree(out)
            continue
        (packed,) = list((out / "backups").glob("*.bak.*"))
        packed_size = packed.stat().st_size
        table.append(
            [
                f"--compress {kind}: one backup",
                f"{packed_size / MIB:,.1f} MiB ({packed_size / size * 100:.0f}% of the db), "
                f"{sample.seconds:.2f} s, peak RSS {sample.max_rss_kb / 1024:.1f} MB",
            ]
        )
        shutil.rmtree(out)
    if "zstd" not in kinds:
        table.append(["--compress zstd", "skipped: the zstandard package is not installed"])
    return table


# ======================================================================================
# Output
# ======================================================================================


def text_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i < 3 or not _numeric(cell) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |"]
    lines.append("|" + "|".join(" ---: " if _numeric(c) else " --- " for c in rows[1]) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def print_report(
    header: Sequence[str],
    sections: Sequence[tuple[str, Sequence[Sequence[str]], Sequence[str]]],
) -> None:
    """A benchmark's report, sections of (title, table, notes): as text, then as markdown for
    bench/README.md (a section without a table shows its notes as a code block)."""
    for line in header:
        print(line)
    for title, table, notes in sections:
        print(f"\n== {title}")
        if table:
            print(text_table(table))
        for note in notes:
            print(note)
    print("\n---- markdown ----\n")
    print("```")
    for line in header:
        print(line)
    print("```")
    for title, table, notes in sections:
        print(f"\n### {title}\n")
        if table:
            print(markdown_table(table))
            if notes:
                print()
                for note in notes:
                    print(f"- {note}")
        elif notes:
            print("```")
            for note in notes:
                print(note)
            print("```")


def _numeric(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "", 1).replace("-", "", 1).isdigit()


def module_identity() -> str:
    """Which version of the module was measured: its SHA-256 prefix and modification time."""
    digest = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    changed = dt.datetime.fromtimestamp(SCRIPT.stat().st_mtime)
    return f"module: {SCRIPT.name} sha256 {digest}…, modified {changed:%Y-%m-%d %H:%M:%S}"


def environment() -> list[str]:
    return [
        module_identity(),
        f"date: {dt.datetime.now():%Y-%m-%d %H:%M}; host: {platform.node()}; "
        f"{os.cpu_count()} CPU(s); {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, SQLite library {sqlite3.sqlite_version}, "
        f"sqlite3 CLI {sqlite_cli_version()}",
    ]


# ======================================================================================
# Main
# ======================================================================================


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100M", help="comma-separated, e.g. 100M,1G (100M)")
    parser.add_argument("--trials", type=int, default=5, help="timed rounds per size (5)")
    parser.add_argument("--modes", default="wal,rollback", help="wal,rollback (both)")
    parser.add_argument(
        "--parts",
        default=",".join(DEFAULT_PARTS),
        help=f"comma-separated, of {','.join(PARTS)} ({','.join(DEFAULT_PARTS)})",
    )
    parser.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "dbbackup-bench"),
        help="scratch folder for the databases (default: a folder in the temp dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated databases")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to wait before each run, after the flush (0)",
    )
    parser.add_argument("--storage-runs", type=int, default=STORAGE_RUNS, help="(30)")
    parser.add_argument("--note", default="", help="a line printed with the results")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = (set(modes) - set(MODES)) | (parts - set(PARTS))
    if unknown or args.trials < 1 or not 0 <= args.settle < float("inf"):
        raise SystemExit(
            f"unknown mode or part: {sorted(unknown)} (or --trials below 1, or --settle not >= 0 s)"
        )
    if not shutil.which("sqlite3"):
        raise SystemExit("the sqlite3 CLI is missing: apt-get install sqlite3")
    # the base database and one per mode, and the output; "unchanged" keeps up to three
    # more copies (its backup folder, and the pruning folder's expired and new backups)
    need = max(sizes) * (2 + len(modes) + 3 * ("unchanged" in parts)) if sizes else 0
    workdir = workdir_with_room(args.workdir, need)
    args.file_system = file_system_of(workdir)
    args.rss_floor_mb = run_child(["true"], cwd=workdir).max_rss_kb / 1024
    dbs = Databases(workdir)
    sections: list[tuple[str, Any]] = []
    started = time.perf_counter()
    try:
        timing: list[TimingRow] = []
        if "timing" in parts:
            for size in sizes:
                for mode in modes:
                    log(f"timing {size_label(size)} {mode} ...")
                    timing += bench_timing(dbs, size, mode, args.trials, workdir, args.settle)
            sections.append((f"Whole backup, median of {args.trials} alternating trials", timing))
        if "unchanged" in parts:
            unchanged: list[UnchangedRow] = []
            for size in sizes:
                for mode in modes:
                    log(f"unchanged {size_label(size)} {mode} ...")
                    unchanged.append(
                        bench_unchanged(dbs, size, mode, args.trials, workdir, args.settle)
                    )
            sections.append(
                (f"Unchanged database, median of {args.trials} alternating trials", unchanged)
            )
            sections.append(
                (
                    "Fresh --run pruning one expired backup, in the same alternating trials",
                    [PruningRow(row) for row in unchanged],
                )
            )
        if "phases" in parts:
            lines: list[str] = []
            for size in sizes:
                lines += bench_phases(dbs, size, modes[0], workdir) or []
            lines += bench_startup(workdir)
            sections.append(("Where --run spends its time", lines))
        if "writer" in parts:
            results = []
            for size in sizes:
                for mode in modes:
                    for tool in ("--run", "sqlite3 .backup"):
                        idle = [
                            r.median
                            for r in timing
                            if (r.size, r.mode, r.tool) == (size, mode, tool)
                        ]
                        timeout = max(15.0, 10 * idle[0]) if idle else 20.0 + 30 * size / GIB
                        log(f"writer {size_label(size)} {mode} during {tool} ...")
                        for sync in ("FULL", "OFF"):
                            results.append(
                                bench_writer(dbs, size, mode, tool, sync, workdir, timeout)
                            )
            sections.append(("A concurrent writer's commit latency during one copy", results))
        if "storage" in parts:
            log(f"storage: {args.storage_runs} runs of an unchanged 100M database ...")
            table = bench_storage(dbs, modes[0], workdir, args.storage_runs)
            sections.append(("Storage: an unchanged database, and compression", table))
    finally:
        if not args.keep:
            for size in sizes + [STORAGE_SIZE]:
                dbs.drop(size)
            for leftover in ("out", "writer", "storage", "phases", "unchanged", "pruning"):
                shutil.rmtree(workdir / leftover, ignore_errors=True)
            if not any(workdir.iterdir()):
                workdir.rmdir()
        stop_launcher()
    elapsed = time.perf_counter() - started
    print_results(sections, args, elapsed, workdir)
    return 0


def print_results(
    sections: Sequence[tuple[str, Any]], args: argparse.Namespace, elapsed: float, workdir: Path
) -> None:
    header = environment() + [
        f"workdir: {workdir} ({args.file_system})"
        f"; sizes {args.sizes}; modes {args.modes}; trials {args.trials}; "
        + (f"settle {args.settle:g} s; " if args.settle else "")
        + f"total {elapsed:.0f} s",
        f"peak RSS is each child's own ru_maxrss (os.wait4); a child of the launcher "
        f"cannot show less than {args.rss_floor_mb:.1f} MB (what `true` shows)",
    ]
    if args.note:
        header.append(args.note)
    rendered: list[tuple[str, Any, list[str]]] = []
    for title, data in sections:
        notes: list[str] = []
        if data and isinstance(data[0], TimingRow):
            table = render_timing(data)
            notes = render_targets(data)
        elif data and isinstance(data[0], UnchangedRow):
            table = render_unchanged(data)
            notes = render_unchanged_notes(data)
        elif data and isinstance(data[0], PruningRow):
            table = render_pruning(data)
            notes = render_pruning_notes(data)
        elif data and isinstance(data[0], WriterResult):
            table = render_writer(data)
            notes = [
                "commits during = the writer's commits that overlapped the copy; "
                "p99 ms idle = before the copy started; sqlite3 ran with .timeout 5000 here",
                "writer sync OFF leaves out the writer's own fsyncs, which queue behind the "
                "copy's writes on the same disk: what remains is waiting for locks",
            ]
        elif data and isinstance(data[0], list):
            table = data
        else:
            table = None
            notes = list(data)
        rendered.append((title, table, notes))
    print_report(header, rendered)


if __name__ == "__main__":
    sys.exit(main())
