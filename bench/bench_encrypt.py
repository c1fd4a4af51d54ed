#!/usr/bin/env python3
"""Benchmark the age encryption of off-site copies against ``age`` itself, on the same file.

    python bench/bench_encrypt.py --sizes 100M,1G --trials 5
    python bench/bench_encrypt.py --sizes 1G --trials 9 --workdir WORKDIR --keep

For each size, a backup-like file ``bench.db.20250101_030000.bak`` (1 MiB blocks, half
random bytes and half repeated text) and, made once by ``age -r``, its encrypted copy
``bench.db.20250101_030000.bak.age``. Four tools then run as fresh processes, each once
untimed (so every one reads a warm page cache, and the outputs are checked: each decrypts
to the backup's own SHA-256), then alternately ``--trials`` times in a rotating order:

- encrypt, the tool's path: a small Python child imports the module and runs
  ``Encryption(load_recipients([PUBKEY]), folder).outgoing(_backup_file(FILE))``, which
  encrypts with ``pyrage.encrypt_file`` into a temporary file and reads it back for its
  SHA-256, then ``.close()``, which deletes that file. The child first gives the file a
  second name (a hard link), so that ``close`` only drops a name: the data is freed by this
  script, untimed, as age's output is;
- encrypt, ``age -r PUBKEY -o OUT FILE``;
- decrypt, the CLI: ``database_backup_scheduler.py --decrypt FILE.age --identity KEY
  --output OUT`` (a whole run of the script: start-up, compiling the script, decrypting
  into a private temporary folder beside OUT, then naming OUT);
- decrypt, ``age -d -i KEY -o OUT FILE.age``.

Each output is deleted and every queued write flushed (``os.sync``) before the next run,
outside the timed region. Peak memory is each child's own ``ru_maxrss`` from ``os.wait4``;
the children are started by the small launcher of ``bench_backup.py`` (Linux would
otherwise count this process's memory into each child's). The key pair comes from the
module's ``--keygen``, in the workdir. Sizes are binary (1G = 1 GiB). Nothing is asserted:
it prints figures, then the same figures as markdown, ready to paste into a README.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
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
    REPO,
    SCRIPT,
    Sample,
    check_ok,
    file_system_of,
    log,
    module_identity,
    parse_size,
    print_report,
    run_child,
    size_label,
    stop_launcher,
    workdir_with_room,
)

BACKUP_NAME = "bench.db.20250101_030000.bak"
TARGET_RSS_MB = 64
AGE = "age"

# The tool's own path, as a run takes it for each destination: one local backup encrypted
# into a temporary file in ``folder`` and hashed. ``close`` deletes that file; a second
# name (made before, in ``keep``) leaves freeing the data to the parent, outside the timing.
ENCRYPT_CHILD = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import database_backup_scheduler as dbs
source, folder, public, keep = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]
backup = dbs._backup_file(source)
assert backup is not None, source
encryption = dbs.Encryption(dbs.load_recipients([public]), folder)
try:
    made = encryption.outgoing(backup)
    os.link(made.path, keep)
    print(made.size, made.sha256)
finally:
    encryption.close()
"""

# Start-up alone: Python, the module (from its cached bytecode) and pyrage, no work.
IMPORT_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import database_backup_scheduler as dbs
dbs._pyrage()
"""

TOOLS = (
    ("encrypt", "Encryption.outgoing"),
    ("encrypt", "age -r"),
    ("decrypt", "--decrypt"),
    ("decrypt", "age -d"),
)
OURS = {"Encryption.outgoing", "--decrypt"}


@dataclasses.dataclass
class Row:
    size: int
    operation: str
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


# ======================================================================================
# Files and key
# ======================================================================================


def make_backup(path: Path, size: int) -> None:
    """``size`` bytes in 1 MiB blocks, each half random bytes and half repeated text."""
    text = b"INSERT INTO items VALUES (42, 'a row of an app, much like the last one');\n"
    half = MIB // 2
    filler = (text * (half // len(text) + 1))[:half]
    temp = path.with_name(path.name + ".making")
    with open(temp, "wb") as handle:
        left = size
        while left > 0:
            block = os.urandom(half) + filler
            handle.write(block[:left])
            left -= len(block)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def key_pair(workdir: Path, made: list[Path]) -> tuple[Path, str]:
    """The identity file the module's ``--keygen`` wrote in ``workdir`` (made once, then
    added to ``made``), and its public key."""
    key = workdir / "key.txt"
    if not key.exists():
        made.append(key)
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--keygen", str(key)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"--keygen failed (exit {done.returncode}):\n{done.stderr}")
    for line in key.read_text().splitlines():
        if line.startswith("# public key: "):
            return key, line.split(": ", 1)[1].strip()
    raise SystemExit(f"{key} holds no '# public key:' line")


class Inputs:
    """For one size: the backup-like file, its SHA-256, and its copy encrypted by age."""

    def __init__(self, workdir: Path, size: int, public: str) -> None:
        self.folder = workdir / f"encrypt-{size_label(size)}"
        self.folder.mkdir(exist_ok=True)
        self.backup = self.folder / BACKUP_NAME
        self.encrypted = self.folder / (BACKUP_NAME + ".age")
        if not self.backup.exists() or self.backup.stat().st_size != size:
            self.encrypted.unlink(missing_ok=True)
            started = time.perf_counter()
            make_backup(self.backup, size)
            took = time.perf_counter() - started
            log(f"made {self.backup.name}: {size / MIB:,.0f} MiB in {took:.1f} s")
        if not self.encrypted.exists():
            temp = self.folder / "making.age"
            argv = [AGE, "-r", public, "-o", str(temp), str(self.backup)]
            subprocess.run(argv, check=True)
            os.replace(temp, self.encrypted)
        self.sha256 = sha256_of(self.backup)


# ======================================================================================
# Children
# ======================================================================================


def tool_argv(tool: str, inputs: Inputs, key: Path, public: str, out: Path) -> list[str]:
    """The command line of one tool, writing into the empty folder ``out``."""
    if tool == "Encryption.outgoing":
        keep = str(out / "outgoing.age")
        return [
            sys.executable,
            "-c",
            ENCRYPT_CHILD,
            str(REPO),
            str(inputs.backup),
            str(out),
            public,
            keep,
        ]
    if tool == "age -r":
        return [AGE, "-r", public, "-o", str(out / "copy.age"), str(inputs.backup)]
    plain = str(out / BACKUP_NAME)
    if tool == "--decrypt":
        return [
            sys.executable,
            str(SCRIPT),
            "--decrypt",
            str(inputs.encrypted),
            "--identity",
            str(key),
            "--output",
            plain,
        ]
    return [AGE, "-d", "-i", str(key), "-o", plain, str(inputs.encrypted)]


def fresh_out(out: Path) -> Path:
    """An empty output folder, with the previous output's writes dropped or flushed."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.sync()
    return out


def check_output(tool: str, inputs: Inputs, key: Path, out: Path) -> None:
    """After the untimed first run: the output decrypts (or is) the backup's own bytes."""
    expected = {BACKUP_NAME}
    plain = out / BACKUP_NAME
    if tool in ("Encryption.outgoing", "age -r"):
        made = out / ("outgoing.age" if tool == "Encryption.outgoing" else "copy.age")
        subprocess.run([AGE, "-d", "-i", str(key), "-o", str(plain), str(made)], check=True)
        expected.add(made.name)
    leftovers = sorted(p.name for p in out.iterdir() if p.name not in expected)
    if sha256_of(plain) != inputs.sha256 or leftovers:
        raise SystemExit(f"{tool}: wrong output in {out} (left: {leftovers})")


def bench_size(
    inputs: Inputs, size: int, key: Path, public: str, trials: int, out: Path
) -> list[Row]:
    """Each tool once untimed (output checked), then ``trials`` rounds in a rotating order."""
    rows = {tool: Row(size, operation, tool, []) for operation, tool in TOOLS}
    names = [tool for _, tool in TOOLS]
    for tool in names:
        sample = run_child(tool_argv(tool, inputs, key, public, fresh_out(out)), cwd=out.parent)
        check_ok(tool, sample)
        check_output(tool, inputs, key, out)
    for trial in range(trials):
        shift = trial % len(names)
        for tool in names[shift:] + names[:shift]:
            sample = run_child(tool_argv(tool, inputs, key, public, fresh_out(out)), cwd=out.parent)
            check_ok(tool, sample)
            rows[tool].samples.append(sample)
        log(
            f"  {size_label(size)} trial {trial + 1}/{trials}: "
            + ", ".join(f"{t} {rows[t].samples[-1].seconds:.2f} s" for t in names)
        )
    shutil.rmtree(out)
    return [rows[tool] for tool in names]


def bench_startup(workdir: Path, trials: int) -> list[str]:
    """What start-up alone costs each of the tool's two children: time and peak RSS."""
    lines = []
    for what, argv in (
        ("python + import of the module and pyrage", [sys.executable, "-c", IMPORT_CHILD]),
        ("--version (python + compiling the script)", [sys.executable, str(SCRIPT), "--version"]),
    ):
        if what.startswith("python"):
            argv = [*argv, str(REPO)]
        samples = [run_child(argv, cwd=workdir) for _ in range(trials + 1)][1:]
        for sample in samples:
            check_ok(what, sample)
        median = statistics.median(s.seconds for s in samples)
        rss = max(s.max_rss_kb for s in samples) / 1024
        lines.append(f"start-up, {what}: {median:.3f} s, peak RSS {rss:.1f} MB")
    return lines


# ======================================================================================
# Output
# ======================================================================================


def render(rows: Sequence[Row]) -> list[list[str]]:
    table = [
        [
            "size",
            "operation",
            "tool",
            "median s",
            "min s",
            "max s",
            "MiB/s",
            "÷ age",
            "peak RSS MB",
        ]
    ]
    for row in rows:
        age = next(
            r
            for r in rows
            if r.size == row.size and r.operation == row.operation and r.tool.startswith("age")
        )
        table.append(
            [
                size_label(row.size),
                row.operation,
                row.tool,
                f"{row.median:.3f}",
                f"{min(row.times):.3f}",
                f"{max(row.times):.3f}",
                f"{row.size / MIB / row.median:,.0f}",
                f"{row.median / age.median:.2f}",
                f"{row.peak_rss_mb:.1f}",
            ]
        )
    return table


def render_targets(rows: Sequence[Row]) -> list[str]:
    """Per size: the tool ÷ age, and the issue's memory bound (figures, not a test)."""
    lines = []
    for size in dict.fromkeys(r.size for r in rows):
        mine = {r.operation: r for r in rows if r.size == size and r.tool in OURS}
        age = {r.operation: r for r in rows if r.size == size and r.tool not in OURS}
        enc, dec = mine["encrypt"], mine["decrypt"]
        lines.append(
            f"{size_label(size)}: encrypt, tool / age = {enc.median / age['encrypt'].median:.2f}; "
            f"decrypt, tool / age = {dec.median / age['decrypt'].median:.2f}; "
            f"encrypt peak RSS {enc.peak_rss_mb:.1f} MB "
            f"({'met' if enc.peak_rss_mb < TARGET_RSS_MB else 'MISSED'}, target < "
            f"{TARGET_RSS_MB}); decrypt peak RSS {dec.peak_rss_mb:.1f} MB "
            f"({'under' if dec.peak_rss_mb < TARGET_RSS_MB else 'NOT under'} {TARGET_RSS_MB})"
        )
    return lines


def age_version() -> str:
    done = subprocess.run([AGE, "--version"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def environment() -> list[str]:
    return [
        module_identity(),
        f"date: {dt.datetime.now():%Y-%m-%d %H:%M}; host: {platform.node()}; "
        f"{os.cpu_count()} CPU(s); {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, pyrage {importlib.metadata.version('pyrage')}, "
        f"age {age_version()} ({shutil.which(AGE)})",
    ]


# ======================================================================================
# Main
# ======================================================================================


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1G", help="comma-separated, e.g. 100M,1G (1G)")
    parser.add_argument("--trials", type=int, default=5, help="timed rounds per size (5)")
    parser.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "dbbackup-bench-encrypt"),
        help="scratch folder for the files (default: a folder in the temp dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the made files and key")
    parser.add_argument("--note", default="", help="a line printed with the results")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or args.trials < 1:
        raise SystemExit("give at least one size, and --trials of 1 or more")
    if not shutil.which(AGE):
        raise SystemExit("the age command is missing: apt-get install age")
    if importlib.util.find_spec("pyrage") is None:
        raise SystemExit("the pyrage package is missing: pip install pyrage")
    # per size: the backup and its .age (kept while the others run), and one output
    workdir = workdir_with_room(args.workdir, 3 * max(sizes))
    file_system = file_system_of(workdir)
    started = time.perf_counter()
    rows: list[Row] = []
    made: list[Path] = []
    try:
        key, public = key_pair(workdir, made)
        rss_floor_mb = run_child(["true"], cwd=workdir).max_rss_kb / 1024
        startup = bench_startup(workdir, args.trials)
        for size in sizes:
            log(f"encrypt/decrypt {size_label(size)} ...")
            inputs = Inputs(workdir, size, public)
            made.append(inputs.folder)
            rows += bench_size(inputs, size, key, public, args.trials, workdir / "out")
    finally:
        stop_launcher()
        shutil.rmtree(workdir / "out", ignore_errors=True)
        if not args.keep:
            for path in made:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if not any(workdir.iterdir()):
                workdir.rmdir()
    elapsed = time.perf_counter() - started
    header = environment() + [
        f"workdir: {workdir} ({file_system}); sizes {args.sizes}; trials {args.trials}; "
        f"total {elapsed:.0f} s",
        f"peak RSS is each child's own ru_maxrss (os.wait4); a child of the launcher "
        f"cannot show less than {rss_floor_mb:.1f} MB (what `true` shows)",
    ]
    if args.note:
        header.append(args.note)
    table = render(rows)
    notes = render_targets(rows) + startup
    title = f"Encryption and decryption, median of {args.trials} alternating trials"
    print_report(header, [(title, table, notes)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
