"""Tests of helpers.sources, the module of "the files in data/": where the data folder is, the
manifest and the checksum guard (also as the loaders meet it), and the opt-in download path of the
Colab/Kaggle bundles (sources, verification, mirror, no network)."""

import gzip
import hashlib
import io
import re
import shutil
import urllib.error
import zipfile
from pathlib import Path

import pytest

from helpers import datasets as D
from helpers import sources as S

REPO_DATA = S.REPO_DATA_DIR
ATTRIBUTION_ONLY = ("ATTRIBUTION.txt", "LICENSE", "readme", "README.md", "detection_samples.png")
SMALL_FILES = (
    "timemachine/timemachine.txt",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz",
    "images/skimage/camera.png",
)


@pytest.fixture
def small_root(tmp_path: Path) -> Path:
    """A data folder in tmp_path with the manifest and copies of a few small files."""
    shutil.copy(REPO_DATA / S.MANIFEST_NAME, tmp_path / S.MANIFEST_NAME)
    for name in SMALL_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_DATA / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    """A data folder holding only the course's manifest, with downloads switched on."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(REPO_DATA / S.MANIFEST_NAME, folder / S.MANIFEST_NAME)
    monkeypatch.setenv(S.ALLOW_ENV_VAR, "1")
    monkeypatch.delenv(S.MIRROR_ENV_VAR, raising=False)
    return folder


def repo_bytes(relpath):
    return (REPO_DATA / relpath).read_bytes()


# --- the manifest and the checksum guard ------------------------------------------------------


def test_manifest_lists_every_shipped_file_with_its_digest():
    manifest = S.read_manifest()
    on_disk = {
        p.relative_to(REPO_DATA).as_posix()
        for p in REPO_DATA.rglob("*")
        if p.is_file() and p.name != S.MANIFEST_NAME
    }
    assert set(manifest) == on_disk, "run helpers.sources.write_manifest() after changing data/"
    for name, digest in manifest.items():
        assert hashlib.sha256((REPO_DATA / name).read_bytes()).hexdigest() == digest, name


def test_write_manifest_writes_sha256sum_lines_sorted_by_path(small_root):
    (small_root / "extra.txt").write_bytes(b"hello\n")
    out = S.write_manifest(small_root)
    lines = out.read_text(encoding="utf-8").splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    assert names == sorted([*SMALL_FILES, "extra.txt"])
    assert all(re.fullmatch(r"[0-9a-f]{64}  \S.*", line) for line in lines)  # sha256sum's format
    assert S.read_manifest(small_root)["extra.txt"] == hashlib.sha256(b"hello\n").hexdigest()
    assert S.read_data_bytes("extra.txt", root=small_root) == b"hello\n"


def test_moved_names_live_only_in_sources():
    """The file-level names moved from helpers.datasets; datasets keeps no re-export of them."""
    moved = ("MANIFEST_NAME", "REPO_DATA_DIR", "DATA_DIR_ENV_VAR", "write_manifest", "sha256_of",
             "DataFileError", "MissingDataFileError", "ChecksumMismatchError", "DataDownloadError",
             "download_fashion_mnist_original")
    for name in moved:
        assert hasattr(S, name) and not hasattr(D, name), name


def test_corrupted_file_raises_naming_file_digests_and_restore_command(small_root):
    name = "timemachine/timemachine.txt"
    path = small_root / name
    path.write_bytes(path.read_bytes().replace(b"Time", b"Tide", 1))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(S.ChecksumMismatchError) as info:
        D.read_time_machine(root=small_root)
    message = str(info.value)
    assert isinstance(info.value, S.DataFileError) and isinstance(info.value, RuntimeError)
    assert str(path) in message and actual in message
    assert S.read_manifest()[name] in message
    assert f"git checkout -- data/{name}" in message


def test_missing_file_raises_naming_file_digest_and_restore_command(small_root):
    name = "fashion-mnist/t10k-labels-idx1-ubyte.gz"
    (small_root / name).unlink()
    with pytest.raises(S.MissingDataFileError) as info:
        S.read_data_bytes(name, root=small_root)
    message = str(info.value)
    assert str(small_root / name) in message and "missing" in message
    assert S.read_manifest()[name] in message and f"git checkout -- data/{name}" in message


def test_missing_big_file_error_reaches_the_fashion_mnist_loader(small_root):
    with pytest.raises(S.MissingDataFileError, match="t10k-images-idx3-ubyte.gz"):
        D.fashion_mnist_tensors("test", root=small_root)


def test_checksum_is_computed_once_per_file_and_again_after_a_change(small_root, monkeypatch):
    calls = []
    real = S.sha256_of
    monkeypatch.setattr(S, "sha256_of", lambda data: calls.append(1) or real(data))
    name = "timemachine/timemachine.txt"
    first = S.read_data_bytes(name, root=small_root)
    assert S.read_data_bytes(name, root=small_root) == first
    assert len(calls) == 1
    (small_root / name).write_bytes(first + b"extra")
    with pytest.raises(S.ChecksumMismatchError):
        S.read_data_bytes(name, root=small_root)
    assert len(calls) == 2


def test_unlisted_file_and_missing_folder_are_explained(small_root, tmp_path):
    with pytest.raises(S.DataFileError, match=r"not listed.*helpers\.sources\.write_manifest\(\)"):
        S.read_data_bytes("timemachine/other.txt", root=small_root)
    with pytest.raises(S.DataFileError, match="does not exist"):
        S.data_root(tmp_path / "nowhere")


def test_data_root_precedence_argument_then_env_then_repo(small_root, monkeypatch, tmp_path):
    monkeypatch.delenv(S.DATA_DIR_ENV_VAR, raising=False)
    assert S.data_root() == REPO_DATA.resolve()
    monkeypatch.setenv(S.DATA_DIR_ENV_VAR, str(small_root))
    assert S.data_root() == small_root.resolve()
    assert len(D.read_time_machine()) == 3221  # read from the env folder
    other = tmp_path / "other"
    other.mkdir()
    assert S.data_root(other) == other.resolve()


def test_folder_without_manifest_is_checked_against_the_repo_manifest(small_root):
    (small_root / S.MANIFEST_NAME).unlink()
    assert len(D.read_time_machine(root=small_root)) == 3221


# --- where each file comes from, and the opt-in download ----------------------------------------


def test_every_data_file_has_a_public_source_and_identical_ones_match_the_manifest():
    manifest = S.read_manifest()
    data_files = {p for p in manifest if not p.endswith(ATTRIBUTION_ONLY)}
    assert data_files - set(S.SOURCES) == set()
    assert set(S.SOURCES) <= set(manifest)
    for relpath, source in S.SOURCES.items():
        if not source.gzip and source.head_lines is None:
            assert source.sha256 == manifest[relpath], relpath
        else:
            assert source.sha256 == S.hashlib.sha256(gzip.decompress(repo_bytes(relpath))).hexdigest()


def test_downloads_are_off_unless_asked_for(monkeypatch, tmp_path):
    monkeypatch.delenv(S.ALLOW_ENV_VAR, raising=False)
    assert not S.downloads_allowed()
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(REPO_DATA / S.MANIFEST_NAME, folder / S.MANIFEST_NAME)
    with pytest.raises(S.MissingDataFileError, match="timemachine.txt is missing"):
        D.read_time_machine(root=folder)


def test_identical_file_from_its_original_source(empty_data_dir, monkeypatch):
    relpath, served = "timemachine/timemachine.txt", {}
    monkeypatch.setattr(S, "_download", lambda url: served.setdefault(url, repo_bytes(relpath)))
    lines = D.read_time_machine(root=empty_data_dir)
    assert list(served) == [S.SOURCES[relpath].url]
    assert lines == D.read_time_machine()
    assert (empty_data_dir / relpath).read_bytes() == repo_bytes(relpath)


def test_derived_file_is_checked_by_content_then_compressed_and_recorded(empty_data_dir, monkeypatch):
    # The original is a zip whose fra.txt has more lines than the course keeps.
    text = gzip.decompress(repo_bytes("fra-eng/fra.txt.gz")) + b"extra line\tligne en trop\n" * 5
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("fra-eng/fra.txt", text)
        z.writestr("fra-eng/_about.txt", repo_bytes("fra-eng/_about.txt"))
    monkeypatch.setattr(S, "_download", lambda url: archive.getvalue())
    assert D.read_fra_eng(root=empty_data_dir) == D.read_fra_eng()
    written = (empty_data_dir / "fra-eng/fra.txt.gz").read_bytes()
    manifest = S.read_manifest(empty_data_dir)
    assert manifest["fra-eng/fra.txt.gz"] == S.sha256_of(written)
    # the folder's manifest now guards the file written here as it guards shipped files
    (empty_data_dir / "fra-eng/fra.txt.gz").write_bytes(written + b"\0")
    with pytest.raises(S.ChecksumMismatchError):
        S.read_data_bytes("fra-eng/fra.txt.gz", empty_data_dir)


def test_a_changed_original_is_refused(empty_data_dir, monkeypatch):
    monkeypatch.setattr(S, "_download", lambda url: b"not the time machine")
    with pytest.raises(S.DataDownloadError, match="not the expected file: sha256"):
        D.read_time_machine(root=empty_data_dir)
    assert not (empty_data_dir / "timemachine/timemachine.txt").exists()


def test_mirror_folder_stands_in_for_the_download(empty_data_dir, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "images/skimage").mkdir(parents=True)
    shutil.copy(REPO_DATA / "images/skimage/coins.png", mirror / "images/skimage/coins.png")
    monkeypatch.setenv(S.MIRROR_ENV_VAR, str(mirror))
    image = D.load_image("coins", root=empty_data_dir)
    assert image.shape == D.load_image("coins").shape
    (mirror / "images/skimage/camera.png").write_bytes(b"garbage")
    with pytest.raises(S.DataDownloadError, match="camera.png from the mirror"):
        D.load_image("camera", root=empty_data_dir)


def test_no_network_gives_a_clear_message(empty_data_dir, no_network):
    message = "Could not download timemachine/timemachine.txt.*data/ folder"
    with pytest.raises(S.DataDownloadError, match=message):
        D.read_time_machine(root=empty_data_dir)
    assert no_network, "the download was attempted (and blocked)"


def test_opt_in_fashion_mnist_download_explains_a_missing_network(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):  # what torchvision raises when no host can be reached
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(S.DataDownloadError, match="network connection.*data/fashion-mnist"):
        S.download_fashion_mnist_original(tmp_path)
