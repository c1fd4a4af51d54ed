#!/usr/bin/env python3
"""Benchmark a whole ``--drill`` against a plain ``--restore`` of the same backup, side by side.

    python bench/bench_drill.py
    python bench/bench_drill.py --size-mb 100 --rounds 9
    python bench/bench_drill.py --size-mb 1024 --rounds 5 --workdir WORKDIR --keep
    python bench/bench_drill.py --script COPY.py   # another version, e.g. from git show

An app folder laid out as the tool expects: a copy of the script at its root and one WAL
database at ``instance/pet_painting.db`` (about ``--size-mb`` MiB: owners, paintings and
comments, foreign keys between them, two indexes besides the primary keys and a unique
constraint; paintings carry images of 0.2 to 8 KB and optional notes, comments bodies of
40 to 340 characters). Every command runs with the app root as its working folder and no
settings, as an operator runs it: the database, ``instance/backups`` and the run log
``database_backup_log.json`` are the defaults. One untimed ``--run`` makes the backup.
Four commands then run as fresh processes, each once untimed (its output checked), then
alternately ``--rounds`` times in a rotating order:

- ``--drill``: restores the newest backup (the one just made) into a scratch folder in
  ``instance/backups`` through the restore path (the backup's integrity_check and SHA-256,
  SQLite's backup API into a temporary file, quick_check, SHA-256, fsync, rename), then
  checks the restored copy (integrity_check, foreign_key_check, the schema against the live
  database's, every row of every table read, row counts against the live database's);
- ``--restore BACKUP --target OUT --yes``: the same backup into a new file outside the app
  (no other flag: a target that is none of the configured databases is not "another
  database", and the backup is in the run log, so its SHA-256 is checked);
- ``sqlite3 BACKUP ".backup OUT"`` and ``cp`` + fsync of the backup, as floors (the first
  is skipped when the sqlite3 CLI is missing).

Before each run, untimed: the previous output (and any ``-wal``, ``-shm``, ``-journal``) is
deleted, the run log is put back as the ``--run`` left it (so every drill and restore finds
the same log), and every queued write is flushed (``os.sync``). How each timed drill split
its time is read from the run log after it: the drill's record there, with ``restore_s`` and
``check_s``, is the one ``--drill --json`` prints (the untimed first drill runs with
``--json`` and is checked against the log). Peak memory is each child's own ``ru_maxrss``,
through the launcher of ``bench_backup.py``. Nothing is asserted: it prints figures, then
the same figures as markdown, ready to paste into a README. The scratch folder is removed at
the end, also after a failure or Ctrl+C (``--keep`` keeps the made database for the next run).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_backup import (  # noqa: E402 - found through the path set above
    CP_FSYNC,
    MIB,
    PAGE_SIZE,
    SCRIPT,
    Sample,
    check_ok,
    file_system_of,
    fresh_folder,
    log,
    print_report,
    run_child,
    size_label,
    sqlite_cli_version,
    stop_launcher,
    workdir_with_room,
)

DB_NAME = "pet_painting.db"
RUN_LOG = "database_backup_log.json"
TABLES = ("owners", "paintings", "comments")
TOOLS = ("--drill", "--restore", "sqlite3 .backup", "cp+fsync")
# One batch of rows: about 10 MiB, most of it the paintings' images.
BATCH = {"owners": 500, "paintings": 2_000, "comments": 8_000}
BATCH_BYTES = 10 * MIB

SCHEMA = (
    "CREATE TABLE owners(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "email TEXT NOT NULL UNIQUE, joined_at REAL NOT NULL)",
    "CREATE TABLE paintings(id INTEGER PRIMARY KEY, "
    "owner_id INTEGER NOT NULL REFERENCES owners(id), title TEXT NOT NULL, "
    "painted_at REAL NOT NULL, image BLOB NOT NULL, notes TEXT)",
    "CREATE INDEX paintings_owner ON paintings(owner_id, painted_at)",
    "CREATE TABLE comments(id INTEGER PRIMARY KEY, "
    "painting_id INTEGER NOT NULL REFERENCES paintings(id), "
    "author_id INTEGER NOT NULL REFERENCES owners(id), body TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX comments_painting ON comments(painting_id)",
)

# Each statement takes (rows, first id, ...); ids point at rows made before them.
FILL = {
    "owners": "INSERT INTO owners(id, name, email, joined_at) "
    "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ? - 1) "
    "SELECT ?2 + x, 'owner ' || hex(randomblob(4 + abs(random()) % 12)), "
    "'owner' || (?2 + x) || '@example.com', 1.6e9 + abs(random()) % 1e8 FROM c",
    "paintings": "INSERT INTO paintings(id, owner_id, title, painted_at, image, notes) "
    "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ? - 1) "
    "SELECT ?2 + x, 1 + abs(random()) % ?3, 'painting ' || hex(randomblob(8)), "
    "1.6e9 + abs(random()) % 1e8, randomblob(200 + abs(random()) % 7800), "
    "CASE WHEN random() % 2 = 0 THEN hex(randomblob(abs(random()) % 300)) END FROM c",
    "comments": "INSERT INTO comments(id, painting_id, author_id, body, at) "
    "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ? - 1) "
    "SELECT ?2 + x, 1 + abs(random()) % ?3, 1 + abs(random()) % ?4, "
    "hex(randomblob(20 + abs(random()) % 150)), 1.6e9 + abs(random()) % 1e8 FROM c",
}


# ======================================================================================
# Database
# ======================================================================================


def make_app_database(path: Path, size: int) -> None:
    """A WAL database of about ``size`` bytes: owners, their paintings, comments on them.

    Made as ``bench_backup.py`` makes its databases (journal off, synchronous off, rows
    by a recursive CTE), then switched to WAL.
    """
    path.unlink(missing_ok=True)
    temp = path.with_name(path.name + ".making")
    temp.unlink(missing_ok=True)
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-65536")
        for statement in SCHEMA:
            conn.execute(statement)
        made = dict.fromkeys(TABLES, 0)
        while True:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            if pages * PAGE_SIZE >= size:
                break
            share = min(1.0, (size - pages * PAGE_SIZE) / BATCH_BYTES)
            rows = {table: max(1, int(count * share)) for table, count in BATCH.items()}
            conn.execute("BEGIN")
            conn.execute(FILL["owners"], (rows["owners"], made["owners"] + 1))
            made["owners"] += rows["owners"]
            conn.execute(
                FILL["paintings"], (rows["paintings"], made["paintings"] + 1, made["owners"])
            )
            made["paintings"] += rows["paintings"]
            conn.execute(
                FILL["comments"],
                (rows["comments"], made["comments"] + 1, made["paintings"], made["owners"]),
            )
            made["comments"] += rows["comments"]
            conn.execute("COMMIT")
        got = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        assert got.lower() == "wal", got
    finally:
        conn.close()
    os.replace(temp, path)


def row_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()


def made_database(workdir: Path, size: int) -> Path:
    """The database of this size in ``workdir``, made unless an earlier ``--keep`` left it."""
    path = workdir / f"app-{size_label(size)}.db"
    if not path.exists():
        started = time.perf_counter()
        make_app_database(path, size)
        took = time.perf_counter() - started
        log(f"made {path.name}: {path.stat().st_size / MIB:,.0f} MiB in {took:.1f} s")
    return path


# ======================================================================================
# The app folder
# ======================================================================================


@dataclasses.dataclass
class App:
    """An app's root: the script, ``instance/pet_painting.db``, its backups and run log."""

    root: Path
    script: Path
    database: Path
    backup: Path
    log_bytes: bytes

    @property
    def run_log(self) -> Path:
        return self.root / RUN_LOG

    @classmethod
    def create(cls, root: Path, script: Path, database: Path) -> App:
        """Lay the app out, then make its one backup with an untimed ``--run``."""
        fresh_folder(root / "instance")
        copy = root / SCRIPT.name
        shutil.copy2(script, copy)
        live = root / "instance" / DB_NAME
        shutil.copyfile(database, live)
        started = time.perf_counter()
        check_ok(
            "--run",
            run_child([sys.executable, str(copy), "--run", "--archive-every-days", "0"], cwd=root),
        )
        log(f"--run made the backup in {time.perf_counter() - started:.1f} s")
        (backup,) = (root / "instance" / "backups").glob(f"{DB_NAME}.*.bak")
        return cls(root, copy, live, backup, (root / RUN_LOG).read_bytes())

    def reset_log(self) -> None:
        """The run log as the ``--run`` left it: every drill and restore finds the same."""
        self.run_log.write_bytes(self.log_bytes)

    def last_drill(self) -> dict[str, Any]:
        """This database's entry in the newest drill record of the run log."""
        runs = json.loads(self.run_log.read_text())["runs"]
        record = next(r for r in reversed(runs) if r.get("kind") == "drill")
        return drill_entry(record)

    def identity(self) -> str:
        """Which version of the module was measured: the copy's SHA-256 prefix and the
        modification time it was copied with (the repo's file may change while this runs)."""
        digest = hashlib.sha256(self.script.read_bytes()).hexdigest()[:12]
        changed = dt.datetime.fromtimestamp(self.script.stat().st_mtime)
        return f"module: {SCRIPT.name} sha256 {digest}…, modified {changed:%Y-%m-%d %H:%M:%S}"


def drill_entry(record: dict[str, Any]) -> dict[str, Any]:
    entry = next(d for d in record["drills"] if d["database"] == DB_NAME)
    if entry["status"] != "ok":
        raise SystemExit(f"the drill of {DB_NAME} failed: {entry['findings']}")
    return entry


# ======================================================================================
# Children
# ======================================================================================


def tool_argv(tool: str, app: App, out: Path) -> list[str]:
    """The command line of one tool; anything it writes outside the app goes into ``out``."""
    if tool == "--drill":
        return [sys.executable, str(app.script), "--drill"]
    if tool == "--restore":
        restore = ["--restore", str(app.backup), "--target", str(out / DB_NAME), "--yes"]
        return [sys.executable, str(app.script), *restore]
    if tool == "sqlite3 .backup":
        return ["sqlite3", str(app.backup), f'.backup "{out / DB_NAME}"']
    return [sys.executable, "-c", CP_FSYNC, str(app.backup), str(out / DB_NAME)]


def shown(argv: Sequence[str], app: App, out: Path) -> str:
    """A command line as printed: paths relative to the app root, or under OUT."""
    words = []
    for word in argv:
        if word == sys.executable:
            word = "python"
        elif word == CP_FSYNC:
            word = "'<copyfile + fsync>'"
        elif word.startswith(str(app.root) + os.sep):
            word = os.path.relpath(word, app.root)
        word = word.replace(str(out), "OUT")
        words.append(f"'{word}'" if " " in word and not word.startswith("'") else word)
    return " ".join(words)


@dataclasses.dataclass
class Rounds:
    """Every tool's samples, round by round, and each timed drill's own split."""

    size: int
    samples: dict[str, list[Sample]]
    drills: list[dict[str, Any]]
    counts: dict[str, int]

    def times(self, tool: str) -> list[float]:
        return [s.seconds for s in self.samples[tool]]

    def median(self, tool: str) -> float:
        return statistics.median(self.times(tool))

    def peak_rss_mb(self, tool: str) -> float:
        return max(s.max_rss_kb for s in self.samples[tool]) / 1024


def check_first(tool: str, app: App, out: Path, counts: dict[str, int]) -> None:
    """After the untimed first run: the output holds the database, rows and all."""
    if tool == "--drill":
        return
    if row_counts(out / DB_NAME) != counts:
        raise SystemExit(f"{tool}: {out / DB_NAME} does not hold the database's rows")
    leftovers = sorted(p.name for p in out.iterdir() if not p.name.startswith(DB_NAME))
    if leftovers:
        raise SystemExit(f"{tool} left {leftovers} in {out}")


def first_drill(app: App, counts: dict[str, int]) -> None:
    """The untimed first drill, with ``--json``: it passed, read every row, and printed the
    record the run log holds (which the timed drills' splits are then read from)."""
    done = subprocess.run(
        [sys.executable, str(app.script), "--drill", "--json"],
        cwd=app.root,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"--drill --json failed (exit {done.returncode}):\n{done.stderr}")
    printed = drill_entry(json.loads(done.stdout))
    if printed != app.last_drill():
        raise SystemExit("--drill --json printed another record than the run log holds")
    if printed["rows_read"] != sum(counts.values()) or printed["tables"] != len(TABLES):
        raise SystemExit(f"the drill read {printed['rows_read']:,} rows; expected {counts}")


def bench_drill(app: App, size: int, rounds: int, out: Path, tools: Sequence[str]) -> Rounds:
    """Each tool once untimed (output checked), then ``rounds`` rounds in a rotating order."""
    counts = row_counts(app.database)
    backups = sorted(p.name for p in app.backup.parent.iterdir())
    result = Rounds(size, {tool: [] for tool in tools}, [], counts)

    def run(tool: str) -> Sample:
        fresh_folder(out)
        app.reset_log()
        os.sync()
        sample = run_child(tool_argv(tool, app, out), cwd=app.root)
        check_ok(tool, sample)
        return sample

    for tool in tools:
        if tool == "--drill":
            app.reset_log()
            first_drill(app, counts)
        else:
            run(tool)
        check_first(tool, app, out, counts)
    for index in range(rounds):
        shift = index % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            result.samples[tool].append(run(tool))
            if tool == "--drill":
                result.drills.append(app.last_drill())
        log(
            f"  {size_label(size)} round {index + 1}/{rounds}: "
            + ", ".join(f"{t} {result.samples[t][-1].seconds:.2f} s" for t in tools)
        )
    left = sorted(p.name for p in app.backup.parent.iterdir())
    if left != backups:
        raise SystemExit(f"the backup folder changed: {backups} before, {left} after")
    shutil.rmtree(out)
    return result


# ======================================================================================
# Output
# ======================================================================================


def render(result: Rounds) -> list[list[str]]:
    table = [["size", "command", "median s", "min s", "max s", "÷ --restore", "peak RSS MB"]]
    restore = result.median("--restore")
    for tool in result.samples:
        times = result.times(tool)
        table.append(
            [
                size_label(result.size),
                tool,
                f"{statistics.median(times):.3f}",
                f"{min(times):.3f}",
                f"{max(times):.3f}",
                f"{statistics.median(times) / restore:.2f}",
                f"{result.peak_rss_mb(tool):.1f}",
            ]
        )
    return table


def render_notes(result: Rounds) -> list[str]:
    """The ratio, round by round too, and how the drills split their time."""
    drill, restore = result.median("--drill"), result.median("--restore")
    paired = [a / b for a, b in zip(result.times("--drill"), result.times("--restore"))]
    restore_s = statistics.median(d["restore_s"] for d in result.drills)
    check_s = statistics.median(d["check_s"] for d in result.drills)
    rest = statistics.median(
        s.seconds - d["restore_s"] - d["check_s"]
        for s, d in zip(result.samples["--drill"], result.drills)
    )
    rows = sum(result.counts.values())
    return [
        f"{size_label(result.size)}: --drill / --restore = {drill / restore:.2f} (medians); "
        f"round by round: median {statistics.median(paired):.2f}, "
        f"{min(paired):.2f} to {max(paired):.2f}",
        f"the drill's split, medians of its {len(result.drills)} timed runs (restore_s and "
        f"check_s of each run's record, as --drill --json prints it): restore_s {restore_s:.3f} s "
        f"({restore_s / drill:.0%} of the drill's median), check_s {check_s:.3f} s "
        f"({check_s / drill:.0%}), the rest of the process {rest:.3f} s (start-up, run lock, "
        "run log, scratch folder)",
        f"restore_s ÷ --restore = {restore_s / restore:.2f}: the drill's restore against the "
        "whole plain restore",
        f"each drill read {rows:,} rows in {len(TABLES)} tables ("
        + ", ".join(f"{t} {n:,}" for t, n in result.counts.items())
        + ")",
    ]


def environment(app: App) -> list[str]:
    cli = sqlite_cli_version() if shutil.which("sqlite3") else "missing"
    return [
        app.identity(),
        f"date: {dt.datetime.now():%Y-%m-%d %H:%M}; host: {platform.node()}; "
        f"{os.cpu_count()} CPU(s); {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, SQLite library {sqlite3.sqlite_version}, "
        f"sqlite3 CLI {cli}",
    ]


# ======================================================================================
# Main
# ======================================================================================


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="database size, MiB (1024)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (5)")
    parser.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "dbbackup-bench-drill"),
        help="scratch folder for the app and outputs (default: a folder in the temp dir)",
    )
    parser.add_argument(
        "--script",
        default=str(SCRIPT),
        help="the module to copy into the app (default: the repo's; e.g. a committed "
        "version from git show)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the made database")
    parser.add_argument("--note", default="", help="a line printed with the results")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.size_mb < 1 or args.rounds < 1:
        raise SystemExit("give --size-mb and --rounds of 1 or more")
    size = args.size_mb * MIB
    tools = [t for t in TOOLS if t != "sqlite3 .backup" or shutil.which("sqlite3")]
    # the made database, the live copy, its backup, one output and the drill's scratch copy
    workdir = workdir_with_room(args.workdir, 5 * size)
    file_system = file_system_of(workdir)
    started = time.perf_counter()
    app_root, out = workdir / "app", workdir / "out"
    try:
        rss_floor_mb = run_child(["true"], cwd=workdir).max_rss_kb / 1024
        database = made_database(workdir, size)
        app = App.create(fresh_folder(app_root), Path(args.script), database)
        commands = [f"{t}: {shown(tool_argv(t, app, out), app, out)}" for t in tools]
        header = environment(app)
        log(f"drill beside restore, {size_label(size)}, {args.rounds} rounds ...")
        result = bench_drill(app, size, args.rounds, out, tools)
    finally:
        stop_launcher()
        shutil.rmtree(app_root, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            for path in workdir.glob("app-*.db*"):
                path.unlink()
            if not any(workdir.iterdir()):
                workdir.rmdir()
    elapsed = time.perf_counter() - started
    header += [
        f"workdir: {workdir} ({file_system}); size {size_label(size)} "
        f"({app.database.name}, WAL); rounds {args.rounds}; total {elapsed:.0f} s",
        f"peak RSS is each child's own ru_maxrss (os.wait4); a child of the launcher "
        f"cannot show less than {rss_floor_mb:.1f} MB (what `true` shows)",
        "commands, run in the app root (OUT: a folder outside the app, emptied before each):",
        *(f"  {line}" for line in commands),
    ]
    if "sqlite3 .backup" not in tools:
        header.append("sqlite3 .backup: skipped, the sqlite3 CLI is not installed")
    if args.note:
        header.append(args.note)
    table = render(result)
    notes = render_notes(result)
    title = f"Restore drill beside a plain restore, median of {args.rounds} alternating rounds"
    print_report(header, [(title, table, notes)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
