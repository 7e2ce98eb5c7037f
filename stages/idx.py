"""Parsing the IDX format that MNIST (and Fashion-MNIST) ship in.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. MNIST uses only unsigned bytes.
"""

import gzip

import numpy as np

from stages.errors import DataError

UNSIGNED_BYTE = 0x08


def parse_idx(payload: bytes, name: str) -> np.ndarray:
    """Turns the bytes of one IDX file into an array.

    Args:
        payload: the file's bytes, already decompressed.
        name: the file's name, used in error messages.

    Returns:
        uint8 array of the dimensions the header gives: (N,) for labels, (N, rows, columns) for images.

    Raises:
        DataError: the magic number is wrong, the type is not unsigned byte, or the length does not
            match the header (a truncated or padded file).
    """
    if len(payload) < 4:
        raise DataError(f"{name}: {len(payload)} bytes is too short for an IDX header (4 bytes of magic number)")
    zero_high, zero_low, type_code, dimension_count = payload[:4]
    if zero_high != 0 or zero_low != 0 or dimension_count == 0:
        raise DataError(
            f"{name}: bad IDX magic number 0x{payload[:4].hex()}; expected 0x000008NN "
            "(0x00000801 for labels, 0x00000803 for images). Is it an IDX file, still gzip-compressed?"
        )
    if type_code != UNSIGNED_BYTE:
        raise DataError(f"{name}: IDX type code 0x{type_code:02x}; expected 0x08 (unsigned byte)")
    header_length = 4 + 4 * dimension_count
    if len(payload) < header_length:
        raise DataError(f"{name}: truncated IDX header: {len(payload)} bytes, expected at least {header_length}")
    dimensions = tuple(int(size) for size in np.frombuffer(payload, dtype=">u4", count=dimension_count, offset=4))
    expected_length = header_length + int(np.prod(dimensions))
    if len(payload) != expected_length:
        raise DataError(
            f"{name}: {len(payload)} bytes, expected {expected_length} for dimensions {dimensions}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header_length).reshape(dimensions).copy()


def decompress_if_gzip(payload: bytes, name: str) -> bytes:
    """Returns the payload, gunzipped when it starts with gzip's magic bytes."""
    if payload[:2] != b"\x1f\x8b":
        return payload
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError) as error:
        raise DataError(f"{name}: corrupt gzip data ({error})") from None
