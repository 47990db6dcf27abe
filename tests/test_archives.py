"""Archive safety: hostile zips are refused whole, with a message naming the rule; nothing is
written outside (or inside) the extraction folder when an archive is refused."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from u2net.archives import ArchiveError, ArchiveLimits, extract_zip, inspect_zip, write_zip


def _png(size=(8, 6), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def _refused(zip_path: Path, tmp_path: Path, words: str, limits: ArchiveLimits | None = None) -> str:
    dest = tmp_path / "out"
    kwargs = {"limits": limits} if limits else {}
    with pytest.raises(ArchiveError) as err:
        extract_zip(zip_path, dest, **kwargs)
    message = str(err.value)
    assert words in message, message
    # Refused before writing: the folder holds nothing, and nothing escaped beside it.
    assert not dest.exists() or not any(p.is_file() for p in dest.rglob("*"))
    return message


def test_good_archive_extracts_with_structure(tmp_path):
    z = _zip(tmp_path / "ok.zip", [("a.png", _png()), ("sub/deeper/B.JPG", _png((5, 5))),
                                   ("__MACOSX/sub/._B.JPG", b"junk"), ("sub/.DS_Store", b"junk")])
    files = extract_zip(z, tmp_path / "out")
    rel = sorted(p.relative_to(tmp_path / "out").as_posix() for p in files)
    assert rel == ["a.png", "sub/deeper/B.JPG"]
    assert Image.open(tmp_path / "out" / "a.png").size == (8, 6)


def test_zip_slip_is_refused(tmp_path):
    z = _zip(tmp_path / "slip.zip", [("good.png", _png()), ("../../evil.png", _png())])
    message = _refused(z, tmp_path, "zip slip")
    assert "../../evil.png" in message
    assert not (tmp_path / "evil.png").exists() and not Path("/evil.png").exists()


def test_backslash_zip_slip_is_refused(tmp_path):
    z = _zip(tmp_path / "slip.zip", [("dir\\..\\..\\evil.png", _png())])
    _refused(z, tmp_path, "zip slip")


def test_absolute_paths_are_refused(tmp_path):
    for i, name in enumerate(["/tmp/evil.png", "C:/Windows/evil.png", "\\\\server\\evil.png"]):
        z = _zip(tmp_path / f"abs{i}.zip", [("ok.png", _png()), (name, _png())])
        _refused(z, tmp_path, "absolute path")


def test_symlinks_are_refused(tmp_path):
    link = zipfile.ZipInfo("photos/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = _zip(tmp_path / "link.zip", [("photos/a.png", _png()), (link, b"/etc/passwd")])
    message = _refused(z, tmp_path, "symbolic link")
    assert "photos/link.png" in message


def test_zip_bomb_by_ratio_is_refused(tmp_path):
    # 64 MiB of zeros deflate to about 64 KiB: a 1000:1 expansion.
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("big.bmp", "w", force_zip64=True) as fh:
            block = bytes(1024 * 1024)
            for _ in range(64):
                fh.write(block)
    assert z.stat().st_size < 1024 * 1024
    _refused(z, tmp_path, "zip bomb")


def test_overlapping_entries_bomb_is_refused(tmp_path):
    """A non-recursive zip bomb: many central-directory entries share one compressed body."""
    z = _zip(tmp_path / "one.zip", [("a.png", _png((64, 64)))])
    data = bytearray(z.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<II", data[eocd + 12:eocd + 20])
    central = bytes(data[cd_offset:cd_offset + cd_size])
    name_len = struct.unpack("<H", central[28:30])[0]
    copies = []
    for i in range(3):  # same local header offset, different names
        entry = bytearray(central)
        entry[46:46 + name_len] = f"{i}.png".encode().ljust(name_len, b"_")[:name_len]
        copies.append(bytes(entry))
    new_cd = b"".join(copies)
    tail = bytearray(data[eocd:])
    struct.pack_into("<HHII", tail, 8, 3, 3, len(new_cd), cd_offset)
    bomb = tmp_path / "overlap.zip"
    bomb.write_bytes(bytes(data[:cd_offset]) + new_cd + bytes(tail))
    _refused(bomb, tmp_path, "overlap")


def test_total_size_and_entry_count_limits(tmp_path):
    z = _zip(tmp_path / "many.zip", [(f"{i}.png", _png()) for i in range(6)])
    _refused(z, tmp_path, "over the limit of 5", ArchiveLimits(max_entries=5))
    total = sum(i.file_size for i in zipfile.ZipFile(z).infolist())
    _refused(z, tmp_path, "expands to", ArchiveLimits(max_total_bytes=total - 1))
    assert len(extract_zip(z, tmp_path / "fine")) == 6


def test_lying_header_cannot_write_more_than_declared(tmp_path):
    """The central directory claims a tiny file; the deflate stream holds much more."""
    z = _zip(tmp_path / "liar.zip", [("a.bmp", bytes(200_000))])
    data = bytearray(z.read_bytes())
    # Patch the uncompressed size in both the local header and the central directory.
    struct.pack_into("<I", data, 22, 1000)
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 1000)
    liar = tmp_path / "liar2.zip"
    liar.write_bytes(bytes(data))
    _refused(liar, tmp_path, "damaged")


def test_not_a_zip_and_encrypted_entries(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip at all")
    _refused(bad, tmp_path, "not a readable zip")
    z = _zip(tmp_path / "enc.zip", [("a.png", _png())])
    data = bytearray(z.read_bytes())
    struct.pack_into("<H", data, 6, 1)  # set the "encrypted" flag in the local header
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<H", data, cd + 8, 1)
    enc = tmp_path / "enc2.zip"
    enc.write_bytes(bytes(data))
    _refused(enc, tmp_path, "password-protected")


def test_duplicate_names_are_refused(tmp_path):
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.png", _png())
        zf.writestr("A.PNG", _png((3, 3)))
    _refused(z, tmp_path, "the same file")


def test_inspect_reports_entries_without_writing(tmp_path):
    z = _zip(tmp_path / "ok.zip", [("x/a.png", _png())])
    entries = inspect_zip(z)
    assert [e.path.as_posix() for e in entries if not e.is_dir] == ["x/a.png"]
    assert not (tmp_path / "x").exists()


def test_write_zip_is_reproducible(tmp_path):
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(_png())
    (root / "manifest.csv").write_text("input,status\na.png,ok\n")
    names = ["sub/a.png", "manifest.csv"]
    first = write_zip(tmp_path / "one.zip", root, names).read_bytes()
    (root / "sub" / "a.png").touch()  # a newer mtime must not change the archive
    second = write_zip(tmp_path / "two.zip", root, names).read_bytes()
    assert first == second
    assert zipfile.ZipFile(tmp_path / "one.zip").namelist() == ["manifest.csv", "sub/a.png"]
    assert not list(tmp_path.glob("*.u2net-tmp*"))
