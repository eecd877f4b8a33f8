"""Property-based bad input for the IDX loader: truncated, corrupted and foreign bytes.

Every outcome is either the array the bytes describe (compared with a NumPy
decoding of them) or a `ValueError` that names the file.
"""

import gzip
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerasvae import data
from tests.properties import small

# NumPy and files only, nothing of Keras: one run (the TensorFlow one) is enough.
pytestmark = pytest.mark.requires_tensorflow


def _idx_bytes(array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _decode(raw):
    """Independent decoding of a well-formed unsigned-byte IDX payload, or None."""
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 0x08 or raw[3] not in (1, 3):
        return None
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        return None
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        return None
    return np.frombuffer(body, np.uint8).reshape(shape)


idx_arrays = st.one_of(
    st.integers(0, 6).map(lambda n: np.arange(n, dtype=np.uint8)),
    st.tuples(st.integers(0, 3), st.integers(1, 3), st.integers(1, 3)).map(
        lambda s: (np.arange(int(np.prod(s))) % 256).astype(np.uint8).reshape(s)
    ),
)


def _write(tmp_path, payload, compress=True):
    path = tmp_path / "file-idx.gz"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def _outcome(path):
    try:
        return data.read_idx(str(path)), None
    except ValueError as e:
        assert str(path) in str(e), f"the error does not name the file: {e}"
        return None, e


@small(20)
@given(array=idx_arrays, data_=st.data())
def test_truncated_idx_payloads_are_refused_naming_the_file(tmp_path_factory, array, data_):
    payload = _idx_bytes(array)
    cut = data_.draw(st.integers(0, len(payload)))
    path = _write(tmp_path_factory.mktemp("idx"), payload[:cut])
    result, error = _outcome(path)
    if cut == len(payload):
        np.testing.assert_array_equal(result, array)
    else:
        assert error is not None, f"{cut} of {len(payload)} bytes were accepted"


@small(20)
@given(array=idx_arrays, data_=st.data())
def test_corrupted_idx_bytes_give_their_decoding_or_an_error(tmp_path_factory, array, data_):
    payload = bytearray(_idx_bytes(array))
    for _ in range(data_.draw(st.integers(1, 3))):
        position = data_.draw(st.integers(0, len(payload) - 1))
        payload[position] = data_.draw(st.integers(0, 255))
    path = _write(tmp_path_factory.mktemp("idx"), bytes(payload))
    result, error = _outcome(path)
    expected = _decode(bytes(payload))
    if expected is None:
        assert error is not None
    else:
        np.testing.assert_array_equal(result, expected)


@small(20)
@given(array=idx_arrays, data_=st.data())
def test_truncated_or_damaged_gzip_streams_are_refused_naming_the_file(tmp_path_factory, array, data_):
    compressed = bytearray(gzip.compress(_idx_bytes(array)))
    if data_.draw(st.booleans()):
        compressed = compressed[: data_.draw(st.integers(0, len(compressed) - 1))]
    else:
        position = data_.draw(st.integers(0, len(compressed) - 1))
        compressed[position] ^= data_.draw(st.integers(1, 255))
    path = _write(tmp_path_factory.mktemp("idx"), bytes(compressed), compress=False)
    try:
        raw = gzip.decompress(bytes(compressed))
    except (OSError, EOFError, zlib.error):
        raw = None
    result, error = _outcome(path)
    expected = None if raw is None else _decode(raw)
    if expected is None:
        assert error is not None
    else:  # a flipped bit the gzip checks do not see (e.g. in the header's mtime)
        np.testing.assert_array_equal(result, expected)


@small(15)
@given(raw=st.binary(max_size=64), compress=st.booleans())
def test_foreign_bytes_are_refused_naming_the_file(tmp_path_factory, raw, compress):
    path = _write(tmp_path_factory.mktemp("idx"), raw, compress=compress)
    result, error = _outcome(path)
    expected = _decode(raw) if compress else None
    if expected is None:
        assert error is not None
    else:
        np.testing.assert_array_equal(result, expected)


def test_a_folder_or_a_missing_file_is_reported(tmp_path):
    for path in (tmp_path, tmp_path / "missing.gz"):
        with pytest.raises(FileNotFoundError, match="IDX file not found") as info:
            data.read_idx(str(path))
        assert str(path) in str(info.value)
