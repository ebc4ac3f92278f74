"""Write and read tst weights blobs (docs/model-format.md, versions 1 and 2) from Python.

A model trained in PyTorch with tst_reference.TstModel can be saved with
save_model and loaded by the engine (tst_model_load); read_blob reads a blob
that the engine wrote. Version 2 adds a "calibration" record (H, Q) after the
parameters; write_blob writes version 1 when no calibration is given.

    /usr/bin/python3 export.py BLOB     prints the tensors of a blob
"""

import struct
import sys

import numpy as np

MAGIC = b"TSTW"
FORMAT_VERSION = 2
MIN_FORMAT_VERSION = 1
BYTE_ORDER_MARKER = 0x01020304
CALIBRATION_NAME = "calibration"


def encode_record(name, array):
    """Encode one tensor record: name, ndim, shape and float32 values."""
    array = np.asarray(array, dtype="<f4")
    if array.ndim not in (1, 2):
        raise ValueError(f"tensor {name!r} has ndim {array.ndim}, expected 1 or 2")
    encoded_name = name.encode("ascii")
    return b"".join([struct.pack("<H", len(encoded_name)), encoded_name,
                     struct.pack("<B", array.ndim),
                     struct.pack(f"<{array.ndim}I", *array.shape),
                     np.ascontiguousarray(array).tobytes()])


def write_blob(tensors, calibration=None):
    """Encode (name, array) pairs, in order, as a blob; arrays become float32.

    With calibration, an (H, Q) array of offsets, the blob is version 2 and
    ends with the calibration record; without it, version 1.
    """
    version = 1 if calibration is None else 2
    parts = [MAGIC, struct.pack("<III", version, BYTE_ORDER_MARKER, len(tensors))]
    parts += [encode_record(name, array) for name, array in tensors]
    if calibration is not None:
        calibration = np.asarray(calibration)
        if calibration.ndim != 2:
            raise ValueError(f"calibration has ndim {calibration.ndim}, expected 2")
        parts.append(encode_record(CALIBRATION_NAME, calibration))
    return b"".join(parts)


def read_blob(blob):
    """Decode a blob into a list of (name, float32 array) pairs, the parameters.

    Checks the header and the exact length, but not the names or shapes
    against a model, and not that values are finite: use load_model for that.
    The calibration record of a version 2 blob is left out; read_blob_calibration
    returns it too.
    """
    return read_blob_calibration(blob)[0]


def read_blob_calibration(blob):
    """Decode a blob into (parameters, calibration): the (name, array) pairs and
    the (H, Q) offsets of a version 2 blob, or None for version 1."""
    if len(blob) < 16:
        raise ValueError(f"weights blob is {len(blob)} bytes, shorter than the 16-byte header")
    if blob[:4] != MAGIC:
        raise ValueError(f"invalid magic bytes {blob[:4].hex(' ')}, expected {MAGIC!r}")
    version, marker, count = struct.unpack_from("<III", blob, 4)
    if not MIN_FORMAT_VERSION <= version <= FORMAT_VERSION:
        raise ValueError(f"unsupported weights format version {version}, "
                         f"expected version {MIN_FORMAT_VERSION} to {FORMAT_VERSION}")
    if marker != BYTE_ORDER_MARKER:
        raise ValueError(f"invalid byte-order marker {marker:#010x}, "
                         f"expected {BYTE_ORDER_MARKER:#010x}")
    pos = 16
    tensors = []
    records = count + (1 if version >= 2 else 0)
    try:
        for _ in range(records):
            (name_length,) = struct.unpack_from("<H", blob, pos)
            pos += 2
            name = blob[pos:pos + name_length].decode("ascii")
            pos += name_length
            (ndim,) = struct.unpack_from("<B", blob, pos)
            pos += 1
            shape = struct.unpack_from(f"<{ndim}I", blob, pos)
            pos += 4 * ndim
            size = int(np.prod(shape))
            values = np.frombuffer(blob, dtype="<f4", count=size, offset=pos)
            pos += 4 * size
            tensors.append((name, values.reshape(shape).astype(np.float32)))
    except (struct.error, ValueError) as error:
        raise ValueError(f"weights blob is truncated or corrupt near byte {pos}: {error}")
    if pos != len(blob):
        raise ValueError(f"weights blob has {len(blob) - pos} trailing bytes "
                         f"after the last record, expected a length of {pos}")
    calibration = None
    if version >= 2:
        name, calibration = tensors.pop()
        if name != CALIBRATION_NAME:
            raise ValueError(f"record {count} is named {name!r}, expected {CALIBRATION_NAME!r}")
    return tensors, calibration


def save_model(model, path):
    """Write a tst_reference.TstModel's parameters and calibration to a blob file."""
    tensors = [(name, p.detach().cpu().numpy()) for name, p in model.ordered_parameters()]
    with open(path, "wb") as f:
        f.write(write_blob(tensors, model.calibration.detach().cpu().numpy()))


def load_model(model, path):
    """Load a blob file into a tst_reference.TstModel, checking names, shapes and values.

    A version 1 blob sets every calibration offset to 0."""
    import torch

    with open(path, "rb") as f:
        tensors, calibration = read_blob_calibration(f.read())
    if calibration is None:
        calibration = np.zeros(tuple(model.calibration.shape), dtype=np.float32)
    if tuple(calibration.shape) != tuple(model.calibration.shape):
        raise ValueError(f"calibration has shape {tuple(calibration.shape)}, "
                         f"expected {tuple(model.calibration.shape)}")
    if not np.isfinite(calibration).all():
        raise ValueError("calibration has a non-finite value")
    expected = model.ordered_parameters()
    if len(tensors) != len(expected):
        raise ValueError(f"weights blob has {len(tensors)} tensors, expected {len(expected)}")
    for index, ((name, values), (expected_name, param)) in enumerate(zip(tensors, expected)):
        if name != expected_name:
            raise ValueError(f"tensor {index} is named {name!r}, expected {expected_name!r}")
        if tuple(values.shape) != tuple(param.shape):
            raise ValueError(f"tensor {index} ({name!r}) has shape {tuple(values.shape)}, "
                             f"expected {tuple(param.shape)}")
        if not np.isfinite(values).all():
            raise ValueError(f"tensor {index} ({name!r}) has a non-finite value")
    with torch.no_grad():
        for (_, values), (_, param) in zip(tensors, expected):
            param.copy_(torch.from_numpy(values).to(param.dtype))
        model.calibration.copy_(torch.from_numpy(calibration).to(model.calibration.dtype))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: export.py BLOB")
    with open(sys.argv[1], "rb") as f:
        tensors, calibration = read_blob_calibration(f.read())
    if calibration is not None:
        tensors.append((CALIBRATION_NAME, calibration))
    for name, values in tensors:
        print(f"{name} {tuple(values.shape)} norm {float(np.linalg.norm(values)):.6g}")


if __name__ == "__main__":
    main()
