"""The benchmarks still run: each script end to end at a tiny size (figures are not checked)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BENCH = REPO / "bench"


def bench_process(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_bench(script: str, *args: str, cwd: Path) -> str:
    """Run a benchmark that must succeed; the markdown its output ends with."""
    proc = bench_process(script, *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("---- markdown ----", 1)[1]


@pytest.mark.skipif(not shutil.which("sqlite3"), reason="the sqlite3 CLI is not installed")
def test_bench_backup_times_all_three_tools_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    markdown = run_bench(
        "bench_backup.py",
        "--sizes",
        "2M",
        "--trials",
        "2",
        "--settle",
        "0.05",
        "--parts",
        "timing,phases,unchanged",
        "--workdir",
        str(workdir),
        cwd=tmp_path,
    )
    for mode in ("wal", "rollback"):
        for tool in ("cp+fsync", "sqlite3 .backup", "--run"):
            assert f"| 2M | {mode} | {tool} |" in markdown
        assert f"2M {mode}: --run / sqlite3 .backup = " in markdown
    assert "settle 0.05 s" in markdown
    unchanged = markdown.split("### Unchanged database, median of 2 alternating trials", 1)[1]
    for mode in ("wal", "rollback"):
        row = next(line for line in unchanged.splitlines() if line.startswith(f"| 2M | {mode} |"))
        assert len(row.strip("| ").split(" | ")) == 8  # three medians and three ratios
        # every timed unchanged run took the unchanged path; its folder's disk use is printed
        assert f"2M {mode}: 2 of 2 unchanged runs shared the previous file" in unchanged
    assert "backup folder after the last: 2 names, " in unchanged
    assert "quick_check of the copy" in markdown
    assert "compiling the script, in-process" in markdown
    assert not workdir.exists()  # without --keep, the scratch folder goes


def test_bench_backup_refuses_a_negative_settle(tmp_path: Path) -> None:
    proc = bench_process("bench_backup.py", "--settle", "-1", cwd=tmp_path)
    assert proc.returncode != 0
    assert "--settle not >= 0 s" in proc.stderr


def test_bench_retention_runs_every_row(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    markdown = run_bench(
        "bench_retention.py",
        "--files",
        "3000",
        "--trials",
        "1",
        "--workdir",
        str(workdir),
        cwd=tmp_path,
    )
    assert "| list_backups (scandir + stat + parse) | 3,000 files |" in markdown
    assert "--stats (whole process)" in markdown
    assert "--run --keep-days 30 --keep-last 3 (whole process)" in markdown
    night = next(line for line in markdown.splitlines() if "--keep-days 1094" in line)
    assert "2,998 kept, prunes 2" in night  # a night: the oldest few go
    assert not workdir.exists()


@pytest.mark.skipif(
    not shutil.which("age") or importlib.util.find_spec("pyrage") is None,
    reason="the age command or the pyrage package is not installed",
)
def test_bench_encrypt_times_the_tool_beside_age_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    markdown = run_bench(
        "bench_encrypt.py",
        "--sizes",
        "1M",
        "--trials",
        "1",
        "--workdir",
        str(workdir),
        cwd=tmp_path,
    )
    for operation, tool in (
        ("encrypt", "Encryption.outgoing"),
        ("encrypt", "age -r"),
        ("decrypt", "--decrypt"),
        ("decrypt", "age -d"),
    ):
        assert f"| 1M | {operation} | {tool} |" in markdown
    assert "1M: encrypt, tool / age = " in markdown
    assert "encrypt peak RSS " in markdown
    assert not workdir.exists()  # without --keep, the files and the key go


def test_bench_drill_times_the_drill_beside_a_restore_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    markdown = run_bench(
        "bench_drill.py",
        "--size-mb",
        "2",
        "--rounds",
        "1",
        "--workdir",
        str(workdir),
        cwd=tmp_path,
    )
    commands = ["--drill", "--restore", "cp+fsync"]
    if shutil.which("sqlite3"):
        commands.append("sqlite3 .backup")
    for command in commands:
        assert f"| 2M | {command} |" in markdown
    assert "2M: --drill / --restore = " in markdown
    assert "the drill's split, medians of its 1 timed runs" in markdown
    assert "restore_s " in markdown and "check_s " in markdown
    assert not workdir.exists()  # the app, its backup and the outputs all go


def test_bench_archive_times_the_tool_beside_zip_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    markdown = run_bench(
        "bench_archive.py",
        "--size-mb",
        "20",
        "--repeat",
        "1",
        "--workdir",
        str(workdir),
        cwd=tmp_path,
    )
    assert "| --archive |" in markdown
    assert "--archive peak RSS " in markdown and "target < 64" in markdown
    if shutil.which("zip"):
        assert "| zip -r |" in markdown
        assert "20M: --archive / zip -r = " in markdown
    else:
        assert "zip -r: skipped, the zip command is not installed" in markdown
    assert not workdir.exists()  # without --keep, the app folder and the outputs go
