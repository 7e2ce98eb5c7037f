import gzip
import struct

import numpy as np
import pytest

from stages import idx
from stages.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parses_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1, 9], dtype=np.uint8)
    np.testing.assert_array_equal(idx.parse_idx(idx_bytes(images), "images"), images)
    parsed = idx.parse_idx(idx_bytes(labels), "labels")
    assert parsed.dtype == np.uint8 and parsed.shape == (3,)
    np.testing.assert_array_equal(parsed, labels)


def test_truncated_file_is_rejected_with_sizes():
    payload = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))[:-5]
    with pytest.raises(DataError, match=r"images: 35 bytes, expected 40 for dimensions \(2, 3, 4\)"):
        idx.parse_idx(payload, "images")


def test_wrong_magic_number_is_rejected():
    payload = b"\x1f\x8b\x08\x00" + bytes(20)
    with pytest.raises(DataError, match="bad IDX magic number 0x1f8b0800"):
        idx.parse_idx(payload, "labels")


def test_wrong_type_code_is_rejected():
    payload = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + bytes(4)
    with pytest.raises(DataError, match="type code 0x0d"):
        idx.parse_idx(payload, "floats")


def test_gzip_is_undone_and_plain_passes_through():
    payload = idx_bytes(np.ones(5, dtype=np.uint8))
    assert idx.decompress_if_gzip(gzip.compress(payload), "x.gz") == payload
    assert idx.decompress_if_gzip(payload, "x") == payload
