#!/usr/bin/env python3
"""Benchmark retention and --stats over a backup folder of 10,000 files.

    python bench/bench_retention.py
    python bench/bench_retention.py --files 20000 --trials 9

The folder holds tiny real files (a copy of a two-page SQLite database) named with the
module's own ``format_backup_name``, for two databases, spread evenly over about three
years up to now, as years of several backups a day would leave them. A run log of
``DEFAULTS["log_max_runs"]`` runs sits beside it, as after years of runs.

Timed in-process: ``list_backups`` (scan), ``select_expired`` (flat and tiered rules)
and ``prune_backups``. Timed as whole processes: ``--stats`` and
``--run --keep-days 30 --keep-last 3`` (which backs up two tiny databases, prunes almost
every file and writes the log), and ``--run --keep-days 1094``, a night of a tool that
keeps three years (every file listed, the oldest few pruned). Pruning deletes files, so
the folder is rebuilt before every trial, outside the timed region. Prints the median (and
min/max) of ``--trials``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
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
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "database_backup_scheduler.py"
sys.path.insert(0, str(REPO))

import database_backup_scheduler as dbs  # noqa: E402 - found through the path set above

NAMES = ("app.db", "root_app.db")
SPAN = dt.timedelta(days=3 * 365)
TARGET_S = 0.3


def make_tiny_database(path: Path) -> None:
    """A real two-page SQLite database (8 KiB): the bytes every planted backup holds."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES ('tiny')")
        conn.commit()
    finally:
        conn.close()


def plan_names(files: int, now: dt.datetime) -> list[str]:
    """``files`` backup names, half per database, evenly spaced over ``SPAN`` up to ``now``."""
    per_db = files // len(NAMES)
    step = SPAN / per_db
    names = []
    for name in NAMES:
        for index in range(per_db):
            taken_at = (now - step * index).replace(microsecond=0)
            names.append(dbs.format_backup_name(name, taken_at))
    return names


def plant(folder: Path, names: Sequence[str], content: bytes) -> None:
    """(Re)create the backup folder holding exactly ``names``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700)
    for name in names:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)


def write_run_log(path: Path, names: Sequence[str], folder: Path, runs: int) -> None:
    """A run log of ``runs`` runs, each with one result per database, naming planted files."""
    newest = sorted(names, reverse=True)
    by_db = {name: [n for n in newest if n.startswith(name + ".")][:runs] for name in NAMES}
    entries = []
    for index in range(runs):
        results = []
        for name in NAMES:
            mine = by_db[name]
            if index < len(mine):
                results.append(
                    {
                        "database": name,
                        "source": str(folder.parent / name),
                        "status": "ok",
                        "backup": str(folder / mine[index]),
                        "size_bytes": 8192,
                        "sha256": "0" * 64,
                        "duration_s": 0.01,
                    }
                )
        stamp = dt.datetime.now().astimezone() - dt.timedelta(hours=index * 6)
        entries.append(
            {
                "started_at": stamp.isoformat(timespec="seconds"),
                "finished_at": stamp.isoformat(timespec="seconds"),
                "trigger": "schedule",
                "status": "ok",
                "results": results,
                "pruned": [],
                "warnings": [],
            }
        )
    entries.reverse()
    path.write_text(json.dumps({"version": 1, "runs": entries}, indent=2))


def timed(
    work: Callable[[], object], before: Optional[Callable[[], object]], trials: int
) -> list[float]:
    """Run ``before`` (untimed), then time ``work``, ``trials`` times; one untimed warm-up."""
    times = []
    for trial in range(trials + 1):
        if before is not None:
            before()
        started = time.perf_counter()
        work()
        if trial:
            times.append(time.perf_counter() - started)
    return times


def run_cli(args: Sequence[str], cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=str(cwd), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {done.returncode}):\n{done.stderr}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="backup files (10000)")
    parser.add_argument("--trials", type=int, default=7, help="timed trials per row (7)")
    parser.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "dbbackup-bench-retention"),
        help="scratch folder (default: a folder in the temp dir)",
    )
    args = parser.parse_args(argv)
    root = Path(args.workdir)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    try:
        rows = measure(root, args.files, args.trials)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_results(rows, args)
    return 0


def measure(root: Path, files: int, trials: int) -> list[tuple[str, str, list[float]]]:
    folder = root / "backups"
    for name in NAMES:
        make_tiny_database(root / name)
    content = (root / NAMES[0]).read_bytes()
    now = dt.datetime.now().replace(microsecond=0)
    names = plan_names(files, now)
    log_file = root / "log.json"
    write_run_log(log_file, names, folder, dbs.DEFAULTS["log_max_runs"])

    def replant() -> None:
        plant(folder, names, content)

    replant()
    listed = dbs.list_backups(folder, NAMES)
    assert sum(len(v) for v in listed.values()) == len(names), "the module skipped some names"
    flat = {"keep_days": 30, "keep_last": 3}
    tiered = {**flat, "keep_daily": 14, "keep_weekly": 8, "keep_monthly": 24}

    def select(rules: dict[str, int]) -> list[dbs.BackupFile]:
        return [b for v in listed.values() for b in dbs.select_expired(v, now=now, **rules)]

    expired_flat, expired_tiered = select(flat), select(tiered)
    n_flat, n_tiered = len(expired_flat), len(expired_tiered)
    rows = []
    rows.append(
        (
            "list_backups (scandir + stat + parse)",
            f"{len(names):,} files",
            timed(lambda: dbs.list_backups(folder, NAMES), None, trials),
        )
    )
    rows.append(
        (
            "select_expired, keep_days 30 + keep_last 3",
            f"{n_flat:,} expired",
            timed(lambda: select(flat), None, trials),
        )
    )
    rows.append(
        (
            "select_expired, + daily 14, weekly 8, monthly 24",
            f"{n_tiered:,} expired",
            timed(lambda: select(tiered), None, trials),
        )
    )

    def prune() -> None:
        fresh = dbs.list_backups(folder, NAMES)
        expired = [b for v in fresh.values() for b in dbs.select_expired(v, now=now, **flat)]
        deleted, errors = dbs.prune_backups(expired)
        assert len(deleted) == n_flat and not errors, (len(deleted), errors)

    rows.append(
        (
            "prune_backups (flat rules)",
            f"deletes {n_flat:,}",
            timed(lambda: dbs.prune_backups(expired_flat), replant, trials),
        )
    )
    rows.append(
        ("list + select + prune, in-process", f"deletes {n_flat:,}", timed(prune, replant, trials))
    )
    dbs_args = [arg for name in NAMES for arg in ("--db", f"{name}={root / name}")]
    common = [*dbs_args, "--backup-dir", str(folder), "--log-file", str(log_file)]
    common += ["--archive-every-days", "0"]  # the databases' folder is no app's
    rows.append(
        (
            "python startup alone (python -c pass)",
            "reference",
            timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), None, trials),
        )
    )
    rows.append(
        (
            "--version (startup + compiling the script)",
            "reference",
            timed(lambda: run_cli(["--version"], root), None, trials),
        )
    )
    replant()
    rows.append(
        (
            "--stats (whole process)",
            f"{len(names):,} files, {dbs.DEFAULTS['log_max_runs']} runs in log",
            timed(lambda: run_cli(["--stats", *common], root), None, trials),
        )
    )
    log_text = log_file.read_text()

    def reset() -> None:
        replant()
        log_file.write_text(log_text)

    run_args = ["--run", *common, "--keep-days", "30", "--keep-last", "3"]
    rows.append(
        (
            "--run --keep-days 30 --keep-last 3 (whole process)",
            f"2 tiny dbs, prunes {n_flat:,}",
            timed(lambda: run_cli(run_args, root), reset, trials),
        )
    )
    # A night of a tool that keeps three years: every backup listed, the oldest few pruned.
    keep_days = SPAN.days - 1
    n_night = len(select({"keep_days": keep_days, "keep_last": 3}))
    night_args = ["--run", *common, "--keep-days", str(keep_days), "--keep-last", "3"]
    rows.append(
        (
            f"--run --keep-days {keep_days} --keep-last 3 (whole process)",
            f"2 tiny dbs, {len(names) - n_night:,} kept, prunes {n_night:,}",
            timed(lambda: run_cli(night_args, root), reset, trials),
        )
    )
    return rows


def print_results(rows: Sequence[tuple[str, str, list[float]]], args: argparse.Namespace) -> None:
    header = [
        "what",
        "work",
        "median s",
        "min s",
        "max s",
        f"≤ {TARGET_S} s",
    ]
    table = [header]
    for what, work, times in rows:
        median = statistics.median(times)
        verdict = "reference" if work == "reference" else ("yes" if median <= TARGET_S else "NO")
        table.append(
            [what, work, f"{median:.4f}", f"{min(times):.4f}", f"{max(times):.4f}", verdict]
        )
    print(
        f"{args.files:,} backup files over {SPAN.days} days, {len(NAMES)} databases; "
        f"median of {args.trials} trials after one warm-up"
    )
    print(
        f"{platform.node()}, {os.cpu_count()} CPU(s), python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {dt.datetime.now():%Y-%m-%d %H:%M}"
    )
    digest = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    changed = dt.datetime.fromtimestamp(SCRIPT.stat().st_mtime)
    print(f"module: {SCRIPT.name} sha256 {digest}…, modified {changed:%Y-%m-%d %H:%M:%S}")
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    print("\n---- markdown ----\n")
    print("| " + " | ".join(header) + " |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
