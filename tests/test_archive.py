"""--archive and --restore-archive: a zip of the app's instance folder, through the real CLI.

The instance folder is a real one: a WAL database that another process writes to while the
archive is made, a rollback-journal database beside it, pictures, Chinese names, symbolic
links (one leading outside), the backup folder inside it. The archives are read back with
``zipfile`` and ``unzip``; crafted archives are written with ``zipfile``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    WRITER,
    App,
    assert_no_traceback,
    integrity,
    make_config,
    make_db,
    plant_backup,
    read_invariant,
    run_process,
    start_python,
    stop,
    wait_ready,
)

MANIFEST = "database_backup_manifest.json"
ARCHIVE_NAME = re.compile(r"instance\.(\d{8}_\d{6})(-\d+)?\.zip")
SIDE_FILES = ("-wal", "-shm", "-journal")
ZH = {"LANG": "zh_CN.UTF-8"}
# 2020-01-02 03:04:05 UTC: an odd second, which a zip entry's DOS time cannot hold, so a
# restored file has it back only from the manifest's mtime_ns.
OLD_MTIME = 1_577_934_245
JSON_KEYS = {
    "database",
    "source",
    "status",
    "backup",
    "size_bytes",
    "sha256",
    "members",
    "databases",
    "changed",
    "vanished",
    "unreadable",
    "pruned",
    "error",
    "hint",
}

POSIX_LINKS = pytest.mark.skipif(os.name != "posix", reason="symbolic links (POSIX)")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def has_chinese(value: str) -> bool:
    """Chinese characters or Chinese (full-width) punctuation."""
    return re.search(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", value) is not None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archives(app: App) -> list[Path]:
    """The files in the backup folder whose name ends in .zip, oldest name first."""
    if not app.backup_dir.exists():
        return []
    return sorted(p for p in app.backup_dir.iterdir() if p.name.endswith(".zip"))


def temp_files(folder: Path) -> list[Path]:
    """The tool's temporary files and folders in ``folder``."""
    return sorted(p for p in folder.iterdir() if p.name.startswith(".dbbackup-"))


def make_archive(
    app: App, *flags: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], Path]:
    """Run ``--archive --json`` (it must succeed): what it printed, and the archive's path."""
    result = app.run("--archive", "--json", *flags, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    document = json.loads(result.stdout)
    path = app.root / document["backup"]
    assert path.is_file(), document
    return document, path


def read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    return json.loads(archive.read(MANIFEST).decode("utf-8"))


def manifest_entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's members by path, a folder's without its trailing "/"."""
    return {entry["path"].rstrip("/"): entry for entry in manifest["members"]}


def mode_of(info: zipfile.ZipInfo) -> int:
    """The Unix mode a zip entry carries in the high half of its external attributes."""
    return info.external_attr >> 16


def is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(mode_of(info))


def damage_member(path: Path, name: str, count: int = 64) -> None:
    """Flip ``count`` bytes in the middle of a stored member's data: same size, headers intact.

    The member's CRC and SHA-256 no longer match; nothing else about the zip changes.
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    assert info.compress_type == zipfile.ZIP_STORED, f"{name} is not stored"
    assert info.compress_size > 4 * count, f"{name} is too small to damage in the middle"
    with open(path, "r+b") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        assert local[:4] == b"PK\x03\x04", "not a local file header"
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        middle = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
        handle.seek(middle)
        before = handle.read(count)
        handle.seek(middle)
        handle.write(bytes(b ^ 0xFF for b in before))


def write_crafted(path: Path, files: dict[str, bytes], listed: Iterable[str] | None) -> Path:
    """A zip holding ``files`` under exactly those member names, then a manifest listing the
    members named in ``listed`` (each as the real file it is), or no manifest when None."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        if listed is not None:
            members = [
                {
                    "path": name,
                    "kind": "file",
                    "size": len(files[name]),
                    "mtime_ns": OLD_MTIME * 1_000_000_000,
                    "sha256": sha256(files[name]),
                }
                for name in listed
            ]
            manifest = {
                "format": 1,
                "source": "instance",
                "created_at": "2026-12-06T03:00:00",
                "members": members,
                "changed": [],
                "vanished": [],
                "unreadable": [],
            }
            archive.writestr(MANIFEST, json.dumps(manifest))
    return path


def verdicts(document: dict[str, Any]) -> dict[str, bool]:
    """Each checked file's name and its ``ok`` from a ``--verify --json`` document, whichever
    list of the document holds it."""
    found = {}
    for value in document.values():
        if isinstance(value, list):
            for entry in value:
                if isinstance(entry, dict) and "path" in entry and "ok" in entry:
                    found[Path(entry["path"]).name] = entry["ok"]
    return found


def last_run(app: App) -> dict[str, Any]:
    return json.loads(app.log_file.read_text(encoding="utf-8"))["runs"][-1]


def age_archive(path: Path, days: float) -> Path:
    """Rename an archive so that its name says it was made ``days`` ago (its mtime too)."""
    made_at = datetime.datetime.now() - datetime.timedelta(days=days)
    older = path.with_name(f"instance.{made_at:%Y%m%d_%H%M%S}.zip")
    os.rename(path, older)
    os.utime(older, (made_at.timestamp(), made_at.timestamp()))
    return older


# --------------------------------------------------------------------------------------
# A furnished instance folder
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Furnished:
    """An app whose instance folder holds what a real one does (see ``furnish``)."""

    app: App
    secret: Path  # the file outside the folder that the link ``outside`` points at

    @property
    def instance(self) -> Path:
        return self.app.root / "instance"

    def regular_files(self) -> dict[str, Path]:
        """The plain files of the folder by their member name: no database or its side
        files, no link, nothing in the backup folder."""
        found = {}
        for path in sorted(self.instance.rglob("*")):
            name = path.relative_to(self.instance).as_posix()
            if name == "backups" or name.startswith("backups/") or path.is_symlink():
                continue
            if path.is_file() and not name.endswith((".db", *SIDE_FILES)):
                found[name] = path
        return found


def furnish(app: App, tmp_path: Path) -> Furnished:
    """Fill the app's instance folder (beside its WAL ``pet_painting.db``): ``side.db``
    (rollback journal, TRUNCATE mode, so an empty ``side.db-journal`` stays beside it),
    random-byte pictures, a folder and files with Chinese names, a text file, links
    ``inside`` (to ``readme.txt``), ``outside`` (to a file in tmp_path, by absolute path) and
    ``escape`` (to the same file, by ``../../secret.txt``),
    and the backup folder with a planted backup. Plain files get the mtime ``OLD_MTIME``."""
    instance = app.root / "instance"
    make_db(instance / "side.db", rows=50, journal_mode="truncate")
    assert (instance / "side.db-journal").exists()
    files = {
        "photo.jpg": os.urandom(200_000),
        "icon.png": os.urandom(50_000),
        "readme.txt": b"The pet painting app keeps its data here.\n" * 50,
        "图片/小猫.jpg": os.urandom(100_000),
        "图片/说明.txt": "小猫的照片，画成油画。\n".encode() * 40,
    }
    for name, data in files.items():
        path = instance / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (OLD_MTIME, OLD_MTIME))
    secret = tmp_path / "secret.txt"
    secret.write_text(f"outside the instance folder {os.urandom(16).hex()}\n", encoding="utf-8")
    os.symlink(str(secret), instance / "outside")
    os.symlink("../../secret.txt", instance / "escape")
    os.symlink("readme.txt", instance / "inside")
    plant_backup(
        app.main_db, app.backup_dir, "pet_painting.db", datetime.datetime(2026, 1, 1, 3, 0)
    )
    return Furnished(app, secret)


@dataclasses.dataclass
class Archived:
    """An archive made by ``--archive --json`` of a furnished instance under a writer."""

    furnished: Furnished
    path: Path
    document: dict[str, Any]
    commits: int  # the writer's commits while it ran

    @property
    def app(self) -> App:
        return self.furnished.app


@pytest.fixture
def archived(app: App, tmp_path: Path) -> Archived:
    """A furnished instance archived while another process commits to its main database."""
    if os.name != "posix":
        pytest.skip("symbolic links (POSIX)")
    furnished = furnish(app, tmp_path)
    stop_file = tmp_path / "stop"
    writer = start_python(WRITER, str(app.main_db), str(stop_file))
    try:
        wait_ready(writer)
        time.sleep(0.2)
        for end in ("-wal", "-shm"):
            assert Path(f"{app.main_db}{end}").exists(), f"the writer keeps the {end} file"
        result = app.run("--archive", "--json")
        stop_file.touch()
        out, err = writer.communicate(timeout=60)
    finally:
        stop(writer)
    assert writer.returncode == 0, err
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    document = json.loads(result.stdout)
    return Archived(furnished, app.root / document["backup"], document, int(out.strip()))


# --------------------------------------------------------------------------------------
# --archive: what goes in, and how
# --------------------------------------------------------------------------------------


def test_archive_reports_itself_in_json(archived: Archived) -> None:
    document, path = archived.document, archived.path

    assert JSON_KEYS <= set(document), sorted(JSON_KEYS - set(document))
    assert document["status"] == "ok"
    assert document["database"] == "instance/"
    assert path.parent == archived.app.backup_dir
    assert ARCHIVE_NAME.fullmatch(path.name), path.name
    assert document["size_bytes"] == path.stat().st_size
    assert document["sha256"] == sha256(path.read_bytes())
    assert sorted(document["databases"]) == ["pet_painting.db", "side.db"]
    assert document["vanished"] == [] and document["unreadable"] == []
    assert document["pruned"] == []
    with zipfile.ZipFile(path) as archive:
        assert document["members"] in {
            len(read_manifest(archive)["members"]),
            len(archive.infolist()),
        }


def test_archive_name_says_when_it_was_made(archived: Archived) -> None:
    made_at = ARCHIVE_NAME.fullmatch(archived.path.name)
    assert made_at is not None, archived.path.name
    when = datetime.datetime.strptime(made_at.group(1), "%Y%m%d_%H%M%S")
    assert abs(datetime.datetime.now() - when) < datetime.timedelta(minutes=5)


def test_archive_prints_the_archive_path(app: App) -> None:
    result = app.run("--archive")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    [path] = archives(app)
    assert path.name in result.stdout


def test_archive_databases_are_consistent_snapshots_taken_during_writes(
    archived: Archived, tmp_path: Path
) -> None:
    assert archived.commits > 20, "the writer should have kept writing during the archive"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with zipfile.ZipFile(archived.path) as archive:
        for name in ("pet_painting.db", "side.db"):
            (scratch / name).write_bytes(archive.read(name))
    for name in ("pet_painting.db", "side.db"):
        assert integrity(scratch / name) == "ok", name
        total, count, summed, counted = read_invariant(scratch / name)
        assert (total, count) == (summed, counted), name
    _, count, _, _ = read_invariant(scratch / "pet_painting.db")
    assert count > 200, "the snapshot should hold some of the writer's rows"


def test_archive_leaves_out_wal_shm_and_journal_files(archived: Archived) -> None:
    with zipfile.ZipFile(archived.path) as archive:
        names = archive.namelist()
    assert [n for n in names if n.endswith(SIDE_FILES)] == []


def test_archive_leaves_out_the_backup_folder(archived: Archived) -> None:
    with zipfile.ZipFile(archived.path) as archive:
        names = archive.namelist()
        manifest = manifest_entries(read_manifest(archive))
    assert [n for n in names if n.rstrip("/") == "backups" or n.startswith("backups/")] == []
    assert [n for n in manifest if n == "backups" or n.startswith("backups/")] == []
    assert [n for n in names if n.endswith(".bak") or n.startswith(".dbbackup-")] == []


def test_archive_stores_a_link_leading_outside_as_a_link_not_its_target(
    archived: Archived,
) -> None:
    secret = archived.furnished.secret
    with zipfile.ZipFile(archived.path) as archive:
        info = archive.getinfo("outside")
        assert is_link(info), oct(mode_of(info))
        assert archive.read(info).decode("utf-8") == str(secret)
        assert manifest_entries(read_manifest(archive))["outside"]["kind"] == "link"
        assert manifest_entries(read_manifest(archive))["outside"]["target"] == str(secret)
        contents = [archive.read(i) for i in archive.infolist() if not i.is_dir()]
    hidden = secret.read_bytes()
    assert not any(hidden in data for data in contents)
    assert hidden not in archived.path.read_bytes()


def test_archive_stores_a_link_inside_as_a_link(archived: Archived) -> None:
    with zipfile.ZipFile(archived.path) as archive:
        info = archive.getinfo("inside")
        assert is_link(info), oct(mode_of(info))
        assert archive.read(info) == b"readme.txt"


def test_archive_keeps_chinese_names_with_the_utf8_flag(archived: Archived) -> None:
    with zipfile.ZipFile(archived.path) as archive:
        names = archive.namelist()
        assert "图片/小猫.jpg" in names and "图片/说明.txt" in names
        assert "图片/" in names, "folders are entries ending in /"
        for info in archive.infolist():
            if not info.filename.isascii():
                assert info.flag_bits & 0x800, f"{info.filename}: no UTF-8 flag"
        assert (
            archive.read("图片/小猫.jpg")
            == (archived.furnished.instance / "图片/小猫.jpg").read_bytes()
        )


@pytest.mark.skipif(not shutil.which("unzip"), reason="the unzip command is not installed")
def test_unzip_lists_the_chinese_names(archived: Archived) -> None:
    listed = run_process(["unzip", "-l", str(archived.path)], cwd=archived.app.root)

    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "图片/小猫.jpg" in listed.stdout
    assert "图片/说明.txt" in listed.stdout


def test_archive_stores_pictures_and_deflates_text_and_databases(archived: Archived) -> None:
    with zipfile.ZipFile(archived.path) as archive:
        kinds = {i.filename: i.compress_type for i in archive.infolist()}
    for name in ("photo.jpg", "icon.png", "图片/小猫.jpg"):
        assert kinds[name] == zipfile.ZIP_STORED, name
    for name in ("readme.txt", "图片/说明.txt", "pet_painting.db", "side.db"):
        assert kinds[name] == zipfile.ZIP_DEFLATED, name


def test_archive_ends_with_a_manifest_of_every_member_and_its_sha256(
    archived: Archived,
) -> None:
    with zipfile.ZipFile(archived.path) as archive:
        infos = archive.infolist()
        assert infos[-1].filename == MANIFEST
        manifest = read_manifest(archive)
        entries = manifest_entries(manifest)
        members = {i.filename.rstrip("/"): i for i in infos[:-1]}
        assert manifest["format"] == 1
        assert sorted(entries) == sorted(members)
        for name, info in members.items():
            entry = entries[name]
            if info.is_dir():
                assert entry["kind"] == "folder", name
            elif is_link(info):
                assert entry["kind"] == "link", name
                assert entry["target"] == archive.read(info).decode("utf-8"), name
            else:
                data = archive.read(info)
                assert entry["kind"] in ("file", "database"), name
                assert entry["sha256"] == sha256(data), name
                assert entry["size"] == len(data), name
    assert entries["pet_painting.db"]["kind"] == "database"
    assert entries["side.db"]["kind"] == "database"
    assert entries["photo.jpg"]["kind"] == "file"
    assert entries["photo.jpg"]["mtime_ns"] == OLD_MTIME * 1_000_000_000


def test_archive_exclude_leaves_out_matching_files_and_whole_folders(app: App) -> None:
    instance = app.root / "instance"
    for name in ("app.log", "logs/old.log", "cache/a.bin", "cache/sub/b.txt", "data/cache/c.txt"):
        (instance / name).parent.mkdir(parents=True, exist_ok=True)
        (instance / name).write_text(name, encoding="utf-8")
    (instance / "keep.txt").write_text("kept", encoding="utf-8")
    (instance / "data/kept.txt").write_text("kept", encoding="utf-8")

    _, path = make_archive(app, "--archive-exclude", "*.log", "--archive-exclude", "cache")

    with zipfile.ZipFile(path) as archive:
        names = [n.rstrip("/") for n in archive.namelist()]
        listed = manifest_entries(read_manifest(archive))
    assert "keep.txt" in names and "data/kept.txt" in names and "pet_painting.db" in names
    for left_out in (names, listed):
        assert [n for n in left_out if n.endswith(".log")] == []
        assert [n for n in left_out if n == "cache" or n.startswith("cache/")] == []
        assert [n for n in left_out if n.startswith("data/cache")] == []


def test_archive_source_archives_another_folder(app: App, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    (uploads / "2026").mkdir(parents=True)
    (uploads / "2026" / "cat.jpg").write_bytes(os.urandom(10_000))
    (uploads / "list.txt").write_text("cat.jpg", encoding="utf-8")

    document, path = make_archive(app, "--archive-source", str(uploads))

    assert path.parent == app.backup_dir
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert archive.read("2026/cat.jpg") == (uploads / "2026" / "cat.jpg").read_bytes()
    assert "list.txt" in names
    assert "pet_painting.db" not in names
    assert "uploads" in document["source"]


def test_two_archives_in_the_same_second_get_distinct_names(app: App) -> None:
    paths = [make_archive(app)[1] for _ in range(3)]

    assert len({p.name for p in paths}) == 3
    assert archives(app) == sorted(paths)
    for path in paths:
        assert ARCHIVE_NAME.fullmatch(path.name), path.name


def test_archive_keep_leaves_the_newest_archives(app: App) -> None:
    made = []
    for _ in range(4):
        document, path = make_archive(app, "--archive-keep", "2")
        made.append((document, path))

    assert archives(app) == sorted(p for _, p in made[2:])
    pruned = [Path(p).name for document, _ in made for p in document["pruned"]]
    assert sorted(pruned) == sorted(p.name for _, p in made[:2])


def test_archive_keep_leaves_the_newest_archives_made_in_one_second(app: App) -> None:
    """Four archives in the same second, through the seam --archive calls, with the clock
    stopped (four CLI runs only sometimes fall in one second): the last two stay, and the
    newest has the newest name.

    Reaches ``dbs.run_archive`` rather than the CLI, to pass the clock in."""
    import database_backup_scheduler as dbs

    config = make_config(app.root, "--archive-keep", "2")
    now = datetime.datetime(2026, 12, 6, 3, 0, 0).astimezone()
    made = []
    for _ in range(4):
        result, _ = dbs.run_archive(config, clock=lambda: now)
        assert result.status == "ok", result.error
        made.append(Path(result.backup))

    assert len({p.name for p in made}) == 4, [p.name for p in made]
    assert sorted(p.name for p in archives(app)) == sorted(p.name for p in made[2:])
    names = [ARCHIVE_NAME.fullmatch(p.name) for p in made]
    seqs = [int((m.group(2) or "-0")[1:]) for m in names if m is not None]
    assert seqs == sorted(seqs), "each archive's name must sort after the one before"


# --------------------------------------------------------------------------------------
# A kill in the middle
# --------------------------------------------------------------------------------------


def wait_for_growing_temp_file(folder: Path, proc: subprocess.Popen[str]) -> None:
    """Poll until a temporary file of the tool in ``folder`` holds over 1 MiB: the zip is
    being written (the databases here are far smaller)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.exists():
            for path in temp_files(folder):
                try:
                    if path.is_file() and path.stat().st_size > 1024 * 1024:
                        return
                except FileNotFoundError:
                    pass
        time.sleep(0.001)
    raise AssertionError("the archive ended (or never started) before it could be killed")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_during_an_archive_leaves_no_zip_and_the_next_archive_cleans_up(app: App) -> None:
    big = app.root / "instance" / "big"
    big.mkdir()
    # Random bytes deflate at ~45 MB/s: 120 MB keep the archive busy for a few seconds.
    for index in range(6):
        (big / f"part{index}.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    proc = app.popen("--archive")
    try:
        wait_for_growing_temp_file(app.backup_dir, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL
    assert archives(app) == []
    assert temp_files(app.backup_dir), "the kill should have left the temporary zip"

    shutil.rmtree(big)  # the next archive need not take as long
    result = app.run("--archive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert temp_files(app.backup_dir) == [], "the next --archive removes the stale temporary"
    [path] = archives(app)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None


# --------------------------------------------------------------------------------------
# --restore-archive
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["parent", "absolute", "unlisted", "no manifest"])
def test_restore_archive_refuses_a_crafted_archive_and_writes_nothing(
    app: App, tmp_path: Path, case: str
) -> None:
    absolute = str(tmp_path / "abs.txt")
    files, listed, bad = {
        "parent": (
            {"a.txt": b"a", "../evil.txt": b"evil"},
            ["a.txt", "../evil.txt"],
            "../evil.txt",
        ),
        "absolute": ({"a.txt": b"a", absolute: b"evil"}, ["a.txt", absolute], absolute),
        "unlisted": ({"a.txt": b"a", "evil.txt": b"evil"}, ["a.txt"], "evil.txt"),
        "no manifest": ({"a.txt": b"a", "evil.txt": b"evil"}, None, None),
    }[case]
    crafted = write_crafted(tmp_path / "crafted.zip", files, listed)
    into = tmp_path / "restored"

    result = app.run("--restore-archive", str(crafted), "--into", str(into))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert crafted.name in result.stderr
    if bad is not None:
        assert bad in result.stderr
    assert not into.exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not (app.root / "evil.txt").exists()
    assert not Path(absolute).exists()


@dataclasses.dataclass
class Restored:
    """A furnished instance archived, then restored with ``--restore-archive``."""

    furnished: Furnished
    archive: Path
    into: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture
def restored(app: App, tmp_path: Path) -> Restored:
    if os.name != "posix":
        pytest.skip("symbolic links (POSIX)")
    furnished = furnish(app, tmp_path)
    _, path = make_archive(app)
    into = tmp_path / "restored"
    result = app.run("--restore-archive", str(path), "--into", str(into))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    return Restored(furnished, path, into, result)


def test_restore_archive_gives_back_every_file_byte_for_byte_with_its_mtime(
    restored: Restored,
) -> None:
    files = restored.furnished.regular_files()
    assert "图片/小猫.jpg" in files and "readme.txt" in files
    for name, source in files.items():
        copy = restored.into / name
        assert copy.is_file() and not copy.is_symlink(), name
        assert copy.read_bytes() == source.read_bytes(), name
        assert int(copy.stat().st_mtime) == int(source.stat().st_mtime) == OLD_MTIME, name


def test_restore_archive_gives_back_the_database_snapshots(restored: Restored) -> None:
    with zipfile.ZipFile(restored.archive) as archive:
        for name in ("pet_painting.db", "side.db"):
            copy = restored.into / name
            assert copy.read_bytes() == archive.read(name), name
            assert integrity(copy) == "ok", name
    for name in ("pet_painting.db", "side.db"):
        assert read_invariant(restored.into / name) == read_invariant(
            restored.furnished.instance / name
        )


def test_restore_archive_recreates_an_inside_link_and_leaves_out_those_leading_outside(
    restored: Restored,
) -> None:
    inside = restored.into / "inside"
    assert inside.is_symlink()
    assert os.readlink(inside) == "readme.txt"
    for name in ("outside", "escape"):
        assert not os.path.lexists(restored.into / name), name
        assert name in restored.result.stdout, name


def test_restore_archive_has_no_backup_folder_and_says_how_to_swap_it_in(
    restored: Restored,
) -> None:
    assert not os.path.lexists(restored.into / "backups")
    assert restored.into.name in restored.result.stdout


def test_restore_archive_into_an_empty_folder(app: App, tmp_path: Path) -> None:
    (app.root / "instance" / "notes.txt").write_text("notes", encoding="utf-8")
    _, path = make_archive(app)
    into = tmp_path / "empty"
    into.mkdir()

    result = app.run("--restore-archive", str(path), "--into", str(into))

    assert result.returncode == 0, result.stdout + result.stderr
    assert (into / "notes.txt").read_text(encoding="utf-8") == "notes"


def test_restore_archive_refuses_the_live_instance_folder(app: App) -> None:
    instance = app.root / "instance"
    (instance / "notes.txt").write_text("notes", encoding="utf-8")
    _, path = make_archive(app)
    before = {p: p.stat().st_mtime_ns for p in instance.rglob("*") if p.is_file()}

    result = app.run("--restore-archive", str(path), "--into", str(instance))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    after = {p: p.stat().st_mtime_ns for p in instance.rglob("*") if p.is_file()}
    assert after == before


def test_restore_archive_refuses_the_live_source_folder_even_when_empty(
    app: App, tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "cat.jpg").write_bytes(os.urandom(10_000))
    _, path = make_archive(app, "--archive-source", str(uploads))
    (uploads / "cat.jpg").unlink()

    result = app.run(
        "--restore-archive", str(path), "--into", str(uploads), "--archive-source", str(uploads)
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert list(uploads.iterdir()) == []


def test_restore_archive_refuses_a_folder_that_is_not_empty(app: App, tmp_path: Path) -> None:
    (app.root / "instance" / "keep.txt").write_text("from the archive", encoding="utf-8")
    _, path = make_archive(app)
    into = tmp_path / "occupied"
    into.mkdir()
    (into / "keep.txt").write_text("already here", encoding="utf-8")

    result = app.run("--restore-archive", str(path), "--into", str(into))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert sorted(p.name for p in into.iterdir()) == ["keep.txt"]
    assert (into / "keep.txt").read_text(encoding="utf-8") == "already here"


def test_restore_archive_of_a_damaged_member_fails_and_leaves_no_folder(
    app: App, tmp_path: Path
) -> None:
    (app.root / "instance" / "photo.jpg").write_bytes(os.urandom(300_000))
    _, path = make_archive(app)
    damage_member(path, "photo.jpg")
    into = tmp_path / "restored"

    result = app.run("--restore-archive", str(path), "--into", str(into))

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert not into.exists()


# --------------------------------------------------------------------------------------
# --verify
# --------------------------------------------------------------------------------------


@pytest.fixture
def pictured(app: App) -> App:
    """An app whose instance folder holds a 300 kB random-byte picture, photo.jpg."""
    (app.root / "instance" / "photo.jpg").write_bytes(os.urandom(300_000))
    return app


def test_verify_passes_a_good_archive(pictured: App) -> None:
    _, path = make_archive(pictured)

    result = pictured.run("--verify", str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert path.name in result.stdout


def test_verify_fails_an_archive_damaged_inside_a_stored_member(pictured: App) -> None:
    _, path = make_archive(pictured)
    size = path.stat().st_size
    damage_member(path, "photo.jpg")
    assert path.stat().st_size == size

    result = pictured.run("--verify", str(path))

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert path.name in result.stdout + result.stderr


def test_verify_checks_the_archives_in_the_backup_folder_too(pictured: App) -> None:
    app = pictured
    ran = app.run("--run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    _, good = make_archive(app)
    _, bad = make_archive(app)
    damage_member(bad, "photo.jpg")

    result = app.run("--verify", "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    found = verdicts(json.loads(result.stdout))
    assert found[good.name] is True
    assert found[bad.name] is False
    assert [ok for name, ok in found.items() if name.endswith(".bak")] == [True]


# --------------------------------------------------------------------------------------
# --run, --stats, --check
# --------------------------------------------------------------------------------------


def test_run_makes_an_archive_once_within_the_interval(app: App) -> None:
    first = app.run("--run", "--archive-every-days", "7")
    assert first.returncode == 0, first.stdout + first.stderr
    [path] = archives(app)
    [logged] = last_run(app)["archives"]
    assert logged["status"] == "ok"
    assert Path(logged["backup"]).name == path.name
    assert logged["sha256"] == sha256(path.read_bytes())

    second = app.run("--run", "--archive-every-days", "7")
    assert second.returncode == 0, second.stdout + second.stderr
    assert archives(app) == [path]
    assert last_run(app).get("archives", []) == []


def test_run_makes_an_archive_when_the_newest_is_older_than_the_interval(app: App) -> None:
    _, path = make_archive(app)
    old = age_archive(path, days=8)

    result = app.run("--run", "--archive-every-days", "7")

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(archives(app)) == 2 and old in archives(app)
    assert [a["status"] for a in last_run(app)["archives"]] == ["ok"]


def test_run_makes_no_archive_when_archives_are_off(app: App) -> None:
    result = app.run("--run", "--archive-every-days", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert archives(app) == []
    assert last_run(app).get("archives", []) == []


def test_stats_json_counts_the_archives(app: App) -> None:
    make_archive(app)
    _, newest = make_archive(app)

    result = app.run("--stats", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    counted = json.loads(result.stdout)["archives"]
    assert counted["count"] == 2
    assert counted["newest"] == newest.name
    assert counted["total_bytes"] == sum(p.stat().st_size for p in archives(app))


def installed_days_ago(app: App, days: float) -> None:
    """Make the run log say the app has been backed up since ``days`` ago: a copy of its
    first run, started then, goes in front of the others."""
    document = json.loads(app.log_file.read_text(encoding="utf-8"))
    first = dict(document["runs"][0])
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    first["started_at"] = first["finished_at"] = started.isoformat(timespec="seconds")
    document["runs"].insert(0, first)
    app.log_file.write_text(json.dumps(document, indent=2), encoding="utf-8")


def test_check_warns_when_an_older_install_has_no_archive(app: App) -> None:
    ran = app.run("--run", "--archive-every-days", "0")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    installed_days_ago(app, 10)

    warned = app.run("--check")
    quiet = app.run("--check", "--archive-every-days", "0")

    assert warned.returncode == 1, warned.stdout + warned.stderr
    assert warned.stdout.startswith("WARNING: ")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr


def test_check_warns_when_the_newest_archive_is_too_old(app: App) -> None:
    ran = app.run("--run", "--archive-every-days", "7")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [path] = archives(app)
    fresh = app.run("--check")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

    age_archive(path, days=9)
    result = app.run("--check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("WARNING: ")


# --------------------------------------------------------------------------------------
# In Chinese
# --------------------------------------------------------------------------------------


def test_archive_speaks_chinese(app: App) -> None:
    result = app.run("--archive", env=ZH)

    assert result.returncode == 0, result.stdout + result.stderr
    assert has_chinese(result.stdout), result.stdout
    [path] = archives(app)
    assert path.name in result.stdout


def test_restore_archive_refusal_speaks_chinese_with_a_hint(app: App, tmp_path: Path) -> None:
    crafted = write_crafted(tmp_path / "crafted.zip", {"../evil.txt": b"evil"}, ["../evil.txt"])

    result = app.run(
        "--restore-archive", str(crafted), "--into", str(tmp_path / "restored"), env=ZH
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert has_chinese(result.stderr), result.stderr
    assert "提示" in result.stderr
    assert crafted.name in result.stderr and "../evil.txt" in result.stderr


# Appends to the file argv[1] every millisecond until the file argv[2] appears; prints
# "ready" once it has appended once.
APPENDER = """
    import os, sys, time
    path, stop_file = sys.argv[1], sys.argv[2]
    with open(path, "ab", buffering=0) as log:
        log.write(b"started\\n")
        print("ready", flush=True)
        while not os.path.exists(stop_file):
            log.write(b"a line the app logs while the archive reads this file\\n")
            time.sleep(0.001)
"""


def test_a_file_that_grows_while_it_is_read_is_archived_as_read_and_reported(
    app: App, tmp_path: Path
) -> None:
    log = app.root / "instance" / "app.log"
    log.write_bytes(os.urandom(40_000_000))  # long enough to be read while it grows
    stop_file = tmp_path / "stop"
    appender = start_python(APPENDER, str(log), str(stop_file))
    try:
        wait_ready(appender)
        result = app.run("--archive", "--json")
        stop_file.touch()
        appender.communicate(timeout=30)
    finally:
        stop(appender)

    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["changed"] == ["app.log"], document
    path = app.root / document["backup"]
    with zipfile.ZipFile(path) as archive:
        (entry,) = [m for m in read_manifest(archive)["members"] if m["path"] == "app.log"]
        data = archive.read("app.log")
        assert read_manifest(archive)["changed"] == ["app.log"]
    assert len(data) == entry["size"] >= 40_000_000  # what was read, as the manifest says
    assert sha256(data) == entry["sha256"]
    assert app.run("--verify", str(path)).returncode == 0
    shown = app.run("--archive")
    assert shown.returncode == 0  # the file no longer grows: nothing to report
    assert "changed while it was read" not in shown.stdout
