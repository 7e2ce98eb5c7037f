import functools
import gzip
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from stages import artifacts, download
from stages.errors import DataError, ParamsError, SourceError
from tests.conftest import project_params


def test_real_npm_package_matches_pinned_digests(mnist_idx_files):
    for array_name, file_name in download.IDX_FILE_NAMES.items():
        assert hashlib.sha256(mnist_idx_files[file_name]).hexdigest() == download.MNIST.sha256[array_name]
    arrays = download.arrays_from_idx_files(mnist_idx_files, "npm")
    assert arrays["class_names"].tolist() == [str(digit) for digit in range(10)]
    assert arrays["x_train"].shape == (60000, 28, 28) and arrays["x_train"].dtype == np.uint8
    assert arrays["y_train"].shape == (60000,) and arrays["x_test"].shape == (10000, 28, 28)
    assert arrays["y_test"].shape == (10000,)
    # The study's sample predictions: test images 500, 1500 and 2500 show a 3, a 7 and a 2.
    assert [int(arrays["y_test"][index]) for index in (500, 1500, 2500)] == [3, 7, 2]


def test_checksum_mismatch_stops_naming_the_file(mnist_idx_files):
    altered = dict(mnist_idx_files)
    corrupted = bytearray(altered["t10k-labels-idx1-ubyte"])
    corrupted[100] ^= 0xFF
    altered["t10k-labels-idx1-ubyte"] = bytes(corrupted)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: SHA-256 [0-9a-f]{64}, expected ff7bcfd4"):
        download.arrays_from_idx_files(altered, "npm", dataset=download.MNIST)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte \(known datasets: mnist, fashion-mnist\): SHA-256"):
        download.arrays_from_idx_files(altered, "directory")


def write_tarball(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:  # level 1: the test is of reading, not size
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def test_npm_tarball_members_are_read_by_exact_name_only(tmp_path, mnist_idx_files):
    tarball = tmp_path / "package.tgz"
    write_tarball(
        tarball,
        [
            *((f"package/data/{name}", data) for name, data in mnist_idx_files.items()),
            ("package/data/extra-file", b"ignored"),
            ("package/readme.md", b"ignored"),
        ],
    )
    assert sorted(download.read_npm_tarball(tarball)) == sorted(mnist_idx_files)


@pytest.mark.parametrize("unsafe_name", ["../evil", "/etc/evil", "package/../../evil"])
def test_npm_tarball_with_an_unsafe_member_is_refused_and_nothing_is_written(tmp_path, unsafe_name):
    tarball = tmp_path / "package.tgz"
    write_tarball(tarball, [(unsafe_name, b"outside")])
    with pytest.raises(DataError, match=r"package.tgz: unsafe member path .*evil.* refusing the archive"):
        download.read_npm_tarball(tarball)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["package.tgz"]
    assert not (tmp_path.parent / "evil").exists()


def test_npm_tarball_missing_a_member_is_an_error(tmp_path):
    tarball = tmp_path / "package.tgz"
    with tarfile.open(tarball, "w:gz"):
        pass
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        download.read_npm_tarball(tarball)


def test_idx_directory_of_gzip_files_gives_identical_arrays(tmp_path, mnist_idx_files):
    for name, payload in mnist_idx_files.items():
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(payload, compresslevel=1))
    from_directory = download.arrays_from_idx_files(download.read_idx_directory(tmp_path), "dir")
    from_npm = download.arrays_from_idx_files(mnist_idx_files, "npm")
    for name in download.IDX_FILE_NAMES:
        np.testing.assert_array_equal(from_directory[name], from_npm[name])


@pytest.fixture
def served_directory(tmp_path):
    """An HTTP server on loopback serving tmp_path; yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *arguments):
        pass


def test_url_source_gives_identical_arrays(tmp_path, served_directory, mnist_idx_files):
    from_npm = download.arrays_from_idx_files(mnist_idx_files, "npm")
    artifacts.save_npz(tmp_path / "mnist.npz", from_npm)
    digest = hashlib.sha256((tmp_path / "mnist.npz").read_bytes()).hexdigest()
    from_url = download.load_from_url(f"{served_directory}/mnist.npz", digest)
    for name in download.IDX_FILE_NAMES:
        np.testing.assert_array_equal(from_url[name], from_npm[name])
        assert from_url[name].dtype == np.uint8


def test_url_source_rejects_wrong_digest_and_missing_file(tmp_path, served_directory):
    (tmp_path / "page.npz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="SHA-256 .* expected 0000"):
        download.load_from_url(f"{served_directory}/page.npz", "0" * 64)
    with pytest.raises(SourceError, match="download failed .*404"):
        download.load_from_url(f"{served_directory}/absent.npz", "0" * 64)


def test_unknown_source_is_rejected_with_suggestion():
    section = project_params()["data"] | {"source": "npn"}
    with pytest.raises(
        ParamsError,
        match=r"'data.source' must be one of npm, url, idx_dir, got 'npn' "
        r"\(did you mean 'npm'\?\)",
    ):
        download.DownloadParams.from_section(section)


def test_fashion_mnist_idx_directory_is_identified_with_its_class_names(fashion_mnist_idx_directory):
    arrays = download.arrays_from_idx_files(download.read_idx_directory(fashion_mnist_idx_directory), "fashion")
    assert arrays["class_names"][9] == "Ankle boot" and arrays["x_train"].shape == (60000, 28, 28)


def test_a_directory_mixing_two_datasets_is_named_as_such(fashion_mnist_idx_directory, mnist_idx_files):
    files = download.read_idx_directory(fashion_mnist_idx_directory)
    files["t10k-labels-idx1-ubyte"] = mnist_idx_files["t10k-labels-idx1-ubyte"]
    with pytest.raises(
        DataError,
        match=r"dir: the four files belong to different datasets \(.*t10k-labels-idx1-ubyte "
        r"from mnist.*; expected one complete set",
    ):
        download.arrays_from_idx_files(files, "dir")
