"""Write and read tst weights blobs (docs/model-format.md, version 1) from Python.

A model trained in PyTorch with tst_reference.TstModel can be saved with
save_model and loaded by the engine (tst_model_load); read_blob reads a blob
that the engine wrote.

    /usr/bin/python3 export.py BLOB     prints the tensors of a blob
"""

import struct
import sys

import numpy as np

MAGIC = b"TSTW"
FORMAT_VERSION = 1
BYTE_ORDER_MARKER = 0x01020304


def write_blob(tensors):
    """Encode (name, array) pairs, in order, as a blob; arrays become float32."""
    parts = [MAGIC, struct.pack("<III", FORMAT_VERSION, BYTE_ORDER_MARKER, len(tensors))]
    for name, array in tensors:
        array = np.asarray(array, dtype="<f4")
        if array.ndim not in (1, 2):
            raise ValueError(f"tensor {name!r} has ndim {array.ndim}, expected 1 or 2")
        encoded_name = name.encode("ascii")
        parts.append(struct.pack("<H", len(encoded_name)))
        parts.append(encoded_name)
        parts.append(struct.pack("<B", array.ndim))
        parts.append(struct.pack(f"<{array.ndim}I", *array.shape))
        parts.append(np.ascontiguousarray(array).tobytes())
    return b"".join(parts)


def read_blob(blob):
    """Decode a blob into a list of (name, float32 array) pairs.

    Checks the header and the exact length, but not the names or shapes
    against a model, and not that values are finite: use load_model for that.
    """
    if len(blob) < 16:
        raise ValueError(f"weights blob is {len(blob)} bytes, shorter than the 16-byte header")
    if blob[:4] != MAGIC:
        raise ValueError(f"invalid magic bytes {blob[:4].hex(' ')}, expected {MAGIC!r}")
    version, marker, count = struct.unpack_from("<III", blob, 4)
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported weights format version {version}, "
                         f"expected version {FORMAT_VERSION}")
    if marker != BYTE_ORDER_MARKER:
        raise ValueError(f"invalid byte-order marker {marker:#010x}, "
                         f"expected {BYTE_ORDER_MARKER:#010x}")
    pos = 16
    tensors = []
    try:
        for _ in range(count):
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
                         f"after the last tensor, expected a length of {pos}")
    return tensors


def save_model(model, path):
    """Write a tst_reference.TstModel's parameters to a blob file."""
    tensors = [(name, p.detach().cpu().numpy()) for name, p in model.ordered_parameters()]
    with open(path, "wb") as f:
        f.write(write_blob(tensors))


def load_model(model, path):
    """Load a blob file into a tst_reference.TstModel, checking names, shapes and values."""
    import torch

    with open(path, "rb") as f:
        tensors = read_blob(f.read())
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


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: export.py BLOB")
    with open(sys.argv[1], "rb") as f:
        tensors = read_blob(f.read())
    for name, values in tensors:
        print(f"{name} {tuple(values.shape)} norm {float(np.linalg.norm(values)):.6g}")


if __name__ == "__main__":
    main()
