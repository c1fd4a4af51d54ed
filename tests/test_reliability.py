"""Reliability: the tool keeps working when things go wrong and never loses what it has.

Fast cases for every CI run; bench/torture.py runs the same scenarios in bulk.

- load: backups while other processes commit, in WAL and rollback-journal mode;
- crashes: ``kill -9`` of ``--run`` at random moments and at each phase;
- faults: a disk that fills, a read-only or immutable backup folder, a log that cannot be
  written, a source that vanishes or is replaced mid-run, a lock holder that dies;
- bad input, generated: config files, flag values, damaged databases, odd folders;
- security: owner-only files, and paths or planted links that must not make the tool
  delete or overwrite anything outside the backup folder and the named database.

The tmpfs, bind-mount and chattr cases need root on Linux and skip elsewhere, saying why.
Random crash moments come from TORTURE_SEED (printed on failure; set it to replay a run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import (
    App,
    assert_no_traceback,
    database_held,
    integrity,
    make_db,
    mounted_tmpfs,
    read_invariant,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import database_backup_scheduler as dbs

POSIX = os.name == "posix"
LINUX_ROOT = sys.platform.startswith("linux") and os.geteuid() == 0
SEED = int(os.environ.get("TORTURE_SEED") or random.SystemRandom().randrange(1 << 32))
KEEP_DAYS = 30
BIG_ROWS = 8000  # x 4 KB: a 32 MB source, so that each phase of a run takes measurable time
DB = "app.db"

needs_posix = pytest.mark.skipif(not POSIX, reason="SIGKILL, file modes and links are POSIX")
fuzz = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ======================================================================================
# Helpers: earlier backups, a run log, and what must survive
# ======================================================================================


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def backup_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of each regular file with a backup's name in ``folder``."""
    if not folder.is_dir():
        return {}
    return {
        entry.name: sha256(Path(entry.path))
        for entry in os.scandir(folder)
        if dbs.is_backup_name(entry.name) and entry.is_file(follow_symlinks=False)
    }


def temp_files(*folders: Path) -> list[str]:
    """Temporary files left: ``.dbbackup-*`` and a run log's ``.<log>.<hex>.tmp``."""
    return [
        name
        for folder in folders
        if folder.is_dir()
        for name in sorted(os.listdir(folder))
        if name.startswith(dbs.TEMP_PREFIX) or (name.startswith(".") and ".tmp" in name)
    ]


def expired(name: str, now: dt.datetime) -> bool:
    parsed = dbs.parse_backup_name(name)
    return parsed is not None and parsed.taken_at < now - dt.timedelta(days=KEEP_DAYS)


def earlier_run(day: int, results: list[dict[str, Any]] | None = None, pad: int = 0) -> dict:
    """A run as the log records it, ``day`` days after 2020-01-01."""
    started = dt.datetime(2020, 1, 1, 3, tzinfo=dt.timezone.utc) + dt.timedelta(days=day)
    return {
        "started_at": started.isoformat(),
        "finished_at": started.isoformat(),
        "trigger": "schedule",
        "status": "ok",
        "results": results
        or [{"database": "old.db", "status": "ok", "backup": f"/gone/old.db.{day}.bak"}],
        "pruned": [],
        "warnings": ["x" * pad] if pad else [],
    }


@dataclasses.dataclass
class Scene:
    """A source database, earlier backups (3 kept, some expired) and a run log of earlier runs.

    Everything that must survive is hashed before the trouble starts.
    """

    root: Path
    sources: dict[str, Path]
    backups: Path
    log: Path
    now: dt.datetime
    before: dict[str, str]
    earlier_runs: list[dict[str, Any]]

    @classmethod
    def create(
        cls,
        root: Path,
        sources: dict[str, Path],
        *,
        expired_count: int = 30,
        runs: int = 50,
        pad: int = 0,
        previous_of: str | None = None,
        backups: Path | None = None,
    ) -> Scene:
        """Seed backups of each source; with ``previous_of``, also a full copy of that source
        that the log records (so that an unchanged source is linked to it)."""
        backups = backups or root / "backups"
        backups.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = dt.datetime.now()
        ages = [dt.timedelta(days=d, hours=1) for d in (1, 2, 3)]
        ages += [dt.timedelta(days=KEEP_DAYS + 5 + d) for d in range(expired_count)]
        small = make_db(root / "seed.db", rows=20, journal_mode="delete")
        for name in sources:
            for age in ages:
                shutil.copyfile(small, backups / dbs.format_backup_name(name, now - age))
        small.unlink()
        recorded = None
        if previous_of:
            previous = backups / dbs.format_backup_name(previous_of, now - dt.timedelta(hours=12))
            shutil.copyfile(sources[previous_of], previous)
            digest = sha256(previous)
            recorded = [
                {
                    "database": previous_of,
                    "status": "ok",
                    "backup": str(previous),
                    "size_bytes": previous.stat().st_size,
                    "sha256": digest,
                    "content_sha256": digest,
                }
            ]
        earlier = [earlier_run(d, pad=pad) for d in range(runs - 1)]
        earlier.append(earlier_run(runs, recorded))
        log = root / "log.json"
        log.write_text(json.dumps({"version": 1, "runs": earlier}, indent=2), encoding="utf-8")
        return cls(root, sources, backups, log, now, backup_hashes(backups), earlier)

    def args(self, *more: str) -> list[str]:
        dbs_args = [a for name, path in self.sources.items() for a in ("--db", f"{name}={path}")]
        return [
            "--run",
            *dbs_args,
            "--backup-dir",
            str(self.backups),
            "--log-file",
            str(self.log),
            "--keep-days",
            str(KEEP_DAYS),
            *more,
        ]

    def problems(self, *, failed: Sequence[str] = ()) -> list[str]:
        """What was lost or damaged: a file with a backup's name that fails --verify, an
        earlier backup gone or changed (expired ones may be pruned, except those of the
        ``failed`` databases), a log that does not parse or lost earlier runs."""
        found = []
        runs = self.log_runs()
        recorded = dbs.RunLog(self.log, runs or [])
        for entry in sorted(os.scandir(self.backups), key=lambda e: e.name):
            if dbs.is_backup_name(entry.name):
                path = Path(entry.path)
                expected = recorded.recorded_sha256(path)
                checked = dbs.verify_backup(path, expected=expected)
                if not checked.ok:
                    found.append(f"{entry.name} fails verification: {checked.error}")
        for name, digest in self.before.items():
            path = self.backups / name
            parsed = dbs.parse_backup_name(name)
            if not path.exists():
                if not expired(name, self.now) or (parsed and parsed.name in failed):
                    found.append(f"earlier backup {name} was lost")
            elif sha256(path) != digest:
                found.append(f"earlier backup {name} was changed")
        if runs is None:
            found.append(f"the log does not parse: {self.log.read_bytes()[:200]!r}")
        elif runs[: len(self.earlier_runs)] != self.earlier_runs:
            found.append("the log lost or changed earlier runs")
        return found

    def log_runs(self) -> list[dict[str, Any]] | None:
        try:
            data = json.loads(self.log.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data.get("runs") if isinstance(data, dict) else None

    def new_backups(self, name: str) -> list[Path]:
        return [
            self.backups / n
            for n in sorted(backup_hashes(self.backups))
            if n not in self.before and dbs.is_backup_name(n, name)
        ]


def error_lines(output: str) -> list[str]:
    """The CLI's error lines without their mark: ``error: …`` and ``<database>: …``."""
    lines = []
    for line in output.splitlines():
        for mark in ("\N{CROSS MARK} ", "[FAILED] "):
            if line.startswith(mark) and "Backup finished" not in line:
                lines.append(line[len(mark) :])
    return lines


def error_of(result: subprocess.CompletedProcess[str], database: str | None = None) -> str:
    """The error line of ``database``, or the run's own ``error: …`` line."""
    lines = error_lines(result.stdout + result.stderr)
    prefix = f"{database}: " if database else "error: "
    found = [line for line in lines if line.startswith(prefix)]
    assert found, f"no error line for {database or 'the run'}: {result.stdout}{result.stderr}"
    return found[0]


def assert_next_run_is_clean(app: App, scene: Scene) -> None:
    """Once the trouble is gone, a run succeeds, leaves no temporary file, and loses nothing."""
    result = app.run(*scene.args())
    assert result.returncode == 0, result.stdout + result.stderr
    assert temp_files(scene.backups, scene.log.parent) == []
    assert scene.problems() == []
    for name in scene.sources:
        assert scene.new_backups(name), f"the next run made no backup of {name}"


# ======================================================================================
# Helpers: processes, mounts, flags
# ======================================================================================


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], limit: float = 60) -> bool:
    """Poll ``condition`` every millisecond until it holds, or ``proc`` ends."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.001)
    return False


def copy_started(folder: Path) -> Callable[[], bool]:
    def started() -> bool:
        with contextlib.suppress(OSError):
            return any(n.startswith(dbs.TEMP_PREFIX) for n in os.listdir(folder))
        return False

    return started


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc`` unless it already ended, and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


@contextlib.contextmanager
def read_only_bind(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only onto itself for the block (root on Linux)."""
    if not LINUX_ROOT or not shutil.which("mount"):
        pytest.skip("a read-only bind mount needs root on Linux")
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
    try:
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.decode().strip()}")
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextlib.contextmanager
def immutable(path: Path, *, now: bool = True) -> Iterator[Callable[[], None]]:
    """Yield a function that sets ``chattr +i`` on ``path`` (at once when ``now``); the flag
    is always cleared afterwards."""
    if not LINUX_ROOT or not shutil.which("chattr"):
        pytest.skip("chattr +i needs root on Linux")

    def set_flag() -> None:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)

    probe = subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"chattr does not work here: {probe.stderr.decode().strip()}")
    try:
        if now:
            set_flag()
        yield set_flag
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def main_in_process(argv: list[str]) -> tuple[int, str]:
    """Run ``database_backup_scheduler.main(argv)`` here; return (exit code, stdout + stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = dbs.main(argv)
    return code, out.getvalue() + err.getvalue()


def assert_failed_cleanly(code: int, output: str, allowed: Sequence[int]) -> None:
    """A documented exit code, and a message rather than a traceback or a crash."""
    assert code in allowed, output
    assert "Traceback" not in output, output
    assert "unexpected error" not in output, output


# ======================================================================================
# Databases made once per module
# ======================================================================================


@pytest.fixture(scope="module")
def big_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 32 MB source in WAL mode and one in rollback-journal mode, copied by each test."""
    folder = tmp_path_factory.mktemp("templates")
    return {
        mode: make_db(folder / f"{mode}.db", rows=BIG_ROWS, payload=4000, journal_mode=mode)
        for mode in ("wal", "delete")
    }


@pytest.fixture
def big_source(tmp_path: Path, big_sources: dict[str, Path]) -> Path:
    """A private copy of the 32 MB WAL source."""
    source = tmp_path / DB
    shutil.copyfile(big_sources["wal"], source)
    return source


# ======================================================================================
# Load: backups while other processes write
# ======================================================================================

WRITER = """
import json, os, sqlite3, sys, time
path, stop_file, out_file = sys.argv[1:4]
conn = sqlite3.connect(path, timeout=120, isolation_level=None)
samples, errors, i = [], [], 0
print("ready", flush=True)
while not os.path.exists(stop_file):
    started = time.monotonic()
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE items SET value = value + 1 WHERE id = ?", (i % 500 + 1,))
        conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(300))", (i,))
        conn.execute("UPDATE totals SET total = total + 1 + ?, count = count + 1", (i,))
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


@dataclasses.dataclass
class Writers:
    """Processes committing continuously; each commit's (start, end) on the monotonic clock,
    which processes share on Linux, macOS and Windows."""

    samples: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def worst_during(self, start: float, end: float) -> float:
        return max((e - s for s, e in self.samples if e >= start and s <= end), default=0.0)


@contextlib.contextmanager
def writers(source: Path, folder: Path, count: int = 2) -> Iterator[Writers]:
    stop_file = folder / "stop-writers"
    outputs = [folder / f"writer-{n}.json" for n in range(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(source), str(stop_file), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outputs
    ]
    found = Writers()
    try:
        for proc in procs:
            assert proc.stdout and proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        yield found
    finally:
        stop_file.touch()
        for proc, out in zip(procs, outputs):
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            data = json.loads(out.read_text())
            found.samples += [(s, e) for s, e in data["samples"]]
            found.errors += data["errors"]


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_backups_under_continuous_writes_pass_integrity_check_and_the_invariant(
    app: App, tmp_path: Path, journal_mode: str, record_property: Callable[[str, Any], None]
) -> None:
    source = make_db(tmp_path / "busy.db", rows=3000, payload=4000, journal_mode=journal_mode)
    runs = []
    with writers(source, tmp_path) as load:
        for _ in range(3):
            started = time.monotonic()
            result = app.run("--run", "--db", f"busy={source}", "--json")
            runs.append((result, started, time.monotonic()))
    assert load.errors == [], "the app's writes failed during the backups"
    counts = set()
    for result, started, ended in runs:
        assert result.returncode == 0, result.stdout + result.stderr
        [made] = json.loads(result.stdout)["results"]
        backup = Path(made["backup"])
        assert integrity(backup) == "ok"
        total, count, summed, counted = read_invariant(backup)
        assert (total, count) == (summed, counted), backup.name
        counts.add(count)
        worst = load.worst_during(started, ended)
        record_property(f"backup_s_{len(counts)}", made["duration_s"])
        record_property(f"worst_commit_ms_{len(counts)}", round(worst * 1000))
        print(f"{journal_mode}: backup {made['duration_s']:.3f} s, worst commit {worst:.3f} s")
    assert len(counts) == len(runs), "each backup should show more of the writers' commits"


# ======================================================================================
# Crashes: kill -9 of --run
# ======================================================================================


@pytest.fixture(scope="module")
def typical_run_s(tmp_path_factory: pytest.TempPathFactory, big_sources: dict[str, Path]) -> float:
    """Wall time of one uninterrupted run on a crash trial's scene (after a warm-up)."""
    root = tmp_path_factory.mktemp("calibrate")
    shutil.copy2(dbs.__file__, root / Path(dbs.__file__).name)
    times = []
    for number in range(2):
        folder = root / str(number)
        source = folder / DB
        folder.mkdir()
        shutil.copyfile(big_sources["wal"], source)
        scene = Scene.create(folder, {DB: source}, previous_of=DB)
        started = time.monotonic()
        App(root).run(*scene.args())
        times.append(time.monotonic() - started)
    return times[-1]


def crash_scene(tmp_path: Path, source: Path, rng: random.Random) -> Scene:
    """A crash trial's scene; half the time the source changed since the previous backup."""
    scene = Scene.create(tmp_path, {DB: source}, previous_of=DB)
    if rng.random() < 0.5:
        conn = sqlite3.connect(source)
        with conn:
            conn.execute("INSERT INTO items(value, pad) VALUES (5, randomblob(10))")
            conn.execute("UPDATE totals SET total = total + 5, count = count + 1")
        conn.close()
    return scene


def assert_recovers_from_the_kill(app: App, scene: Scene, invariant: tuple, context: str) -> None:
    """After a kill: nothing lost, no bad backup; then a clean run holding the source's data."""
    assert scene.problems() == [], context
    for backup in scene.new_backups(DB):
        assert read_invariant(backup) == invariant, f"{backup.name}; {context}"
    result = app.run(*scene.args())
    assert result.returncode == 0, f"{result.stdout}{result.stderr}; {context}"
    assert temp_files(scene.backups, scene.log.parent) == [], context
    assert scene.problems() == [], context
    runs = scene.log_runs() or []
    assert runs[-1]["status"] == "ok", context
    assert read_invariant(Path(runs[-1]["results"][0]["backup"])) == invariant, context


@needs_posix
@pytest.mark.parametrize("trial", range(5))
def test_kill_at_a_random_moment_loses_nothing_and_the_next_run_recovers(
    app: App, tmp_path: Path, big_sources: dict[str, Path], typical_run_s: float, trial: int
) -> None:
    rng = random.Random(f"{SEED}-{trial}")
    mode = rng.choice(["wal", "delete"])
    source = tmp_path / DB
    shutil.copyfile(big_sources[mode], source)
    scene = crash_scene(tmp_path, source, rng)
    invariant = read_invariant(source)
    delay = rng.uniform(0, typical_run_s)
    context = f"TORTURE_SEED={SEED} trial {trial}: {mode}, kill after {delay:.3f} s"
    proc = app.popen(*scene.args())
    time.sleep(delay)
    kill(proc)
    assert_recovers_from_the_kill(app, scene, invariant, context)


def _reached(scene: Scene, phase: str) -> Callable[[], bool]:
    source_size = scene.sources[DB].stat().st_size

    def reached() -> bool:
        names = set(os.listdir(scene.backups))
        temps = [scene.backups / n for n in names if n.startswith(dbs.TEMP_PREFIX)]
        if phase == "copy":
            return bool(temps)
        if phase == "verify":
            with contextlib.suppress(FileNotFoundError):
                return any(p.stat().st_size >= source_size for p in temps)
            return False
        if phase == "rename":
            return any(dbs.is_backup_name(n) and n not in scene.before for n in names)
        if phase == "pruning":
            return any(n not in names for n in scene.before if expired(n, scene.now))
        assert phase == "log write"
        return bool(temp_files(scene.log.parent))

    return reached


@needs_posix
@pytest.mark.parametrize("phase", ["copy", "verify", "rename", "pruning"])
def test_kill_during_a_phase_loses_nothing_and_the_next_run_recovers(
    app: App, tmp_path: Path, big_source: Path, phase: str
) -> None:
    # Many expired backups make pruning take a while.
    scene = Scene.create(tmp_path, {DB: big_source}, expired_count=300)
    invariant = read_invariant(big_source)
    proc = app.popen(*scene.args())
    try:
        assert wait_for(_reached(scene, phase), proc), f"the run never reached {phase}"
    finally:
        kill(proc)
    assert_recovers_from_the_kill(app, scene, invariant, f"killed in {phase}")


@needs_posix
def test_kill_during_the_log_write_keeps_the_log_and_leaves_no_temporary_file(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    # A long log (900 runs, 20 MB) makes writing it take a while.
    scene = Scene.create(tmp_path, {DB: big_source}, runs=900, pad=20_000)
    invariant = read_invariant(big_source)
    proc = app.popen(*scene.args())
    try:
        assert wait_for(_reached(scene, "log write"), proc), "the run never wrote its log"
    finally:
        kill(proc)
    assert_recovers_from_the_kill(app, scene, invariant, "killed in the log write")


# ======================================================================================
# Faults: each fails with a message naming the cause, exit 1, and loses nothing
# ======================================================================================


def two_sources(tmp_path: Path, big_source: Path) -> dict[str, Path]:
    """The 32 MB source, copied first, and a small second database."""
    return {DB: big_source, "second.db": make_db(tmp_path / "second.db", rows=20)}


@needs_posix
def test_disk_filling_during_a_backup_fails_naming_it_and_keeps_earlier_backups(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "12m") as disk:
        scene = Scene.create(tmp_path, two_sources(tmp_path, big_source), backups=disk / "bk")
        result = app.run(*scene.args())
        assert result.returncode == 1
        assert_no_traceback(result)
        message = error_of(result, DB)
        assert "full" in message and str(scene.backups) in message
        assert temp_files(scene.backups) == [], "the failed copy must not keep the disk full"
        # The hint's figure is what is free once the failed copy is gone (about 11 MB here).
        assert "(0 bytes free now)" not in result.stdout
        assert scene.problems(failed=[DB]) == []
        assert scene.new_backups("second.db"), "the second database still fits"
        subprocess.run(["mount", "-o", "remount,size=100m", str(disk)], check=True)
        assert_next_run_is_clean(app, scene)


@needs_posix
def test_read_only_backup_folder_fails_naming_it_and_keeps_earlier_backups(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    scene = Scene.create(tmp_path, two_sources(tmp_path, big_source))
    with read_only_bind(scene.backups):
        result = app.run(*scene.args())
    assert result.returncode == 1
    assert_no_traceback(result)
    message = error_of(result)
    assert "read-only" in message and str(scene.backups) in message
    assert scene.problems(failed=[DB, "second.db"]) == []
    assert_next_run_is_clean(app, scene)


@needs_posix
def test_backup_folder_made_immutable_during_the_copy_fails_naming_the_folder(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    scene = Scene.create(tmp_path, two_sources(tmp_path, big_source))
    with immutable(scene.backups, now=False) as make_immutable:
        proc = app.popen(*scene.args())
        assert wait_for(copy_started(scene.backups), proc)
        make_immutable()
        out, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert result.returncode == 1
    assert_no_traceback(result)
    # The cause is the backup folder, for both databases; the sources are fine.
    assert str(scene.backups) in error_of(result, DB)
    assert str(scene.backups) in error_of(result, "second.db")
    assert scene.problems(failed=[DB, "second.db"]) == []
    assert_next_run_is_clean(app, scene)


def test_log_file_dev_full_is_refused_as_not_a_regular_file(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full does not exist here")
    scene = Scene.create(tmp_path, two_sources(tmp_path, big_source))
    args = scene.args()
    args[args.index("--log-file") + 1] = "/dev/full"
    result = app.run(*args)
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "/dev/full" in result.stderr and "not a regular file" in result.stderr
    assert backup_hashes(scene.backups) == scene.before, "a refused run must not back up"


@needs_posix
def test_log_on_a_full_disk_fails_naming_it_and_keeps_the_old_log(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    with mounted_tmpfs(tmp_path / "logdisk", "1m") as disk:
        scene = Scene.create(tmp_path, two_sources(tmp_path, big_source))
        scene.log = Path(shutil.move(str(scene.log), disk / "log.json"))
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        logged = scene.log.read_bytes()
        result = app.run(*scene.args())
        assert result.returncode == 1
        assert_no_traceback(result)
        message = error_of(result)
        assert "full" in message and str(scene.log) in message
        assert scene.log.read_bytes() == logged
        assert temp_files(disk) == []
        assert scene.problems() == []
        (disk / "filler").unlink()
        assert_next_run_is_clean(app, scene)


@needs_posix
def test_log_made_immutable_fails_naming_it_and_keeps_the_old_log(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    scene = Scene.create(tmp_path, two_sources(tmp_path, big_source))
    logged = scene.log.read_bytes()
    with immutable(scene.log):
        result = app.run(*scene.args())
    assert result.returncode == 1
    assert_no_traceback(result)
    assert str(scene.log) in error_of(result)
    assert scene.log.read_bytes() == logged
    assert temp_files(tmp_path) == []
    assert scene.problems() == []
    assert_next_run_is_clean(app, scene)


@needs_posix
@pytest.mark.parametrize("how", ["deleted", "replaced by a non-database"])
def test_second_database_gone_during_the_first_backup_fails_naming_it(
    app: App, tmp_path: Path, big_source: Path, how: str
) -> None:
    scene = Scene.create(tmp_path, two_sources(tmp_path, big_source))
    second = scene.sources["second.db"]
    kept = shutil.copyfile(second, tmp_path / "second.kept")
    stranger = tmp_path / "stranger"
    stranger.write_bytes(b"not a database, " * 1000)
    proc = app.popen(*scene.args())
    assert wait_for(copy_started(scene.backups), proc)
    if how == "deleted":
        second.unlink()
    else:
        os.replace(stranger, second)
    out, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert result.returncode == 1
    assert_no_traceback(result)
    message = error_of(result, "second.db")
    assert str(second) in message
    assert ("does not exist" if how == "deleted" else "not an SQLite database") in message
    if how != "deleted":
        assert second.read_bytes() == b"not a database, " * 1000, "the stranger was changed"
    assert len(scene.new_backups(DB)) == 1, "the first database is still backed up"
    assert scene.problems(failed=["second.db"]) == []
    os.replace(kept, second)
    assert_next_run_is_clean(app, scene)


def test_database_deleted_before_the_run_fails_and_its_backups_are_not_pruned(
    app: App, tmp_path: Path, big_source: Path
) -> None:
    scene = Scene.create(tmp_path, two_sources(tmp_path, big_source))
    big_source.unlink()
    result = app.run(*scene.args())
    assert result.returncode == 1
    assert_no_traceback(result)
    assert "does not exist" in error_of(result, DB) and str(big_source) in error_of(result, DB)
    assert scene.problems(failed=[DB]) == []
    assert not big_source.exists(), "a missing database must not be created"


@needs_posix
def test_killed_lock_holder_lets_a_waiting_run_proceed(app: App, tmp_path: Path) -> None:
    source = make_db(tmp_path / DB, rows=50, journal_mode="delete")
    scene = Scene.create(tmp_path, {DB: source})
    # The app holds the source, so the first run waits for it while holding the run lock.
    with database_held(source):
        holder = app.popen(*scene.args("--busy-timeout", "60"))
        assert wait_for(copy_started(scene.backups), holder)
        waiter = app.popen(*scene.args("--lock-timeout", "60"))
        assert waiter.stderr and "another run holds the lock" in waiter.stderr.readline()
        kill(holder)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, out + err
    assert temp_files(scene.backups, tmp_path) == []
    assert scene.problems() == []
    assert len(scene.new_backups(DB)) == 1


# ======================================================================================
# Bad input, generated
# ======================================================================================

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["gzip", "zstd", "none", "03:00", "25:00", "Asia/Shanghai", "x.db", ""])
)
JSON_VALUES = st.one_of(
    JSON_LEAVES,
    st.lists(JSON_LEAVES, max_size=3),
    st.dictionaries(st.text(max_size=6), JSON_LEAVES, max_size=2),
    st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=2), max_leaves=4),
)
# Settings that copy, upload, post or run a command take only values without any text
# here, which they must refuse: a random text could name a real command, host or folder.
ACTING_KEYS = {"copy_to", "s3", "upload_command", "notify_url", "notify_command"}
TEXTLESS_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=4,
)
# Each known setting, present or not, with any JSON value; now and then an unknown one.
CONFIG_FILES = st.fixed_dictionaries(
    {},
    optional={
        key: TEXTLESS_VALUES if key in ACTING_KEYS else JSON_VALUES
        for key in sorted(set(dbs.SETTING) - {"databases"})
    },
) | st.dictionaries(
    st.text(max_size=10).filter(lambda key: key not in set(dbs.SETTING)), JSON_VALUES, max_size=2
)
DATABASE_ENTRIES = st.lists(
    st.text(max_size=10)
    | st.fixed_dictionaries(
        {"path": st.text(max_size=10)},
        optional={"name": JSON_VALUES, "required": JSON_VALUES, "other": JSON_VALUES},
    ),
    max_size=3,
)


@pytest.fixture
def small_db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "small.db", rows=20)


def fresh_folder(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


@fuzz
@given(
    settings_=CONFIG_FILES,
    databases=st.none() | DATABASE_ENTRIES,
)
def test_random_config_file_is_accepted_or_refused_as_a_usage_error(
    tmp_path: Path, small_db: Path, settings_: dict[str, Any], databases: list | None
) -> None:
    folder = fresh_folder(tmp_path)
    config = folder / "config.json"
    if databases is not None:
        settings_["databases"] = databases
    config.write_text(json.dumps(settings_), encoding="utf-8")
    code, output = main_in_process(
        [
            "--run",
            "--config",
            str(config),
            "--db",
            f"small.db={small_db}",
            "--backup-dir",
            str(folder / "bk"),
            "--log-file",
            str(folder / "log.json"),
        ]
    )
    assert_failed_cleanly(code, output, [0, 2])
    if code == 2:
        assert str(config) in output


@fuzz
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_config_file_that_is_not_a_settings_object_is_a_usage_error(
    tmp_path: Path, content: bytes
) -> None:
    folder = fresh_folder(tmp_path)
    config = folder / "config.json"
    config.write_bytes(content)
    code, output = main_in_process(["--show-config", "--config", str(config)])
    assert_failed_cleanly(code, output, [0, 2])
    if code == 0:
        assert isinstance(json.loads(content.decode("utf-8-sig")), dict)


@pytest.mark.parametrize("key", ["backup_dir", "log_file", "databases"])
def test_config_file_path_with_a_nul_character_is_a_usage_error(
    tmp_path: Path, small_db: Path, key: str
) -> None:
    config = tmp_path / "config.json"
    settings_: dict[str, Any] = {
        "databases": [str(small_db)],
        "backup_dir": str(tmp_path / "bk"),
        "log_file": str(tmp_path / "log.json"),
    }
    settings_[key] = ["bad\x00name.db"] if key == "databases" else "bad\x00name"
    config.write_text(json.dumps(settings_), encoding="utf-8")
    code, output = main_in_process(["--run", "--config", str(config)])
    assert_failed_cleanly(code, output, [2])
    assert str(config) in output or "name" in output


FLAG_VALUES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(
    ["-1", "0", "1", "nan", "inf", "-inf", "1e309", "1e-300", "25:00", "03:00", "gzip", "=", " "]
)
VALUED_FLAGS = [
    "--keep-days",
    "--keep-last",
    "--busy-timeout",
    "--lock-timeout",
    "--log-max-runs",
    "--at",
    "--timezone",
    "--keep-daily",
    "--keep-weekly",
    "--keep-monthly",
    "--compress",
    "--max-age",
    "--max-disk-percent",
    "--max-shrink-percent",
    "--limit",
    "--trigger",
    "--db",
    "--config",
    "--target",
    "--python",
]
ACTIONS = ["--run", "--history", "--stats", "--check", "--verify", "--show-config", "--cron"]


@fuzz
@given(
    action=st.sampled_from(ACTIONS) | FLAG_VALUES.map(lambda v: f"--restore={v}"),
    flags=st.lists(st.tuples(st.sampled_from(VALUED_FLAGS), FLAG_VALUES), max_size=3),
)
def test_flags_with_wrong_values_give_a_documented_exit_code(
    tmp_path: Path,
    small_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
    flags: list[tuple[str, str]],
) -> None:
    folder = fresh_folder(tmp_path)
    monkeypatch.chdir(folder)  # a random relative --db or --config lands here
    argv = [action, *(f"{flag}={value}" for flag, value in flags)]
    argv += ["--db", f"small.db={small_db}", "--backup-dir", "bk", "--log-file", "log.json"]
    code, output = main_in_process(argv)
    allowed = [0, 1, 2, 3] if action == "--check" else [0, 1, 2]
    assert_failed_cleanly(code, output, allowed)


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2 + 100]


def _header_only(good: bytes) -> bytes:
    return good[:100]


BROKEN_SOURCES: dict[str, Callable[[bytes], bytes]] = {
    "an empty file": lambda good: b"",
    "a text file": lambda good: b"hello, not a database\n" * 100,
    "random bytes": lambda good: random.Random(7).randbytes(50_000),
    "a truncated database": _truncated,
    "a database's header alone": _header_only,
    "a database with a zeroed middle": lambda good: good[:8192] + bytes(8192) + good[16384:],
}


@pytest.mark.parametrize("kind", BROKEN_SOURCES)
def test_broken_database_fails_or_is_backed_up_faithfully_and_is_never_changed(
    app: App, tmp_path: Path, kind: str
) -> None:
    good = make_db(tmp_path / "good.db", rows=400, journal_mode="delete").read_bytes()
    source = tmp_path / "broken.db"
    source.write_bytes(BROKEN_SOURCES[kind](good))
    before = source.read_bytes()
    result = app.run("--run", "--db", f"broken={source}", "--backup-dir", str(tmp_path / "bk"))
    assert result.returncode in (0, 1)
    assert_no_traceback(result)
    if result.returncode == 1:
        assert str(source) in error_of(result, "broken")
    assert source.read_bytes() == before, "the tool must never write to a source it backs up"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "bk", "broken.db", "good.db"]
    assert temp_files(tmp_path / "bk") == []
    for name in backup_hashes(tmp_path / "bk"):
        checked = dbs.verify_backup(tmp_path / "bk" / name)
        assert checked.ok, f"a backup that fails --verify was made: {checked.error}"


def test_folder_given_as_a_database_fails_naming_it(app: App, tmp_path: Path) -> None:
    folder = tmp_path / "folder.db"
    folder.mkdir()
    result = app.run("--run", "--db", f"folder={folder}")
    assert result.returncode == 1
    assert_no_traceback(result)
    assert "folder" in error_of(result, "folder") and str(folder) in error_of(result, "folder")


@pytest.fixture(scope="module")
def indexed_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small database with two indexes, for bit flips."""
    path = tmp_path_factory.mktemp("indexed") / "indexed.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, value INTEGER, name TEXT)")
    conn.execute("CREATE INDEX items_value ON items(value)")
    conn.execute("CREATE INDEX items_name ON items(name)")
    with conn:
        conn.executemany(
            "INSERT INTO items(value, name) VALUES (?, ?)",
            [(i * 7 % 1000, f"name{i:05d}") for i in range(2000)],
        )
    conn.close()
    return path


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=4
    )
)
def test_bit_flipped_database_gets_no_backup_the_copy_damaged(
    tmp_path: Path, indexed_db: Path, flips: list[tuple[float, int]]
) -> None:
    """A run checks its copy with quick_check (as specified: integrity_check costs five
    times as much on a large database); so a backup that passes `--verify --quick` may
    still fail the full `--verify`, but only where the source itself fails it: the copy
    adds no damage of its own."""
    folder = fresh_folder(tmp_path)
    data = bytearray(indexed_db.read_bytes())
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    source = folder / "flipped.db"
    source.write_bytes(bytes(data))
    backups = folder / "bk"
    log = folder / "log.json"
    code, output = main_in_process(
        ["--run", "--db", str(source), "--backup-dir", str(backups), "--log-file", str(log)]
    )
    assert_failed_cleanly(code, output, [0, 1])
    assert source.read_bytes() == bytes(data)
    for name in backup_hashes(backups):
        quick = dbs.verify_backup(backups / name, quick=True)
        assert quick.ok, f"the run said {code} but its backup fails --verify --quick: {quick}"
        full = dbs.verify_backup(backups / name)
        if not full.ok:
            source_verdict = dbs.check_database_file(source, quick=False)
            assert source_verdict != "ok", f"the copy alone is damaged: {full.error}"


def test_database_path_with_spaces_and_non_ascii_characters_is_backed_up(
    app: App, tmp_path: Path
) -> None:
    source = make_db(tmp_path / "数据 库" / "my ü db.db", rows=50)
    backups = tmp_path / "备份 dir" / "back ups"
    args = ["--db", str(source), "--backup-dir", str(backups)]
    result = app.run("--run", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    [backup] = [backups / n for n in backup_hashes(backups)]
    assert backup.name.startswith("my ü db.db.")
    assert read_invariant(backup) == read_invariant(source)
    for action in (["--verify"], ["--history"], ["--stats"], ["--check"]):
        checked = app.run(*action, *args)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert_no_traceback(checked)


# -- a backup folder that holds things the tool did not make -------------------------


def tree(folder: Path) -> dict[bytes, tuple]:
    """Every entry under ``folder`` (bytes names, links not followed): kind and content."""
    found: dict[bytes, tuple] = {}
    root = os.fsencode(folder)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            key = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    found[key] = ("file", hashlib.sha256(handle.read()).hexdigest())
            else:
                found[key] = (stat.S_IFMT(info.st_mode),)
    return found


def plant_foreign_files(backups: Path, outside: Path, name: str) -> None:
    """Files, folders, links and odd names the tool did not make, some named like its own."""
    old = dt.datetime(2000, 1, 1)
    backups.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "target.txt").write_text("outside\n", encoding="utf-8")
    (backups / "notes.txt").write_text("mine\n", encoding="utf-8")
    (backups / f"{dbs.format_backup_name(name, old)}.old").write_text("x", encoding="utf-8")
    (backups / dbs.format_backup_name(name, old).upper()).write_text("x", encoding="utf-8")
    (backups / f"{name}.20001340_000000.bak").write_text("bad date", encoding="utf-8")
    (backups / f"{dbs.TEMP_PREFIX}notes.txt").write_text("mine too", encoding="utf-8")
    (backups / "line\nbreak.bak").write_text("x", encoding="utf-8")
    like_backup = backups / dbs.format_backup_name(name, old + dt.timedelta(days=1))
    like_backup.mkdir()
    (like_backup / "inside.txt").write_text("x", encoding="utf-8")
    temp_like_dir = backups / dbs.format_temp_name(name)
    temp_like_dir.mkdir()
    (temp_like_dir / "inside.txt").write_text("x", encoding="utf-8")
    with open(os.path.join(os.fsencode(backups), b"odd-\xff\xfe.bak"), "wb") as handle:
        handle.write(b"not utf-8 name")
    if POSIX:
        (backups / dbs.format_backup_name(name, old + dt.timedelta(days=2))).symlink_to(
            outside / "target.txt"
        )
        (backups / dbs.format_temp_name(name)).symlink_to(outside / "target.txt")
        (backups / dbs.format_backup_name(name, old + dt.timedelta(days=3))).symlink_to(outside)
        os.mkfifo(backups / dbs.format_backup_name(name, old + dt.timedelta(days=4)))
        os.mkfifo(backups / dbs.format_temp_name(name))


def test_backup_folder_with_unrelated_files_links_and_odd_names_loses_nothing(
    app: App, tmp_path: Path
) -> None:
    backups, outside = tmp_path / "bk", tmp_path / "outside"
    plant_foreign_files(backups, outside, "pet_painting.db")
    foreign, outside_before = tree(backups), tree(outside)
    assert backup_hashes(backups) == {}
    common = ["--backup-dir", str(backups), "--keep-days", "0", "--keep-last", "1"]
    for action in ("--run", "--run", "--verify", "--stats", "--check", "--history"):
        result = app.run(action, *common, timeout=60)
        assert_no_traceback(result)
        assert result.returncode == 0, f"{action}: {result.stdout}{result.stderr}"
    after = tree(backups)
    assert {k: v for k, v in after.items() if k in foreign} == foreign
    assert tree(outside) == outside_before
    assert len(backup_hashes(backups)) == 1, "retention still works among strangers"


# ======================================================================================
# Security
# ======================================================================================


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@needs_posix
def test_backups_log_lock_and_safety_copy_are_owner_only_under_umask_0(
    app: App, tmp_path: Path
) -> None:
    backups = tmp_path / "new" / "deep" / "backups"
    common = ["--backup-dir", str(backups)]

    def run(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, str(app.script), *args, *common],
            cwd=app.root,
            capture_output=True,
            text=True,
            umask=0,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    run("--run")
    run("--run", "--compress", "gzip")
    plain = [p for p in backups.iterdir() if p.name.endswith(".bak")][0]
    run("--restore", str(plain), "--yes")
    for folder in (tmp_path / "new", tmp_path / "new" / "deep", backups):
        assert mode_of(folder) == 0o700, folder
    made = [p for p in backups.iterdir()] + [app.log_file]
    assert {p.name.split(".")[-1] for p in made} >= {"bak", "gz", "pre-restore", "lock", "json"}
    for path in made:
        assert mode_of(path) == 0o600, f"{path.name} is {oct(mode_of(path))}"


@needs_posix
def test_db_path_outside_the_app_changes_nothing_but_the_backup_folder(
    app: App, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    source = make_db(elsewhere / "victim.db", rows=30, journal_mode="delete")
    (elsewhere / "victim.db.20000101_000000.bak").write_text("looks like a backup")
    (elsewhere / dbs.format_temp_name("victim.db")).write_text("looks like a temp file")
    (elsewhere / "link.db").symlink_to(source)
    before = tree(tmp_path)
    for db in (source, elsewhere / "link.db"):
        result = app.run("--run", "--db", f"victim.db={db}", "--keep-days", "0", "--keep-last", "1")
        assert result.returncode == 0, result.stdout + result.stderr
    after = tree(tmp_path)
    made = [k for k in after if k.startswith(b"app/")]
    assert {k: v for k, v in after.items() if k not in made} == {
        k: v for k, v in before.items() if not k.startswith(b"app/")
    }
    ours = (b"app/instance/backups", b"app/database_backup_log.json")
    assert [k for k in made if k not in before and not k.startswith(ours)] == []


@needs_posix
@pytest.mark.parametrize("target_exists", [True, False])
def test_restore_changes_only_the_named_database_and_the_backup_folder(
    app: App, tmp_path: Path, target_exists: bool
) -> None:
    assert app.run("--run").returncode == 0
    [backup] = app.backups("pet_painting.db")
    elsewhere = tmp_path / "elsewhere"
    target = make_db(elsewhere / "target.db", rows=5, journal_mode="delete")
    if not target_exists:
        target.unlink()
    (elsewhere / "target.db.20000101_000000.bak").write_text("looks like a backup")
    (elsewhere / dbs.format_temp_name("target.db")).write_text("looks like a temp file")
    before = tree(tmp_path)
    result = app.run("--restore", str(backup), "--target", str(target), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    after = tree(tmp_path)
    allowed = (b"app/instance/backups/", b"app/database_backup_log.json", b"elsewhere/target.db")
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert [k for k in changed if not k.startswith(allowed)] == []
    assert b"elsewhere/target.db.20000101_000000.bak" not in changed
    assert read_invariant(target) == read_invariant(backup)


@needs_posix
@pytest.mark.parametrize("how", ["a linked folder", "a link to the backup"])
def test_restore_target_reached_through_a_link_cannot_overwrite_a_backup(
    app: App, tmp_path: Path, how: str
) -> None:
    other = make_db(tmp_path / "other.db", rows=500)
    assert app.run("--run").returncode == 0
    assert app.run("--run", "--db", f"other.db={other}").returncode == 0
    [victim] = app.backups("pet_painting.db")
    [other_backup] = app.backups("other.db")
    before = backup_hashes(app.backup_dir)
    if how == "a linked folder":
        (tmp_path / "alias").symlink_to(app.backup_dir)
        target = tmp_path / "alias" / victim.name
    else:
        target = tmp_path / "alias.db"
        target.symlink_to(victim)
    result = app.run("--restore", str(other_backup), "--target", str(target), "--yes")
    assert_no_traceback(result)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "backup folder" in result.stderr
    assert backup_hashes(app.backup_dir) == before


@needs_posix
def test_restore_into_a_file_that_is_not_a_database_changes_nothing_and_says_why(
    app: App, tmp_path: Path
) -> None:
    assert app.run("--run").returncode == 0
    [backup] = app.backups("pet_painting.db")
    target = tmp_path / "notes.txt"
    target.write_text("an operator's notes\n", encoding="utf-8")
    result = app.run("--restore", str(backup), "--target", str(target), "--yes")
    assert result.returncode == 1
    assert_no_traceback(result)
    message = error_of(result)
    assert "unexpected error" not in message
    assert str(target) in message and "not an SQLite database" in message
    assert target.read_text(encoding="utf-8") == "an operator's notes\n"
    [record] = [r for r in json.loads(app.log_file.read_text())["runs"] if r.get("kind")]
    assert record["status"] == "failed" and record["error"]


def test_log_file_naming_the_database_never_replaces_the_database(app: App, tmp_path: Path) -> None:
    source = make_db(tmp_path / "app.db", rows=30, journal_mode="delete")
    content = sha256(source)
    result = app.run("--run", "--db", str(source), "--log-file", str(source))
    assert_no_traceback(result)
    assert result.returncode == 2, result.stdout + result.stderr
    assert sha256(source) == content
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("app.db")] == ["app.db"]


@needs_posix
def test_symlinks_planted_under_backup_and_temp_names_are_never_followed(
    app: App, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    app.backup_dir.mkdir(mode=0o700)
    name, now = "pet_painting.db", dt.datetime.now()
    planted = [dbs.format_backup_name(name, now - dt.timedelta(days=400))]  # expired
    planted += [dbs.format_temp_name(name), dbs.format_temp_name(name) + "-journal"]
    # Every name the next minute's backups and safety copies would take first.
    for second in range(60):
        stamp = now + dt.timedelta(seconds=second)
        planted += [dbs.format_backup_name(name, stamp), dbs.format_safety_name(name, stamp)]
    for planted_name in planted:
        (app.backup_dir / planted_name).symlink_to(victim)
    before = tree(tmp_path)
    for action in (["--run"], ["--run"], ["--verify"]):
        result = app.run(*action, "--keep-days", "0", "--keep-last", "1")
        assert result.returncode == 0, result.stdout + result.stderr
    [backup] = [app.backup_dir / n for n in backup_hashes(app.backup_dir)]
    result = app.run("--restore", str(backup), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    after = tree(tmp_path)
    for planted_name in planted:
        key = os.fsencode(f"app/instance/backups/{planted_name}")
        assert after[key] == before[key], f"{planted_name} was replaced or removed"
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert sorted(os.listdir(outside)) == ["victim.txt"]


@needs_posix
def test_symlink_planted_as_the_lock_file_is_not_followed(app: App, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    app.backup_dir.mkdir(mode=0o700)
    (app.backup_dir / dbs.LOCK_FILE_NAME).symlink_to(outside / "created-by-the-tool")
    result = app.run("--run")
    assert_no_traceback(result)
    assert os.listdir(outside) == [], "the tool created a file outside its backup folder"
