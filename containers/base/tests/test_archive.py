import io
import tarfile

import pytest

from byoc_runtime.archive import UnsafeArchiveError, create_archive, safe_extract


def make_tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def test_round_trip(tmp_path):
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "model.npz").write_bytes(b"weights")
    (source / "sub" / "meta.json").write_text("{}")
    archive = create_archive(source, tmp_path / "out" / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.npz", "sub", "sub/meta.json"]
    target = safe_extract(archive, tmp_path / "unpacked")
    assert (target / "model.npz").read_bytes() == b"weights" and (target / "sub" / "meta.json").exists()


@pytest.mark.parametrize(
    "member",
    [
        file_member("../evil.txt"),
        file_member("/etc/evil.txt"),
        file_member("a/../../evil.txt"),
        link_member("link", "/etc/passwd"),
        link_member("link", "../../outside"),
        link_member("hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
)
def test_refuses_members_that_escape(tmp_path, member):
    archive = make_tar(tmp_path / "bad.tar.gz", [file_member("ok.txt"), member])
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "target" / "ok.txt").exists(), "nothing is extracted from an unsafe archive"


def test_links_inside_are_fine(tmp_path):
    archive = make_tar(tmp_path / "ok.tar.gz", [file_member("data/a.bin"), link_member("data/b.bin", "a.bin")])
    target = safe_extract(archive, tmp_path / "target")
    assert (target / "data" / "b.bin").read_bytes() == b"x"


def test_refuses_devices(tmp_path):
    info = tarfile.TarInfo("dev")
    info.type = tarfile.CHRTYPE
    archive = make_tar(tmp_path / "dev.tar.gz", [(info, None)])
    with pytest.raises(UnsafeArchiveError, match="device"):
        safe_extract(archive, tmp_path / "target")


def test_an_archive_that_expands_past_the_limit_is_refused_before_writing(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:  # 64 MiB of zeros: a few KiB compressed
        info = tarfile.TarInfo("zeros.bin")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UnsafeArchiveError, match="expands to more than 1048576 bytes"):
        safe_extract(bomb, tmp_path / "out", max_bytes=1 << 20)
    assert not any((tmp_path / "out").iterdir())


def test_an_archive_with_too_many_members_is_refused(tmp_path):
    archive = make_tar(tmp_path / "many.tar.gz", [file_member(f"f{i}") for i in range(20)])
    with pytest.raises(UnsafeArchiveError, match="more than 10 members"):
        safe_extract(archive, tmp_path / "out", max_members=10)
    assert safe_extract(archive, tmp_path / "ok", max_members=20)


def test_the_limits_come_from_the_environment(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "a.tar.gz", [file_member("big", b"x" * 1000)])
    monkeypatch.setenv("BYOC_MAX_EXTRACT_BYTES", "999")
    with pytest.raises(UnsafeArchiveError, match="BYOC_MAX_EXTRACT_BYTES"):
        safe_extract(archive, tmp_path / "out")
