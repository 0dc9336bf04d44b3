"""The opt-in download path of the Colab/Kaggle bundles: sources, verification, mirror, no network."""

import gzip
import io
import shutil
import zipfile

import pytest

from helpers import datasets as D
from helpers import sources as S

ATTRIBUTION_ONLY = ("ATTRIBUTION.txt", "LICENSE", "readme", "README.md", "detection_samples.png")


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    """A data folder holding only the course's manifest, with downloads switched on."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(D.REPO_DATA_DIR / D.MANIFEST_NAME, folder / D.MANIFEST_NAME)
    monkeypatch.setenv(S.ALLOW_ENV_VAR, "1")
    monkeypatch.delenv(S.MIRROR_ENV_VAR, raising=False)
    return folder


def repo_bytes(relpath):
    return (D.REPO_DATA_DIR / relpath).read_bytes()


def test_every_data_file_has_a_public_source_and_identical_ones_match_the_manifest():
    manifest = D.read_manifest()
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
    shutil.copy(D.REPO_DATA_DIR / D.MANIFEST_NAME, folder / D.MANIFEST_NAME)
    with pytest.raises(D.MissingDataFileError, match="timemachine.txt is missing"):
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
    assert D.read_data_nmt(root=empty_data_dir) == D.read_data_nmt()
    written = (empty_data_dir / "fra-eng/fra.txt.gz").read_bytes()
    manifest = D.read_manifest(empty_data_dir)
    assert manifest["fra-eng/fra.txt.gz"] == D.sha256_of(written)
    # the folder's manifest now guards the file written here as it guards shipped files
    (empty_data_dir / "fra-eng/fra.txt.gz").write_bytes(written + b"\0")
    with pytest.raises(D.ChecksumMismatchError):
        D.read_data_bytes("fra-eng/fra.txt.gz", empty_data_dir)


def test_a_changed_original_is_refused(empty_data_dir, monkeypatch):
    monkeypatch.setattr(S, "_download", lambda url: b"not the time machine")
    with pytest.raises(S.DataDownloadError, match="not the expected file: sha256"):
        D.read_time_machine(root=empty_data_dir)
    assert not (empty_data_dir / "timemachine/timemachine.txt").exists()


def test_mirror_folder_stands_in_for_the_download(empty_data_dir, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "images/skimage").mkdir(parents=True)
    shutil.copy(D.REPO_DATA_DIR / "images/skimage/coins.png", mirror / "images/skimage/coins.png")
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
