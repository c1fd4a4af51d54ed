#!/usr/bin/env python3
"""Benchmark a whole ``--archive`` of an app's instance folder against ``zip -r``, side by side.

    python bench/bench_archive.py
    python bench/bench_archive.py --size-mb 512 --repeat 5
    python bench/bench_archive.py --size-mb 2048 --workdir WORKDIR --keep
    python bench/bench_archive.py --size-mb 20 --repeat 1   # the smoke test's size

An app folder laid out as the tool expects: a copy of the script at its root and an
``instance/`` folder of about ``--size-mb`` MiB, as a pet-painting site's would be: mostly
pictures (``uploads/<month>/<n>.jpg``, random bytes, 1 to 5 MiB each, which no compressor
shrinks), some text (``pages/*.html`` and ``notes/*.txt``, about 5%, which deflate well),
and a WAL SQLite database ``pet_painting.db`` of 50 MiB (at most a quarter of the size) with
the tests' ``items`` and ``totals`` tables. Two commands, each with the app root as its
working folder:

- ``python database_backup_scheduler.py --archive``: the tool, with its defaults (the
  instance folder into ``instance/backups/instance.<time>.zip``, the database as a checked
  snapshot, pictures stored, the rest deflated, a manifest of SHA-256s, re-read and
  checked, fsync, rename);
- ``zip -r -q OUT instance -x 'instance/backups/*'``: Info-ZIP's zip of the same folder
  (deflate level 6 for everything, no check, no fsync), the peer (skipped when the zip
  command is missing).

Each runs once untimed (a warm-up, so both read a warm page cache: dropping the caches is
not possible here), then ``--repeat`` times in alternating order, each into a fresh output:
before each run, untimed, the previous archives are deleted and every queued write flushed
(``os.sync``). Peak memory is each child's own ``ru_maxrss`` (``os.wait4``), through the
launcher of ``bench_backup.py``, against the tool's 64 MB target. Nothing is asserted: it
prints figures, then the same figures as markdown, ready to paste into a README. The scratch
folder is removed at the end, also after a failure (``--keep`` keeps the app folder, which a
later run of the same size reuses).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_backup import (  # noqa: E402 - found through the path set above
    MIB,
    PAGE_SIZE,
    SCRIPT,
    Sample,
    check_ok,
    file_system_of,
    log,
    print_report,
    run_child,
    stop_launcher,
    workdir_with_room,
)

DB_NAME = "pet_painting.db"
DB_SIZE = 50 * MIB
TEXT_SHARE = 0.05
RSS_TARGET_MB = 64
TOOLS = ("--archive", "zip -r")
MARKER = ".bench-archive-size"  # in the app root: the size the kept folder was made for
WORDS = (
    "cat dog parrot portrait oil canvas brush frame owner order gallery colour light shadow "
    "whisker paw tail fur eye nose ear smile gift birthday memory studio painter sketch"
).split()


# ======================================================================================
# The app folder
# ======================================================================================


def make_database(path: Path, size: int) -> None:
    """A WAL database of about ``size`` bytes with the tests' tables: ``items`` (value, pad)
    and ``totals`` (total, count) kept equal to their sum and count.

    Made fast (journal off, synchronous off, rows by a recursive CTE), then switched to WAL.
    """
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, value INTEGER, pad BLOB)")
        conn.execute("CREATE TABLE totals(id INTEGER PRIMARY KEY, total INTEGER, count INTEGER)")
        while conn.execute("PRAGMA page_count").fetchone()[0] * PAGE_SIZE < size:
            conn.execute(
                "INSERT INTO items(value, pad) "
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) "
                "SELECT abs(random()) % 1000, randomblob(200 + abs(random()) % 400) FROM c"
            )
        conn.execute("INSERT INTO totals SELECT 1, SUM(value), COUNT(*) FROM items")
        got = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        assert got.lower() == "wal", got
    finally:
        conn.close()


def write_text(path: Path, size: int, rng: random.Random) -> None:
    """About ``size`` bytes of words, the way pages and notes deflate."""
    lines = []
    written = 0
    while written < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12)) + "\n"
        lines.append(line)
        written += len(line)
    path.write_text("".join(lines), encoding="utf-8")


def make_instance(instance: Path, size: int) -> dict[str, int]:
    """Fill ``instance`` with about ``size`` bytes: the database, text, then pictures.

    Returns how many files of each kind it made, and their bytes.
    """
    rng = random.Random(20261206)
    instance.mkdir(parents=True)
    (instance / "backups").mkdir()
    db_size = max(MIB, min(DB_SIZE, size // 4))
    make_database(instance / DB_NAME, db_size)
    made = {"databases": 1, "database_bytes": (instance / DB_NAME).stat().st_size}
    text_left = int(size * TEXT_SHARE)
    made["texts"] = made["text_bytes"] = 0
    while text_left > 0:
        folder = instance / ("pages" if made["texts"] % 2 else "notes")
        folder.mkdir(exist_ok=True)
        suffix = ".html" if folder.name == "pages" else ".txt"
        one = min(text_left, rng.randint(4_000, 400_000))
        write_text(folder / f"{made['texts']:05d}{suffix}", one, rng)
        made["texts"] += 1
        made["text_bytes"] += one
        text_left -= one
    pictures_left = size - made["database_bytes"] - made["text_bytes"]
    made["pictures"] = made["picture_bytes"] = 0
    while pictures_left > 0:
        month = instance / "uploads" / f"2026-{made['pictures'] // 40 % 12 + 1:02d}"
        month.mkdir(parents=True, exist_ok=True)
        one = min(pictures_left, rng.randint(1 * MIB, 5 * MIB))
        (month / f"{made['pictures']:05d}.jpg").write_bytes(os.urandom(one))
        made["pictures"] += 1
        made["picture_bytes"] += one
        pictures_left -= one
    return made


@dataclasses.dataclass
class App:
    """An app's root: a copy of the script and the instance folder to archive."""

    root: Path
    script: Path
    made: dict[str, int]

    @property
    def instance(self) -> Path:
        return self.root / "instance"

    @property
    def backup_dir(self) -> Path:
        return self.instance / "backups"

    @classmethod
    def create(cls, root: Path, script: Path, size: int) -> App:
        """The app at ``root``: reused when an earlier ``--keep`` left one of this size."""
        marker = root / MARKER
        kept = json.loads(marker.read_text()) if marker.exists() else {}
        if kept.get("size") == size:
            log(f"reusing the app folder {root}")
            made = kept["made"]
        else:
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            started = time.perf_counter()
            made = make_instance(root / "instance", size)
            marker.write_text(json.dumps({"size": size, "made": made}))
            took = time.perf_counter() - started
            log(f"made {root}/instance: {size / MIB:,.0f} MiB in {took:.1f} s")
        copy = root / SCRIPT.name
        shutil.copy2(script, copy)
        return cls(root, copy, made)

    def folder_bytes(self) -> tuple[int, int]:
        """(files, bytes) of the instance folder, the backup folder left out."""
        files = total = 0
        for path in self.instance.rglob("*"):
            if self.backup_dir in path.parents or path == self.backup_dir:
                continue
            if path.is_file() and not path.is_symlink():
                files += 1
                total += path.stat().st_size
        return files, total

    def identity(self) -> str:
        digest = hashlib.sha256(self.script.read_bytes()).hexdigest()[:12]
        changed = dt.datetime.fromtimestamp(self.script.stat().st_mtime)
        return f"module: {self.script.name} sha256 {digest}…, modified {changed:%Y-%m-%d %H:%M:%S}"


# ======================================================================================
# Rounds
# ======================================================================================


def tool_argv(tool: str, app: App, out: Path) -> list[str]:
    """The command line of one tool, run in the app root; the zip peer writes into ``out``."""
    if tool == "--archive":
        return [sys.executable, str(app.script), "--archive"]
    return ["zip", "-r", "-q", str(out / "out.zip"), "instance", "-x", "instance/backups/*"]


def shown(tool: str, app: App, out: Path) -> str:
    """The command as an operator would type it (paths shortened)."""
    argv = tool_argv(tool, app, out)
    text = " ".join(f"'{a}'" if "*" in a else a for a in argv)
    return (
        text.replace(str(out), "OUT")
        .replace(str(app.root) + "/", "")
        .replace(sys.executable, "python")
    )


def clear_outputs(app: App, out: Path) -> None:
    """Delete every archive either tool made, then flush queued writes (untimed)."""
    for path in app.backup_dir.iterdir():
        if path.name.endswith(".zip"):
            path.unlink()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.sync()


def archive_of(tool: str, app: App, out: Path) -> Path:
    """The one archive the tool just made."""
    if tool == "--archive":
        made = [p for p in app.backup_dir.iterdir() if p.name.endswith(".zip")]
        if len(made) != 1:
            raise SystemExit(f"--archive left {len(made)} archives in {app.backup_dir}")
        return made[0]
    return out / "out.zip"


@dataclasses.dataclass
class Rounds:
    """Every timed sample of each tool, and the size of the archive each made."""

    samples: dict[str, list[Sample]]
    sizes: dict[str, int]

    def times(self, tool: str) -> list[float]:
        return [s.seconds for s in self.samples[tool]]

    def median(self, tool: str) -> float:
        return statistics.median(self.times(tool))

    def peak_rss_mb(self, tool: str) -> float:
        return max(s.max_rss_kb for s in self.samples[tool]) / 1024


def bench_archive(app: App, repeat: int, out: Path, tools: Sequence[str]) -> Rounds:
    """Each tool once untimed (its archive checked), then ``repeat`` alternating rounds."""
    result = Rounds({tool: [] for tool in tools}, {})

    def run(tool: str) -> Sample:
        clear_outputs(app, out)
        sample = run_child(tool_argv(tool, app, out), cwd=app.root)
        check_ok(tool, sample)
        result.sizes[tool] = archive_of(tool, app, out).stat().st_size
        return sample

    for tool in tools:
        started = time.perf_counter()
        run(tool)
        log(f"  warm-up {tool}: {time.perf_counter() - started:.2f} s")
    for index in range(repeat):
        shift = index % len(tools)
        for tool in list(tools[shift:]) + list(tools[:shift]):
            result.samples[tool].append(run(tool))
        log(
            f"  round {index + 1}/{repeat}: "
            + ", ".join(f"{t} {result.samples[t][-1].seconds:.2f} s" for t in tools)
        )
    clear_outputs(app, out)
    return result


# ======================================================================================
# Output
# ======================================================================================


def render(result: Rounds, folder_bytes: int) -> list[list[str]]:
    tools = list(result.samples)
    peer = result.median("zip -r") if "zip -r" in result.samples else None
    header = ["command", "median s", "min s", "max s", "MiB/s", "÷ zip -r"]
    table = [header + ["archive MiB", "% of folder", "peak RSS MB"]]
    for tool in tools:
        times = result.times(tool)
        median = statistics.median(times)
        table.append(
            [
                tool,
                f"{median:.3f}",
                f"{min(times):.3f}",
                f"{max(times):.3f}",
                f"{folder_bytes / MIB / median:,.0f}",
                f"{median / peer:.2f}" if peer else "-",
                f"{result.sizes[tool] / MIB:,.1f}",
                f"{result.sizes[tool] / folder_bytes * 100:.1f}",
                f"{result.peak_rss_mb(tool):.1f}",
            ]
        )
    return table


def render_notes(result: Rounds, size_mb: int) -> list[str]:
    notes = []
    tool = result.median("--archive")
    if "zip -r" in result.samples:
        peer = result.median("zip -r")
        paired = [a / b for a, b in zip(result.times("--archive"), result.times("zip -r"))]
        notes.append(
            f"{size_mb}M: --archive / zip -r = {tool / peer:.2f} (medians); round by round: "
            f"median {statistics.median(paired):.2f}, {min(paired):.2f} to {max(paired):.2f}"
        )
        notes.append(
            f"archive sizes: --archive {result.sizes['--archive'] / MIB:,.1f} MiB, "
            f"zip -r {result.sizes['zip -r'] / MIB:,.1f} MiB "
            f"({result.sizes['--archive'] / result.sizes['zip -r']:.3f}×)"
        )
    else:
        notes.append("zip -r: skipped, the zip command is not installed")
    peak = result.peak_rss_mb("--archive")
    verdict = "met" if peak < RSS_TARGET_MB else "MISSED"
    notes.append(f"--archive peak RSS {peak:.1f} MB ({verdict}, target < {RSS_TARGET_MB})")
    return notes


def zip_version() -> str:
    if not shutil.which("zip"):
        return "missing"
    done = subprocess.run(["zip", "-v"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("This is Zip"):
            return line.split("(")[0].replace("This is ", "").strip()
    return "?"


def environment(app: App) -> list[str]:
    return [
        app.identity(),
        f"date: {dt.datetime.now():%Y-%m-%d %H:%M}; host: {platform.node()}; "
        f"{os.cpu_count()} CPU(s); {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, SQLite library {sqlite3.sqlite_version}, "
        f"zip: {zip_version()}",
    ]


# ======================================================================================
# Main
# ======================================================================================


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--size-mb", type=int, default=2048, help="the instance folder's size, MiB (2048)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (3)")
    parser.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "dbbackup-bench-archive"),
        help="scratch folder for the app and outputs (default: a folder in the temp dir)",
    )
    parser.add_argument(
        "--script",
        default=str(SCRIPT),
        help="the module to copy into the app (default: the repo's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the app folder")
    parser.add_argument("--note", default="", help="a line printed with the results")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.size_mb < 1 or args.repeat < 1:
        raise SystemExit("give --size-mb and --repeat of 1 or more")
    size = args.size_mb * MIB
    tools = [t for t in TOOLS if t != "zip -r" or shutil.which("zip")]
    # the folder, and one archive of each tool at most the folder's size
    workdir = workdir_with_room(args.workdir, 3 * size)
    file_system = file_system_of(workdir)
    started = time.perf_counter()
    app_root, out = workdir / "app", workdir / "out"
    try:
        rss_floor_mb = run_child(["true"], cwd=workdir).max_rss_kb / 1024
        app = App.create(app_root, Path(args.script), size)
        files, folder_bytes = app.folder_bytes()
        commands = [f"{t}: {shown(t, app, out)}" for t in tools]
        header = environment(app)
        log(f"archive beside zip -r, {args.size_mb} MiB, {args.repeat} rounds ...")
        result = bench_archive(app, args.repeat, out, tools)
    finally:
        stop_launcher()
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(app_root, ignore_errors=True)
            if workdir.exists() and not any(workdir.iterdir()):
                workdir.rmdir()
    elapsed = time.perf_counter() - started
    made = app.made
    contents = (
        f"{made['pictures']} pictures ({made['picture_bytes'] / MIB:,.0f} MiB), "
        f"{made['texts']} text files ({made['text_bytes'] / MIB:,.1f} MiB), "
        f"{DB_NAME} ({made['database_bytes'] / MIB:,.0f} MiB, WAL)"
    )
    header += [
        f"workdir: {workdir} ({file_system}); instance folder {files:,} files, "
        f"{folder_bytes / MIB:,.0f} MiB: {contents}; rounds {args.repeat}; total {elapsed:.0f} s",
        f"peak RSS is each child's own ru_maxrss (os.wait4); a child of the launcher "
        f"cannot show less than {rss_floor_mb:.1f} MB (what `true` shows)",
        "warm page cache: each command ran once untimed first (caches cannot be dropped here)",
        "commands, run in the app root (OUT: a folder outside the app, emptied before each):",
        *(f"  {line}" for line in commands),
    ]
    if "zip -r" not in tools:
        header.append("zip -r: skipped, the zip command is not installed")
    if args.note:
        header.append(args.note)
    title = f"Archive of the instance folder, median of {args.repeat} alternating rounds"
    print_report(
        header, [(title, render(result, folder_bytes), render_notes(result, args.size_mb))]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
