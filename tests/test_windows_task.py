"""The generated Windows batch file, run for real by wine's cmd.exe.

`--windows-task` writes `run_database_backup.bat` next to the module. Task Scheduler starts it
from an arbitrary folder, so these tests run it from several folders with Debian's wine and a
stub python.exe (tests/winstub/python_stub.c, compiled here with MinGW-w64) that records the
arguments and the working folder it was given and exits with a chosen code. Nothing is mocked:
the batch file is the one the CLI writes, and cmd.exe is a real (wine) cmd.exe.

The wine tests skip when wine or x86_64-w64-mingw32-gcc is missing (`.ci/install-wine.sh`
installs both) or when wine cannot start; the two tests of the file as a file need neither.
"""

from __future__ import annotations

import json
import ntpath
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE = REPO_ROOT / "database_backup_scheduler.py"
STUB_SOURCE = Path(__file__).resolve().parent / "winstub" / "python_stub.c"
MINGW_GCC = "x86_64-w64-mingw32-gcc"
BATCH_NAME = "run_database_backup.bat"
LOG_NAME = "database_backup_task.log"

# The first `wineboot --init` of a new prefix takes 10-60 s; later commands well under a second.
WINEBOOT_TIMEOUT_S = 300
WINE_COMMAND_TIMEOUT_S = 120


def run_to_end(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command until it exits and return its output.

    Output goes through temporary files, not pipes: wine may start helper processes (wineserver,
    winedevice.exe) that inherit the pipes and hold them open for seconds after the command ends.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        completed = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=err, timeout=timeout)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            args,
            completed.returncode,
            out.read().decode("utf-8", errors="replace"),
            err.read().decode("utf-8", errors="replace"),
        )


@dataclass(frozen=True)
class Wine:
    """A started wine prefix: the environment to run wine commands in."""

    env: dict[str, str]

    def run(
        self, args: list[str], *, cwd: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one wine command and return it finished, output captured."""
        env = dict(self.env)
        env.update(extra_env or {})
        return run_to_end(args, cwd=cwd, env=env, timeout=WINE_COMMAND_TIMEOUT_S)


@dataclass(frozen=True)
class Stub:
    """The compiled stub python.exe, by its Unix and its Windows path."""

    path: Path
    windows_path: str


def windows_path(path: Path) -> str:
    """Return `path` as wine's programs see it: drive Z: is the Unix root in a new prefix."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def same_windows_path(seen: str, path: Path) -> bool:
    """Say whether a path a Windows program saw names `path`, Windows paths being case-blind.

    Under wine a Unix absolute path ("/tmp/x") is also valid for a Windows program whose
    current drive is Z:, so both spellings count.
    """
    wanted = {
        ntpath.normcase(ntpath.normpath(p)) for p in (str(path.resolve()), windows_path(path))
    }
    return ntpath.normcase(ntpath.normpath(seen)) in wanted


def _output_tail(completed: subprocess.CompletedProcess[str]) -> str:
    return (completed.stdout + completed.stderr).strip()[-2000:]


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    """A fresh wine prefix for the session, booted once and shut down (wineserver -k) at the end."""
    for tool in ("wine", "wineboot", "wineserver"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (run .ci/install-wine.sh)")
    env = dict(os.environ)
    env.pop("WAYLAND_DISPLAY", None)
    env.update(
        {
            # An existing empty folder is a valid new prefix, and wineserver -p needs it to exist.
            "WINEPREFIX": str(tmp_path_factory.mktemp("wineprefix")),
            "WINEDEBUG": "-all",
            # Headless: no X display, no wine-mono / wine-gecko install dialogs at boot, and no
            # menu entries written into $HOME by winemenubuilder.
            "DISPLAY": "",
            "WINEDLLOVERRIDES": "mscoree,mshtml=;winemenubuilder.exe=d",
        }
    )
    prefix = Path(env["WINEPREFIX"])
    started = Wine(env=env)
    try:
        # A persistent wineserver, started before anything else uses the prefix, keeps each later
        # wine command fast (about 0.2 s instead of a cold start).
        subprocess.run(
            ["wineserver", "-p"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=WINE_COMMAND_TIMEOUT_S,
            check=False,
        )
        try:
            boot = run_to_end(
                ["wineboot", "--init"], cwd=prefix.parent, env=env, timeout=WINEBOOT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"wine cannot start: wineboot --init took over {WINEBOOT_TIMEOUT_S} s")
        if boot.returncode != 0:
            pytest.skip(
                f"wine cannot start: wineboot --init exited {boot.returncode}: {_output_tail(boot)}"
            )
        # One probe shows cmd.exe runs, sees the Unix environment, and passes its exit code back.
        probe = started.run(
            ["wine", "cmd", "/c", "exit %WINE_PROBE_EXIT_CODE%"],
            cwd=prefix.parent,
            extra_env={"WINE_PROBE_EXIT_CODE": "7"},
        )
        if probe.returncode != 7:
            pytest.skip(
                "wine cannot start: `wine cmd /c exit %WINE_PROBE_EXIT_CODE%` with the variable 7 "
                f"exited {probe.returncode}: {_output_tail(probe)}"
            )
        yield started
    finally:
        # The persistent wineserver and the services wineboot started would outlive the
        # session: kill them all. The prefix holds ~650 MB of copied DLLs; pytest would keep it.
        subprocess.run(["wineserver", "-k"], env=env, capture_output=True, timeout=60, check=False)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="session")
def python_stub(tmp_path_factory: pytest.TempPathFactory) -> Stub:
    """The stub python.exe, compiled once into a folder whose name has a space."""
    if shutil.which(MINGW_GCC) is None:
        pytest.skip(f"{MINGW_GCC} is not installed (run .ci/install-wine.sh)")
    exe = tmp_path_factory.mktemp("stub") / "my tools" / "python.exe"
    exe.parent.mkdir()
    compiled = subprocess.run(
        [MINGW_GCC, "-municode", "-O2", "-Wall", "-o", str(exe), str(STUB_SOURCE)],
        capture_output=True,
        text=True,
        timeout=WINE_COMMAND_TIMEOUT_S,
    )
    assert compiled.returncode == 0, f"{MINGW_GCC} failed on {STUB_SOURCE}:\n{compiled.stderr}"
    return Stub(path=exe, windows_path=windows_path(exe))


@pytest.fixture
def app_folder(tmp_path: Path) -> Path:
    """A web app's root, with a space in its path, holding a copy of the module."""
    folder = tmp_path / "my app"
    folder.mkdir()
    shutil.copy2(MODULE, folder / MODULE.name)
    return folder


def write_config_file(folder: Path) -> Path:
    """Write an empty (all defaults) JSON config file into `folder`, made here."""
    folder.mkdir()
    path = folder / "backup config.json"
    path.write_text("{}\n", encoding="utf-8")
    return path


def write_task_batch(app_folder: Path, *options: str, cwd: Path) -> Path:
    """Run `--windows-task` on the module in `app_folder` from `cwd`; return the batch it wrote."""
    completed = subprocess.run(
        [sys.executable, str(app_folder / MODULE.name), "--windows-task", *options],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    batch = app_folder / BATCH_NAME
    assert batch.is_file(), f"--windows-task did not write {batch}"
    return batch


@dataclass(frozen=True)
class BatchRun:
    """What one run of the batch file showed: wine's exit code and the stub's record."""

    exit_code: int
    argv: list[str]
    cwd: str
    command_line: str


def run_batch(
    wine: Wine, batch: Path, *, cwd: Path, exit_code: int = 0, marker: str = "run"
) -> BatchRun:
    """Run `batch` with wine's cmd.exe from `cwd`, the stub set to exit with `exit_code`."""
    record = batch.parent.parent / f"stub-record-{marker}.json"
    record.unlink(missing_ok=True)
    completed = wine.run(
        ["wine", "cmd", "/c", windows_path(batch)],
        cwd=cwd,
        extra_env={
            "PYTHON_STUB_RECORD": windows_path(record),
            "PYTHON_STUB_MARKER": marker,
            "PYTHON_STUB_EXIT_CODE": str(exit_code),
        },
    )
    assert record.is_file(), (
        "the stub python.exe did not run (or did not see PYTHON_STUB_RECORD); "
        f"wine exited {completed.returncode}: {_output_tail(completed)}\n"
        f"--- {batch.name} ---\n{batch.read_text(errors='replace')}"
    )
    seen = json.loads(record.read_text(encoding="utf-8"))
    return BatchRun(
        exit_code=completed.returncode,
        argv=seen["argv"],
        cwd=seen["cwd"],
        command_line=seen["command_line"],
    )


def options_of(args: list[str]) -> dict[str, str | None]:
    """Group command-line options as argparse would take them: {"--trigger": "task", "--run": None}.

    The order of the options is the CLI's choice; a stray value with no option before it fails.
    """
    options: dict[str, str | None] = {}
    name = None
    for arg in args:
        if arg.startswith("--"):
            name = arg
            options[name] = None
        else:
            assert name is not None and options[name] is None, f"stray argument {arg!r} in {args}"
            options[name] = arg
    return options


# ======================================================================================
# The batch file as a file
# ======================================================================================


def test_batch_file_has_crlf_line_endings_and_no_bare_lf(app_folder: Path, tmp_path: Path) -> None:
    batch = write_task_batch(app_folder, "--python", r"C:\Python312\python.exe", cwd=tmp_path)
    data = batch.read_bytes()
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")


def test_batch_file_is_written_next_to_module_whatever_the_working_folder(
    app_folder: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_task_batch(app_folder, "--python", r"C:\Python312\python.exe", cwd=elsewhere)
    assert (app_folder / BATCH_NAME).is_file()
    assert not (elsewhere / BATCH_NAME).exists()


# ======================================================================================
# The batch file run by wine's cmd.exe
# ======================================================================================


@pytest.mark.parametrize("start", ["tmp", "root", "other"])
def test_batch_changes_to_its_own_folder_from_any_starting_folder(
    python_stub: Stub, wine: Wine, app_folder: Path, tmp_path: Path, start: str
) -> None:
    other = tmp_path / "some other folder"
    other.mkdir()
    starting_folder = {"tmp": tmp_path, "root": Path("/"), "other": other}[start]
    batch = write_task_batch(app_folder, "--python", python_stub.windows_path, cwd=tmp_path)

    run = run_batch(wine, batch, cwd=starting_folder)

    assert same_windows_path(run.cwd, app_folder), run


def test_batch_passes_module_path_with_spaces_as_one_argument_then_run_trigger_task(
    python_stub: Stub, wine: Wine, app_folder: Path, tmp_path: Path
) -> None:
    batch = write_task_batch(app_folder, "--python", python_stub.windows_path, cwd=tmp_path)

    run = run_batch(wine, batch, cwd=tmp_path)

    assert same_windows_path(run.argv[1], app_folder / MODULE.name), run
    assert options_of(run.argv[2:]) == {"--run": None, "--lang": "en", "--trigger": "task"}, run


# A percent sign must reach python as itself, not start a cmd.exe %variable%; a non-ASCII
# letter must survive cmd.exe reading the batch file in its OEM code page.
@pytest.mark.parametrize("config_folder", ["my conf", "my 50% conf", "my cönf"])
def test_batch_passes_absolute_config_path_with_spaces_as_one_argument(
    python_stub: Stub, wine: Wine, app_folder: Path, tmp_path: Path, config_folder: str
) -> None:
    config_file = write_config_file(tmp_path / config_folder)
    # Given relative to the working folder, so the CLI has to make it absolute.
    relative_config = config_file.relative_to(tmp_path)
    batch = write_task_batch(
        app_folder,
        "--python",
        python_stub.windows_path,
        "--config",
        str(relative_config),
        cwd=tmp_path,
    )

    run = run_batch(wine, batch, cwd=Path("/"))

    options = options_of(run.argv[2:])
    config_seen = options.pop("--config", None)
    assert options == {"--run": None, "--lang": "en", "--trigger": "task"}, run
    assert config_seen is not None and same_windows_path(config_seen, config_file), run


@pytest.mark.parametrize("exit_code", [0, 1, 75])
def test_batch_exits_with_the_exit_code_of_python(
    python_stub: Stub, wine: Wine, app_folder: Path, tmp_path: Path, exit_code: int
) -> None:
    batch = write_task_batch(app_folder, "--python", python_stub.windows_path, cwd=tmp_path)

    run = run_batch(wine, batch, cwd=tmp_path, exit_code=exit_code)

    assert run.exit_code == exit_code


def test_batch_appends_stdout_and_stderr_of_each_run_to_log_in_app_folder(
    python_stub: Stub, wine: Wine, app_folder: Path, tmp_path: Path
) -> None:
    other = tmp_path / "some other folder"
    other.mkdir()
    batch = write_task_batch(app_folder, "--python", python_stub.windows_path, cwd=tmp_path)

    run_batch(wine, batch, cwd=tmp_path, marker="first-run")
    run_batch(wine, batch, cwd=other, exit_code=1, marker="second-run")

    log = (app_folder / LOG_NAME).read_text(encoding="utf-8", errors="replace")
    stub_lines = [line.strip() for line in log.splitlines() if line.startswith("python_stub ")]
    assert stub_lines == [
        "python_stub stdout first-run",
        "python_stub stderr first-run",
        "python_stub stdout second-run",
        "python_stub stderr second-run",
    ], log
    assert not (tmp_path / LOG_NAME).exists()
    assert not (other / LOG_NAME).exists()


def test_batch_pins_the_logs_encoding_so_a_chinese_task_log_reads_as_gbk(
    python_stub: Stub, wine: Wine, app_folder: Path, tmp_path: Path
) -> None:
    batch = write_task_batch(
        app_folder, "--python", python_stub.windows_path, "--lang", "zh", cwd=tmp_path
    )
    assert "set PYTHONIOENCODING=cp936" in batch.read_text(encoding="ascii").splitlines()

    run_batch(wine, batch, cwd=tmp_path, marker="gbk")

    log = (app_folder / LOG_NAME).read_bytes()
    # The stub writes in the code page PYTHONIOENCODING names, as Python does; cmd.exe's >>
    # appends those bytes as they are: Notepad on a Chinese Windows reads GBK.
    assert "pinned encoding: 备份任务完成".encode("gbk") in log
    assert "pinned encoding: 备份任务完成" in log.decode("gbk")
