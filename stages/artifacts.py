"""Writing artifacts atomically and byte-for-byte reproducibly.

Every file a stage produces goes through here: it is written to a temporary file in the same
directory and renamed into place, so an interrupted stage never leaves a half-written output,
and nothing time-dependent (zip timestamps, Keras' `date_saved`) reaches the bytes, so two runs
with the same inputs give the same DVC hashes.
"""

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from stages.errors import DataError, WriteError

# The earliest date a zip entry can carry; any fixed value would do.
FIXED_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# What every stage passes around: 28x28 grayscale images, channels last, of ten classes (MNIST and
# Fashion-MNIST alike; the training stage takes the class count from the data).
IMAGE_SHAPE = (28, 28, 1)
CLASS_COUNT = 10


def cannot_write(path: Path, error: OSError) -> WriteError:
    """The one-line error for an output that could not be written, naming the file and the cure."""
    return WriteError(
        f"cannot write {path}: {error.strerror or error}; free some space or fix the "
        "directory's permissions, then rerun"
    )


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Writes `payload` to `path` through a temporary sibling file and a rename.

    Raises:
        WriteError: the directory or file cannot be written; nothing is left behind.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if temporary:
            Path(temporary).unlink(missing_ok=True)
        raise cannot_write(path, error) from None
    except BaseException:
        if temporary:
            Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: Path, data) -> None:
    """Writes `data` as indented JSON with sorted keys, so equal data gives equal bytes."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def _deterministic_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_DATE)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Saves arrays in NumPy's .npz format (readable by `np.load`) without timestamps."""
    entries = {}
    for name, array in arrays.items():
        buffer = io.BytesIO()
        # C order for every array; a 0-d array stays 0-d (np.ascontiguousarray would make it 1-d).
        array = np.asarray(array)
        np.lib.format.write_array(
            buffer, array if array.flags.c_contiguous else np.ascontiguousarray(array), allow_pickle=False
        )
        entries[f"{name}.npy"] = buffer.getvalue()
    write_bytes_atomic(path, _deterministic_zip(entries))


def load_npz(path: Path, expected: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Loads every array of an .npz file, without pickle, checking the expected names are there.

    Raises:
        DataError: the file is missing (names the command that produces it), is not an .npz
            archive, or lacks one of `expected`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run `dvc repro` to produce it")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: not a readable .npz archive ({error}); delete it and rerun `dvc repro`") from None
    missing = [name for name in expected if name not in arrays]
    if missing:
        raise DataError(f"{path}: expected arrays {', '.join(expected)}, missing {', '.join(missing)}")
    return arrays


def save_keras_model(model, path: Path) -> None:
    """Saves `model` as a `.keras` file whose bytes depend only on the model.

    Keras stamps `date_saved` into metadata.json, the current time into every zip entry and
    Python object ids (`shared_object_id`) into config.json; all are replaced by fixed values
    (ids renumbered in order of appearance, which keeps what is shared) so identical trainings
    give identical files.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            scratch_file = Path(scratch) / "model.keras"
            model.save(scratch_file)
            with zipfile.ZipFile(scratch_file) as archive:
                entries = {name: archive.read(name) for name in archive.namelist()}
    except OSError as error:
        raise cannot_write(path, error) from None
    metadata = json.loads(entries["metadata.json"])
    metadata["date_saved"] = "1980-01-01@00:00:00"
    entries["metadata.json"] = json.dumps(metadata, sort_keys=True).encode("utf-8")
    config = _renumber_shared_objects(json.loads(entries["config.json"]), {})
    entries["config.json"] = json.dumps(config, sort_keys=True).encode("utf-8")
    write_bytes_atomic(path, _deterministic_zip(entries, compression=zipfile.ZIP_DEFLATED))


def load_keras_model(path: Path, input_shape: tuple[int, ...] = IMAGE_SHAPE):
    """Loads a `.keras` model in Keras' safe mode (no arbitrary code), checking it takes `input_shape`.

    Raises:
        DataError: no file at `path`, a file that is not a Keras model (corrupt, truncated, another
            format), or a model built for other inputs.
    """
    import keras

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no trained model; run `dvc repro` (or `dvc pull`) to produce it")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: not a loadable Keras model ({type(error).__name__}: {error}); "
            "rerun its train stage with `dvc repro -f train@<model>`"
        ) from None
    model_input = tuple(model.input_shape[1:])
    if model_input != tuple(input_shape):
        raise DataError(
            f"{path}: the model takes inputs of shape {model_input}, expected {tuple(input_shape)} "
            "(28x28 grayscale); retrain it with `dvc repro -f train@<model>`"
        )
    return model


def _renumber_shared_objects(node, numbers: dict[int, int]):
    if isinstance(node, dict):
        renumbered = {key: _renumber_shared_objects(value, numbers) for key, value in node.items()}
        if "shared_object_id" in node:
            renumbered["shared_object_id"] = numbers.setdefault(node["shared_object_id"], len(numbers) + 1)
        return renumbered
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbers) for value in node]
    return node
