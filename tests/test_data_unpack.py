"""One unpack cap for every archive cnnkit extracts (the CLI's data archives and the studio's
uploads): bytes are counted as they are written, so a small archive cannot fill the cache."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.data.unpack import UnpackError, UnpackLimits, unpack

SMALL = UnpackLimits(max_members=10, max_total_bytes=1 << 20, max_member_bytes=1 << 19, max_ratio=50.0,
                     min_allowed_bytes=64 << 10)


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def image_zip(path, n=3):
    with zipfile.ZipFile(path, "w") as zf:
        for c in ("a", "b"):
            for i in range(n):
                zf.writestr(f"data/{c}/{i}.png", png_bytes(i + 10 * (c == "b")))
    return path


def bomb_zip(path, unpacked: int, member="data/a/huge.png"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open(member, "w", force_zip64=True) as out:
            chunk = bytes(1 << 20)
            for _ in range(unpacked // len(chunk)):
                out.write(chunk)
        zf.writestr("data/b/0.png", png_bytes(0))
    return path


def test_an_image_archive_unpacks(tmp_path):
    unpack(image_zip(tmp_path / "ok.zip"), tmp_path / "out", limits=SMALL)
    assert sorted(p.name for p in (tmp_path / "out" / "data" / "a").iterdir()) == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize("case,words", [
    ("ratio", "times"),
    ("member", "524288"),
    ("members", "entries"),
])
def test_each_cap_stops_the_unpack_and_leaves_nothing(tmp_path, case, words):
    if case == "ratio":  # 4 MiB of zeros from a few KiB
        archive = bomb_zip(tmp_path / "bomb.zip", 4 << 20)
        limits = UnpackLimits(max_ratio=50.0, min_allowed_bytes=64 << 10)
    elif case == "member":
        archive = tmp_path / "big.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("data/a/big.png", np.random.default_rng(0).bytes(600 << 10))
        limits = SMALL
    else:
        archive = image_zip(tmp_path / "many.zip", n=6)
        limits = SMALL
    with pytest.raises(UnpackError, match=words) as info:
        unpack(archive, tmp_path / "out", limits=limits)
    assert info.value.too_large and str(archive) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_zip_whose_headers_lie_about_sizes_is_still_capped(tmp_path):
    archive = bomb_zip(tmp_path / "liar.zip", 2 << 20)
    data = bytearray(archive.read_bytes())
    # every file_size field (local header offset 22, central directory offset 24) rewritten as 1 byte
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            if data[i + off:i + off + 4] != b"\xff\xff\xff\xff":  # zip64 sizes live elsewhere: leave them
                data[i + off:i + off + 4] = (1).to_bytes(4, "little")
            start = i + 4
    archive.write_bytes(bytes(data))
    with pytest.raises(UnpackError):
        unpack(archive, tmp_path / "out", limits=UnpackLimits(max_ratio=20.0, min_allowed_bytes=64 << 10))
    assert not (tmp_path / "out").exists()


def test_tar_archives_get_the_same_cap(tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("data/a/huge.png")
        info.size = 4 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(UnpackError, match="times"):
        unpack(archive, tmp_path / "out", limits=UnpackLimits(max_ratio=50.0, min_allowed_bytes=64 << 10))


def test_links_and_paths_outside_the_folder_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.png", png_bytes(0))
    with pytest.raises(UnpackError, match="outside"):
        unpack(archive, tmp_path / "out")
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("data/a/link.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnpackError, match="link"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "outside.png").exists()


def test_the_cli_caps_a_data_archive_and_leaves_nothing_in_the_cache(tmp_path, capsys):
    # 80 MiB of zeros in a ~80 KiB zip: above the default floor (64 MiB) and 200x its size
    archive = bomb_zip(tmp_path / "bomb.zip", 80 << 20)
    assert archive.stat().st_size < 1 << 20
    cache = tmp_path / "cache"
    assert main(["inspect", str(archive), "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnkit: error:") and "bomb.zip" in err[0], err
    left = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert left == []
