"""The files in ``data/``: where the folder is, their checksums, verified reading, and where each
file comes from, with the opt-in verified download for hosts without ``data/``.

Every data set a chapter uses ships in the repository's ``data/`` folder (or is generated from a
seed, see :mod:`helpers.detection`); :mod:`helpers.datasets` turns the files into tensors, and
this module is the only one that touches them:

* **Where** (:func:`data_root`): the ``root=`` argument of a loader, else the folder in
  ``$COURSE_DATA_DIR``, else the ``data/`` folder next to ``helpers/`` (:data:`REPO_DATA_DIR`).
* **What** (:func:`read_manifest`, :func:`write_manifest`): ``data/MANIFEST.sha256`` lists the
  sha256 of every shipped file, in ``sha256sum`` format.
* **Verified reading** (:func:`read_data_bytes`): the first time a process reads a file, its sha256
  is checked against the manifest; a missing or altered file raises a :class:`DataFileError`
  (:class:`MissingDataFileError`, :class:`ChecksumMismatchError`) naming the file, both digests
  and the command that restores it.
* **Origins and the opt-in download** (:data:`SOURCES`, :func:`fetch`): in the repository nothing
  is downloaded. A one-file Colab/Kaggle bundle of a chapter (``make bundle``) has no ``data/``
  folder; there, and only when the environment variable ``COURSE_ALLOW_DOWNLOAD=1`` is set (the
  bundle's first cell sets it), a missing file is fetched on first use and checked before it is
  kept:

  - from ``$COURSE_DATA_MIRROR`` when set: a URL or a folder laid out like the course's ``data/``
    (a teacher's copy, a Kaggle data set, or a local copy in the tests). The file must match the
    manifest's sha256 byte for byte.
  - otherwise from its original public source (:data:`SOURCES`): the published file, checked
    against the sha256 recorded when the course's copy was made. Where the course ships a derived
    file (the first 20,000 lines of a larger file, or a gzip of a text file), the derived
    *content* is checked and then compressed, and the folder's manifest records the digest of
    what was written, so later reads are guarded as usual.

  :func:`download_fashion_mnist_original` (torchvision's download of the original Fashion-MNIST,
  for comparison) is the only other network path, and nothing calls it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV_VAR = "COURSE_DATA_DIR"
MANIFEST_NAME = "MANIFEST.sha256"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
ALLOW_ENV_VAR = "COURSE_ALLOW_DOWNLOAD"
MIRROR_ENV_VAR = "COURSE_DATA_MIRROR"
TIMEOUT_S = 120

_D2L = "http://d2l-data.s3-accelerate.amazonaws.com/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_RAW = "https://raw.githubusercontent.com/"
_SKIMAGE = _RAW + "scikit-image/scikit-image/v0.26.0/skimage/data/"
_D2L_IMG = _RAW + "d2l-ai/d2l-en/23d7a5aecceee57d1292c56e90cce307f183bb0a/img/"
_WIKI = (_RAW + "pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/"
         "word_language_model/data/wikitext-2/")
_SNLI = _RAW + "OanaMariaCamburu/e-SNLI/7b585a3f077fdea899780eb0473940522ae44a2e/dataset/eSNLI/"
_SMS = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"


# =============================================================================================
# The data folder and its manifest
# =============================================================================================


class DataFileError(RuntimeError):
    """A shipped data file (or the data folder) is missing, unlisted or corrupted."""


class MissingDataFileError(DataFileError):
    """A data file listed in the manifest is not on disk."""


class ChecksumMismatchError(DataFileError):
    """A data file's sha256 differs from the one in the manifest."""


class DataDownloadError(RuntimeError):
    """A data file could not be downloaded, or what arrived is not the expected file."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$COURSE_DATA_DIR``, else the repo's ``data/``."""
    if root is not None:
        path, source = Path(root), "the root= argument"
    elif os.environ.get(DATA_DIR_ENV_VAR):
        path, source = Path(os.environ[DATA_DIR_ENV_VAR]), f"${DATA_DIR_ENV_VAR}"
    else:
        path, source = REPO_DATA_DIR, "the default (the data/ folder next to helpers/)"
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise DataFileError(
            f"The data folder {path} (from {source}) does not exist. Point root= or "
            f"${DATA_DIR_ENV_VAR} at the course's data/ folder, or unset {DATA_DIR_ENV_VAR}."
        )
    return path


def _manifest_path(base: Path) -> Path:
    """The manifest of ``base``; a folder without one is checked against the repo's manifest."""
    own = base / MANIFEST_NAME
    return own if own.is_file() else REPO_DATA_DIR / MANIFEST_NAME


@functools.lru_cache(maxsize=8)
def _parse_manifest(path: Path, mtime_ns: int) -> dict[str, str]:
    digests = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            digests[name.lstrip("*")] = digest.lower()
    return digests


def read_manifest(root: str | os.PathLike | None = None) -> dict[str, str]:
    """The expected sha256 of every shipped file, keyed by path relative to the data folder."""
    path = _manifest_path(data_root(root))
    if not path.is_file():
        raise DataFileError(
            f"No manifest at {path}. Restore it with `git checkout -- data/{MANIFEST_NAME}`."
        )
    return dict(_parse_manifest(path, path.stat().st_mtime_ns))


def write_manifest(root: str | os.PathLike | None = None) -> Path:
    """Rewrite ``MANIFEST.sha256`` for every file in the data folder (after a deliberate change).

    Lines are in ``sha256sum`` format (``<digest>  <relative path>``), sorted by path, so
    ``cd data && sha256sum -c MANIFEST.sha256`` checks the folder without Python.
    """
    base = data_root(root)
    files = sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )
    lines = [f"{sha256_of((base / name).read_bytes())}  {name}\n" for name in files]
    out = base / MANIFEST_NAME
    out.write_text("".join(lines), encoding="utf-8")
    return out


# =============================================================================================
# Verified reading
# =============================================================================================


def _restore_hint(relpath: str, base: Path) -> str:
    hint = f"Restore it with `git checkout -- data/{relpath}` in the course repository"
    if base != REPO_DATA_DIR.resolve():
        hint += f", then copy data/{relpath} to {base / relpath}"
    return hint + "."


# path -> (size, mtime_ns, digest) of files whose digest matched in this process
_verified: dict[Path, tuple[int, int, str]] = {}


def sha256_of(data: bytes) -> str:
    """Hex sha256 digest of some bytes."""
    return hashlib.sha256(data).hexdigest()


def read_data_bytes(relpath: str, root: str | os.PathLike | None = None) -> bytes:
    """Read a shipped data file, checking its sha256 against the manifest once per process.

    ``relpath`` is relative to the data folder, e.g. ``'fashion-mnist/LICENSE'``. Raises
    :class:`MissingDataFileError` or :class:`ChecksumMismatchError` with a restore command.
    """
    base = data_root(root)
    expected = read_manifest(base).get(relpath)
    if expected is None:
        raise DataFileError(
            f"{relpath!r} is not listed in {_manifest_path(base)}; check the name, or if you "
            "added the file on purpose, run helpers.sources.write_manifest()."
        )
    path = base / relpath
    if not path.is_file() and downloads_allowed():
        _download_into(base, relpath, expected)
        expected = read_manifest(base)[relpath]
    if not path.is_file():
        raise MissingDataFileError(
            f"Data file {path} is missing (expected sha256 {expected}, actual: no file). "
            + _restore_hint(relpath, base)
        )
    data = path.read_bytes()
    stat = path.stat()
    if _verified.get(path) == (stat.st_size, stat.st_mtime_ns, expected):
        return data
    actual = sha256_of(data)
    if actual != expected:
        raise ChecksumMismatchError(
            f"Data file {path} is corrupted or was changed: expected sha256 {expected}, "
            f"actual {actual}. " + _restore_hint(relpath, base)
        )
    _verified[path] = (stat.st_size, stat.st_mtime_ns, expected)
    return data


def _download_into(base: Path, relpath: str, expected: str) -> None:
    """Fetch a missing file (opt-in) and, if what was verified and written differs from the shipped
    bytes (a derived file compressed here), record its digest in this folder's own manifest."""
    written = fetch(relpath, base, read_manifest(base))
    if written != expected:
        digests = {**read_manifest(base), relpath: written}
        lines = [f"{digest}  {name}\n" for name, digest in sorted(digests.items())]
        (base / MANIFEST_NAME).write_text("".join(lines), encoding="utf-8")


# =============================================================================================
# Where each file comes from, and the opt-in download
# =============================================================================================

@dataclass(frozen=True)
class Source:
    """The original of one shipped file: ``url``; optionally a ``member`` of a zip archive, of which
    the first ``head_lines`` lines are kept; ``sha256`` of the content before our gzip (if ``gzip``)."""

    url: str
    sha256: str
    member: str | None = None
    head_lines: int | None = None
    gzip: bool = False


def _images(base: str, digests: dict[str, str], folder: str) -> dict[str, Source]:
    return {f"images/{folder}/{name}": Source(base + name, digest) for name, digest in digests.items()}


SOURCES: dict[str, Source] = {
    # Fashion-MNIST: the official files (the shipped ones are byte-identical).
    "fashion-mnist/train-images-idx3-ubyte.gz": Source(
        _FASHION + "train-images-idx3-ubyte.gz",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "fashion-mnist/train-labels-idx1-ubyte.gz": Source(
        _FASHION + "train-labels-idx1-ubyte.gz",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": Source(
        _FASHION + "t10k-images-idx3-ubyte.gz",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": Source(
        _FASHION + "t10k-labels-idx1-ubyte.gz",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    # d2l's copy of The Time Machine (its sha1 is d2l's DATA_HUB checksum).
    "timemachine/timemachine.txt": Source(
        _D2L + "timemachine.txt", "8424dbd9532ac81f7e5f0b6add90e6952baea29158309d7d1bf3884f4e12c516"),
    # The first 20,000 pairs of fra.txt in d2l's fra-eng.zip.
    "fra-eng/fra.txt.gz": Source(
        _D2L + "fra-eng.zip", "8e354edb841a386aa87ff1eb7080c9f3beefe8737560149679aa974b538cfe24",
        member="fra-eng/fra.txt", head_lines=20_000, gzip=True),
    "fra-eng/_about.txt": Source(
        _D2L + "fra-eng.zip", "79f39a53dbddaf7ab43c801f231089174a611f23987244056f9e3cb5aa79358b",
        member="fra-eng/_about.txt"),
    "wikitext-2/wiki.valid.tokens.gz": Source(
        _WIKI + "valid.txt", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", gzip=True),
    "wikitext-2/wiki.test.tokens.gz": Source(
        _WIKI + "test.txt", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", gzip=True),
    "sms-spam/SMSSpamCollection": Source(
        _SMS, "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d", member="SMSSpamCollection"),
    **{f"snli/{name}.gz": Source(_SNLI + name, digest, gzip=True) for name, digest in {
        "s1.dev": "28a398b5478b10b4b851d4bb5b2e5767171519add6586015ed50b9436df11d00",
        "s2.dev": "a8c59709630b64ba103f7784c0cb7104a6baf23234562487264d9634714f5d2b",
        "labels.dev": "d164d72435c3289fe53cb01e983f7c06e104bf192c0cae9caf2e99bf2e15f974",
        "s1.test": "62cb8107dc3c56a4376e5e521842be24e0d61c92c346b94917da2bbf2a47d8be",
        "s2.test": "1174f3ad30a3c30fc0f9eeffc1b3b6a79e0514026c5a658968a8e2a324b311a1",
        "labels.test": "e25c363e5cc70d5494d6e6555d8053eced22dca836e0f03067530eaad3d4f5f5",
    }.items()},
    **_images(_SKIMAGE, {
        "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "brick.png": "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
        "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
        "grass.png": "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
        "gravel.png": "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
        "horse.png": "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
        "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
        "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        "text.png": "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
    }, "skimage"),
    **_images(_D2L_IMG, {
        "catdog.jpg": "7580ea4555a01bc18c3e1a21ae6b8099026634034a8a08b4fe443fbc9f849dd2",
        "cat1.jpg": "be3040de58a5c818a725f03b5acc281423a6ed7fa1e58b2f94f60034656e600b",
    }, "d2l"),
}  # fmt: skip


def downloads_allowed() -> bool:
    """True only when ``COURSE_ALLOW_DOWNLOAD=1``; the course never downloads otherwise."""
    return os.environ.get(ALLOW_ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def _download(url: str) -> bytes:
    """The bytes at ``url`` (http(s) or file:); a separate function so tests can replace it."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return response.read()


def _mirror_url(mirror: str, relpath: str) -> str:
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + urllib.parse.quote(relpath)
    return Path(mirror).expanduser().resolve().joinpath(relpath).as_uri()


def _get(url: str, relpath: str) -> bytes:
    try:
        return _download(url)
    except OSError as err:  # URLError, timeouts and refused connections are all OSErrors
        raise DataDownloadError(
            f"Could not download {relpath} from {url}: {err}. Without a network, copy the course's "
            "data/ folder next to the notebook, or point COURSE_DATA_DIR at it."
        ) from err


def _from_original(relpath: str, source: Source) -> bytes:
    data = _get(source.url, relpath)
    if source.member is not None:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                data = archive.read(source.member)
        except (zipfile.BadZipFile, KeyError) as err:
            raise DataDownloadError(f"{source.url} is not a zip archive with {source.member}: {err}") from err
    if source.head_lines is not None:
        data = b"".join(data.splitlines(keepends=True)[: source.head_lines])
    actual = hashlib.sha256(data).hexdigest()
    if actual != source.sha256:
        raise DataDownloadError(
            f"The download for {relpath} from {source.url} is not the expected file: sha256 "
            f"{actual}, expected {source.sha256}. The source may have changed; use the course's "
            "data/ folder instead (COURSE_DATA_DIR)."
        )
    return gzip.compress(data, compresslevel=9, mtime=0) if source.gzip else data


def fetch(relpath: str, base: Path, manifest: dict[str, str]) -> str:
    """Download ``relpath`` into the data folder ``base``, verified; return the sha256 written.

    ``manifest`` maps paths to the shipped files' digests. From a mirror the file must match it;
    from the original source the content is checked against :data:`SOURCES`.
    """
    mirror = os.environ.get(MIRROR_ENV_VAR, "").strip()
    if mirror:
        data = _get(_mirror_url(mirror, relpath), relpath)
        actual = hashlib.sha256(data).hexdigest()
        if actual != manifest[relpath]:
            raise DataDownloadError(
                f"{relpath} from the mirror {mirror} has sha256 {actual}, expected {manifest[relpath]}."
            )
    elif relpath in SOURCES:
        data = _from_original(relpath, SOURCES[relpath])
    else:
        raise DataDownloadError(
            f"{relpath} has no public source to download from; copy it from the course's data/ folder."
        )
    path = base / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)
    return hashlib.sha256(data).hexdigest()


def download_fashion_mnist_original(root: str | os.PathLike) -> Path:
    """Opt-in only: download the original Fashion-MNIST with torchvision into ``root``.

    Never called by the loaders, which read the byte-identical files shipped in
    ``data/fashion-mnist/``. Needs a network connection; without one this raises
    :class:`DataDownloadError`. Returns the folder with the downloaded raw files.
    """
    from torchvision.datasets import FashionMNIST

    root = Path(root)
    try:
        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises both
        raise DataDownloadError(
            f"Could not download Fashion-MNIST into {root}: {err}. This needs a network "
            "connection. You do not need it for the course: load_fashion_mnist() reads the "
            "identical files shipped in data/fashion-mnist/."
        ) from err
    return root / "FashionMNIST" / "raw"
