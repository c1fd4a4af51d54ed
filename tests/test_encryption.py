"""Encryption of off-site copies with age: what leaves the machine is ciphertext, and it comes back.

Real ``age``, ``age-keygen`` and ``ssh-keygen`` commands make and read the keys and the copies;
the S3 destination is the real server of test_offsite (``rclone serve s3``). Nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import test_offsite as offsite
from conftest import (
    App,
    assert_no_traceback,
    flip_middle_bytes,
    make_db,
    read_invariant,
    run_process,
)
from test_offsite import CREDENTIALS, S3Bucket, calls, uploader

import database_backup_scheduler as dbs

pytest.importorskip("pyrage", reason="pyrage is not installed (pip install pyrage)")
pytestmark = pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("age-keygen") is None,
    reason="the age and age-keygen commands are not on PATH (apt-get install age)",
)

# test_offsite's fixtures, found by pytest under these names: its S3 server (one per module),
# a bucket of each test's own on it, and an empty folder as a NAS share would be.
aws_env = offsite.aws_env
s3_server = offsite.s3_server
s3 = offsite.s3
nas = offsite.nas

DB = "pet_painting.db"
MARKER = "marker-7f3a-plaintext"
SQLITE_HEADER = b"SQLite format 3"
SECRET_KEY_IS_RECIPIENT = "that is a secret key; give its public key"


# -- keys and helpers --------------------------------------------------------------------------


@dataclasses.dataclass
class AgeKey:
    """An age identity file made by the real age-keygen, and its public key."""

    identity: Path
    public: str


def new_age_key(path: Path) -> AgeKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    made = run_process(["age-keygen", "-o", str(path)], cwd=path.parent)
    assert made.returncode == 0, made.stderr
    public = run_process(["age-keygen", "-y", str(path)], cwd=path.parent)
    assert public.returncode == 0, public.stderr
    return AgeKey(path, public.stdout.strip())


@pytest.fixture
def key(tmp_path: Path) -> AgeKey:
    return new_age_key(tmp_path / "keys" / "backup-key.txt")


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    """An unencrypted ed25519 OpenSSH private key (its public key beside it, ``.pub``)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not on PATH (apt-get install openssh-client)")
    folder = tmp_path / "ssh"
    folder.mkdir()
    path = folder / "id_backup"
    made = run_process(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "backup@test", "-f", str(path)],
        cwd=folder,
    )
    assert made.returncode == 0, made.stderr
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age_decrypt(path: Path, identity: Path) -> bytes:
    """The plaintext of ``path``, decrypted by the real age command; fails the test if it cannot."""
    result = subprocess.run(
        ["age", "-d", "-i", str(identity), str(path)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def mark_database(app: App) -> None:
    """A row holding MARKER in the main database: any plaintext copy of it contains the marker."""
    conn = sqlite3.connect(app.main_db)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes(text) VALUES (?)", (MARKER,))
    conn.close()


def newest_backup(app: App) -> Path:
    """The newest local backup of the main database (by the time and counter in its name)."""
    return dbs.list_backups(app.backup_dir, [DB])[DB][0].path


def run_ok(app: App, *flags: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``--run --json`` that must succeed: its JSON document."""
    result = app.run("--run", "--json", *flags, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    return json.loads(result.stdout)


def encrypted_copy(app: App, key: AgeKey, folder: Path) -> tuple[Path, Path]:
    """A run that sends an encrypted copy to ``folder``: (the local backup, its ``.age`` copy)."""
    run_ok(app, "--copy-to", str(folder), "--encrypt-to", key.public)
    backup = newest_backup(app)
    copy = folder / (backup.name + ".age")
    assert copy.is_file(), sorted(os.listdir(folder))
    return backup, copy


def backup_folder(app: App) -> list[str]:
    """What the backup folder holds, the run lock file left out."""
    return sorted(n for n in os.listdir(app.backup_dir) if n != dbs.LOCK_FILE_NAME)


def assert_only_backups_in_backup_folder(app: App) -> None:
    """Nothing decrypted or temporary is left in the backup folder: backups and the lock only."""
    others = [n for n in backup_folder(app) if not dbs.is_backup_name(n)]
    assert others == [], others


def assert_no_plaintext(data: bytes, where: str) -> None:
    assert MARKER.encode() not in data, f"{where} holds the database's plaintext"
    assert SQLITE_HEADER not in data, f"{where} holds an SQLite header"


def assert_usage_error(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 2 with one ``error:`` line and a ``hint:`` line on stderr, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    lines = result.stderr.splitlines()
    assert len([line for line in lines if "error:" in line]) == 1, result.stderr
    assert any("hint:" in line for line in lines), result.stderr


# -- what the destinations receive ----------------------------------------------------------


def test_folder_and_s3_receive_only_age_files_with_no_plaintext_that_decrypt_to_the_backup(
    app: App, nas: Path, s3: S3Bucket, key: AgeKey
) -> None:
    mark_database(app)

    run = run_ok(
        app, "--copy-to", str(nas), *s3.flags(), "--encrypt-to", key.public, env=CREDENTIALS
    )

    backup = newest_backup(app)
    plain = backup.read_bytes()
    assert MARKER.encode() in plain and plain.startswith(SQLITE_HEADER)  # local stays plain
    sent = backup.name + ".age"
    assert sorted(os.listdir(nas)) == [sent]
    assert s3.keys() == [f"app/{sent}"]

    client = s3.client()
    objects = client.list_objects_v2(Bucket=s3.name).get("Contents", [])
    received = {f"{nas}/{n}": (nas / n).read_bytes() for n in os.listdir(nas)}
    for item in objects:
        body = client.get_object(Bucket=s3.name, Key=item["Key"])["Body"].read()
        received[f"s3://{s3.name}/{item['Key']}"] = body
    for parent, _, files in os.walk(s3.folder):  # the server's own files for the bucket too
        for name in files:
            received[os.path.join(parent, name)] = Path(parent, name).read_bytes()
    for where, data in received.items():
        assert_no_plaintext(data, where)

    identity = key.identity
    assert sha256(age_decrypt(nas / sent, identity)) == sha256(plain)
    s3_copy = s3.folder / "app" / sent
    assert sha256(age_decrypt(s3_copy, identity)) == sha256(plain)
    folder, bucket = run["destinations"]
    for far, copy in ((folder, nas / sent), (bucket, s3_copy)):
        assert (far["status"], far["uploaded"]) == ("ok", [sent]), far
        assert far["sent"] == {sent: sha256(copy.read_bytes())}, far
    assert_only_backups_in_backup_folder(app)


def test_upload_command_gets_a_temporary_age_file_named_dot_age(
    app: App, tmp_path: Path, key: AgeKey
) -> None:
    mark_database(app)
    command, remote = uploader(tmp_path)

    run_ok(app, "--upload-command", command, "--encrypt-to", key.public)

    backup = newest_backup(app)
    ((path, name, database, checksum, size),) = calls(remote)
    assert name == backup.name + ".age"
    assert database == DB
    received = (remote / name).read_bytes()
    assert_no_plaintext(received, f"the file {{path}} of the upload command ({path})")
    assert (checksum, size) == (sha256(received), str(len(received)))
    assert sha256(age_decrypt(remote / name, key.identity)) == sha256(backup.read_bytes())
    assert not Path(path).exists(), "the temporary ciphertext is left behind"
    assert_only_backups_in_backup_folder(app)


def test_run_log_records_each_destinations_encrypted_sends(
    app: App, nas: Path, key: AgeKey
) -> None:
    run = run_ok(app, "--copy-to", str(nas), "--encrypt-to", key.public)

    sent = newest_backup(app).name + ".age"
    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    assert log["runs"][-1]["destinations"] == run["destinations"]
    (far,) = run["destinations"]
    assert far["uploaded"] == [sent]
    assert far["sent"] == {sent: sha256((nas / sent).read_bytes())}
    assert far["damaged_copies"] == []


# -- damaged copies at a destination -----------------------------------------------------------


def test_damaged_age_copy_in_a_folder_is_found_by_the_next_run_and_sent_again(
    app: App, nas: Path, key: AgeKey
) -> None:
    backup, copy = encrypted_copy(app, key, nas)
    flip_middle_bytes(copy)

    run = run_ok(app, "--copy-to", str(nas), "--encrypt-to", key.public)

    (far,) = run["destinations"]
    assert far["damaged_copies"] == [copy.name], far
    assert copy.name in far["uploaded"], far
    assert far["sent"][copy.name] == sha256(copy.read_bytes())
    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    assert log["runs"][-1]["destinations"][0]["damaged_copies"] == [copy.name]
    assert sha256(age_decrypt(copy, key.identity)) == sha256(backup.read_bytes())


def test_damaged_age_object_in_s3_is_found_by_the_next_run_and_sent_again(
    app: App, s3: S3Bucket, key: AgeKey
) -> None:
    flags = [*s3.flags(), "--encrypt-to", key.public]
    run_ok(app, *flags, env=CREDENTIALS)
    backup = newest_backup(app)
    object_key = f"app/{backup.name}.age"
    client = s3.client()
    body = bytearray(client.get_object(Bucket=s3.name, Key=object_key)["Body"].read())
    body[len(body) // 2 : len(body) // 2 + 64] = bytes(
        b ^ 0xFF for b in body[len(body) // 2 :][:64]
    )
    client.put_object(Bucket=s3.name, Key=object_key, Body=bytes(body))

    run = run_ok(app, *flags, env=CREDENTIALS)

    (far,) = run["destinations"]
    assert far["damaged_copies"] == [backup.name + ".age"], far
    assert sha256(age_decrypt(s3.folder / object_key, key.identity)) == sha256(backup.read_bytes())


# -- recipients: SSH keys, recipients files, the config file -----------------------------------


def test_ssh_public_key_recipient_round_trips_with_age_and_decrypt(
    app: App, nas: Path, ssh_key: Path, tmp_path: Path
) -> None:
    public = Path(f"{ssh_key}.pub").read_text(encoding="utf-8").strip()

    run_ok(app, "--copy-to", str(nas), "--encrypt-to", public)

    backup = newest_backup(app)
    copy = nas / (backup.name + ".age")
    assert sha256(age_decrypt(copy, ssh_key)) == sha256(backup.read_bytes())
    out = tmp_path / "decrypted.db"
    result = app.run("--decrypt", str(copy), "--identity", str(ssh_key), "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == backup.read_bytes()


def test_recipients_file_with_two_keys_comments_and_blank_lines_lets_either_decrypt(
    app: App, nas: Path, tmp_path: Path
) -> None:
    alice = new_age_key(tmp_path / "keys" / "alice.txt")
    bob = new_age_key(tmp_path / "keys" / "bob.txt")
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(
        f"# who can read the off-site copies\n\n{alice.public}\n   \n"
        f"# bob, offline\n{bob.public}\n",
        encoding="utf-8",
    )

    run_ok(app, "--copy-to", str(nas), "--encrypt-to", str(recipients))

    backup = newest_backup(app)
    copy = nas / (backup.name + ".age")
    expected = sha256(backup.read_bytes())
    assert sha256(age_decrypt(copy, alice.identity)) == expected
    assert sha256(age_decrypt(copy, bob.identity)) == expected


@pytest.mark.parametrize("shape", ["list", "string"])
def test_encrypt_to_in_the_config_file_works_like_the_flag(
    app: App, key: AgeKey, shape: str
) -> None:
    mark_database(app)
    encrypt_to: Any = [key.public] if shape == "list" else key.public
    settings = {"encrypt_to": encrypt_to, "copy_to": ["offsite"]}
    (app.root / "database_backup_config.json").write_text(json.dumps(settings), encoding="utf-8")
    offsite = app.root / "offsite"
    offsite.mkdir()

    run_ok(app)

    backup = newest_backup(app)
    assert sorted(os.listdir(offsite)) == [backup.name + ".age"]
    copy = offsite / (backup.name + ".age")
    assert_no_plaintext(copy.read_bytes(), str(copy))
    assert sha256(age_decrypt(copy, key.identity)) == sha256(backup.read_bytes())


# -- settings that are refused before anything runs --------------------------------------------


def recipient_for(case: str, folder: Path, key: AgeKey) -> str:
    """The --encrypt-to value of each refused setting."""
    secret = next(
        line
        for line in key.identity.read_text(encoding="utf-8").splitlines()
        if line.startswith("AGE-SECRET-KEY-1")
    )
    if case == "nonsense":
        return "nonsense"
    if case == "not-a-key":
        return "age1notakey"
    if case == "secret-key":
        return secret
    if case == "secret-key-file":
        return str(key.identity)
    if case == "missing-file":
        return str(folder / "no-such-recipients.txt")
    assert case == "ssh-private-key"
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not on PATH (apt-get install openssh-client)")
    path = folder / "id_ed25519"
    made = run_process(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], cwd=folder)
    assert made.returncode == 0, made.stderr
    return str(path)


@pytest.mark.parametrize(
    "case",
    [
        "nonsense",
        "not-a-key",
        "secret-key",
        "secret-key-file",
        "missing-file",
        "ssh-private-key",
    ],
)
def test_unusable_recipient_exits_2_before_anything_runs(
    app: App, nas: Path, key: AgeKey, tmp_path: Path, case: str
) -> None:
    recipient = recipient_for(case, tmp_path, key)

    result = app.run("--run", "--copy-to", str(nas), "--encrypt-to", recipient)

    assert_usage_error(result)
    if case.startswith(("secret-key", "ssh-private")):
        assert SECRET_KEY_IS_RECIPIENT in result.stderr, result.stderr
    if case == "secret-key":
        assert recipient not in result.stdout + result.stderr  # never echo a secret key
    assert app.backups() == []
    assert not app.log_file.exists()
    assert os.listdir(nas) == []


# -- --keygen ----------------------------------------------------------------------------------


def test_keygen_writes_a_0600_identity_that_age_accepts(app: App, tmp_path: Path) -> None:
    path = tmp_path / "new-key.txt"

    result = app.run("--keygen", str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    (public,) = [
        line.split("Public key:", 1)[1].strip()
        for line in result.stdout.splitlines()
        if "Public key:" in line
    ]
    assert public.startswith("age1")
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines[-1].startswith("AGE-SECRET-KEY-1")
    assert all(line.startswith("#") for line in lines[:-1]), lines
    derived = run_process(["age-keygen", "-y", str(path)], cwd=tmp_path)
    assert derived.stdout.strip() == public
    secret_data = os.urandom(4096)
    sealed = subprocess.run(
        ["age", "-r", public], input=secret_data, capture_output=True, timeout=60
    )
    assert sealed.returncode == 0, sealed.stderr
    (tmp_path / "data.age").write_bytes(sealed.stdout)
    assert age_decrypt(tmp_path / "data.age", path) == secret_data


def test_keygen_refuses_to_overwrite_an_existing_file(app: App, key: AgeKey) -> None:
    before = key.identity.read_bytes()

    result = app.run("--keygen", str(key.identity))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert key.identity.read_bytes() == before


# -- --decrypt ---------------------------------------------------------------------------------


def test_decrypt_writes_the_backup_to_output(
    app: App, nas: Path, key: AgeKey, tmp_path: Path
) -> None:
    backup, copy = encrypted_copy(app, key, nas)
    before = backup_folder(app)
    out = tmp_path / "restored" / "copy.db"
    out.parent.mkdir()

    result = app.run("--decrypt", str(copy), "--identity", str(key.identity), "--output", str(out))

    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == backup.read_bytes()
    assert backup_folder(app) == before


def test_decrypt_refuses_an_existing_output(
    app: App, nas: Path, key: AgeKey, tmp_path: Path
) -> None:
    _, copy = encrypted_copy(app, key, nas)
    out = tmp_path / "already-here.db"
    out.write_bytes(b"keep me")

    result = app.run("--decrypt", str(copy), "--identity", str(key.identity), "--output", str(out))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert out.read_bytes() == b"keep me"


def test_decrypt_with_a_wrong_identity_exits_1_naming_both_files(
    app: App, nas: Path, key: AgeKey, tmp_path: Path
) -> None:
    _, copy = encrypted_copy(app, key, nas)
    stranger = new_age_key(tmp_path / "keys" / "stranger-key.txt")
    before = backup_folder(app)
    out = tmp_path / "never-written.db"

    result = app.run(
        "--decrypt", str(copy), "--identity", str(stranger.identity), "--output", str(out)
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert copy.name in result.stderr, result.stderr
    assert stranger.identity.name in result.stderr, result.stderr
    assert not out.exists()
    assert backup_folder(app) == before


# -- --verify and --restore of a .age copy ----------------------------------------------------


def test_verify_of_a_good_age_copy_passes_and_leaves_nothing_behind(
    app: App, nas: Path, key: AgeKey
) -> None:
    _, copy = encrypted_copy(app, key, nas)
    before = backup_folder(app)

    result = app.run("--verify", str(copy), "--identity", str(key.identity))

    assert result.returncode == 0, result.stdout + result.stderr
    assert any(copy.name in line and "ok" in line for line in result.stdout.splitlines()), (
        result.stdout
    )
    assert backup_folder(app) == before
    assert sorted(os.listdir(nas)) == [copy.name]


def test_verify_of_a_damaged_age_copy_fails(app: App, nas: Path, key: AgeKey) -> None:
    _, copy = encrypted_copy(app, key, nas)
    flip_middle_bytes(copy)
    before = backup_folder(app)

    result = app.run("--verify", str(copy), "--identity", str(key.identity))

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert copy.name in result.stdout + result.stderr
    assert backup_folder(app) == before
    assert sorted(os.listdir(nas)) == [copy.name]


def test_verify_of_an_age_copy_without_identity_exits_2_naming_the_flag(
    app: App, nas: Path, key: AgeKey
) -> None:
    _, copy = encrypted_copy(app, key, nas)

    result = app.run("--verify", str(copy))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "--identity" in result.stderr, result.stderr


def test_restore_from_an_age_copy_brings_the_backups_data_back(
    app: App, nas: Path, key: AgeKey
) -> None:
    backup, copy = encrypted_copy(app, key, nas)
    backed_up = read_invariant(backup)
    make_db(app.main_db, rows=30)  # the app goes on writing after the backup
    assert read_invariant(app.main_db) != backed_up

    result = app.run(
        "--restore", str(copy), "--identity", str(key.identity), "--yes", "--busy-timeout", "0.2"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert read_invariant(app.main_db) == backed_up
    # The safety copy of the replaced database (*.pre-restore) is --restore's own, documented.
    leftovers = [
        n
        for n in backup_folder(app)
        if not dbs.is_backup_name(n) and not n.endswith(".pre-restore")
    ]
    assert leftovers == []


def test_restore_from_an_age_copy_into_a_target(app: App, nas: Path, key: AgeKey) -> None:
    backup, copy = encrypted_copy(app, key, nas)
    backed_up = read_invariant(backup)
    make_db(app.main_db, rows=30)

    result = app.run(
        "--restore",
        str(copy),
        "--identity",
        str(key.identity),
        "--yes",
        "--target",
        str(app.main_db),
        "--busy-timeout",
        "0.2",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert read_invariant(app.main_db) == backed_up


def test_decrypted_folder_left_by_a_killed_command_is_removed_by_the_next_run(app: App) -> None:
    app.backup_dir.mkdir(parents=True)
    left = app.backup_dir / dbs.format_temp_name("decrypted")
    left.mkdir()
    (left / "pet_painting.db.20250101_030000.bak").write_bytes(b"decrypted plaintext")
    look_alike = app.backup_dir / dbs.format_temp_name("decrypted")
    look_alike.mkdir()
    (look_alike / "notes.txt").write_bytes(b"not the tool's")

    result = app.run("--run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert not left.exists()
    assert (look_alike / "notes.txt").read_bytes() == b"not the tool's"
