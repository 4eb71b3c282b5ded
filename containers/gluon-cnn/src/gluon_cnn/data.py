"""Training data from a channel directory, in the formats users have: the MNIST/Fashion-MNIST IDX files as
published (.gz or not), .npz/.npy arrays, or a folder of PNG/JPEG images per class.

Everything becomes uint8 images (N, 28, 28) and int32 labels; normalisation happens on the device.
"""

from __future__ import annotations

import gzip
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from byoc_runtime.errors import DataError

from . import images

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIDE = images.SIDE
# The pair of IDX files of one split share the part of the name before "images"/"labels":
# train-images-idx3-ubyte.gz <-> train-labels-idx1-ubyte.gz.
_IDX_NAME = re.compile(r"^(?P<prefix>.*?)(?P<kind>images|labels)[-.]idx(?P<dims>\d)-ubyte(\.gz)?$")


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # int32 (N,)
    class_names: tuple[str, ...] | None = None  # from image folders
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the format of MNIST; gzip or plain) as a numpy array of its declared type and shape."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path.name} is not a valid gzip file: {err}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_TYPES:
        raise DataError(f"{path.name} is not an IDX file (bad magic number)")
    dims = raw[3]
    header = 4 + 4 * dims
    shape = struct.unpack(f">{dims}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    count = int(np.prod(shape))
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(f"{path.name} declares shape {shape} but holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype, count, offset=header).reshape(shape)


def load_channel(path: Path, name: str = "train") -> Dataset:
    """The data set in a channel directory; the format is recognised from the files present."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"Channel '{name}' has no files in {path}")
    idx = [p for p in files if _IDX_NAME.match(p.name)]
    if idx:
        return _from_idx(idx, name)
    arrays = [p for p in files if p.suffix in (".npz", ".npy")]
    if arrays:
        return _from_arrays(arrays, name)
    pictures = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != path]
    if pictures:
        return _from_folders(path, pictures, name)
    shown = ", ".join(p.name for p in files[:5])
    raise DataError(
        f"Channel '{name}' holds no data in a known format (found: {shown}). Give MNIST IDX files "
        "(train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz), an .npz with images/labels arrays, "
        "images.npy + labels.npy, or PNG/JPEG files in one sub-folder per class."
    )


def _from_idx(files: list[Path], name: str) -> Dataset:
    pairs: dict[str, dict[str, Path]] = {}
    for path in files:
        match = _IDX_NAME.match(path.name)
        pairs.setdefault(str(path.parent / match["prefix"]), {})[match["kind"]] = path
    complete = {prefix: pair for prefix, pair in pairs.items() if len(pair) == 2}
    if not complete:
        raise DataError(f"Channel '{name}' has IDX files but no images/labels pair: {[p.name for p in files]}")
    # A channel holding the whole published set (train-* and t10k-*): train on train-*, test on t10k-*.
    split = "t10k" if name in ("test", "validation") else "train"
    chosen = {p: pair for p, pair in complete.items() if Path(p).name.startswith(split)} or complete
    xs, ys = [], []
    for prefix in sorted(chosen):
        x, y = read_idx(chosen[prefix]["images"]), read_idx(chosen[prefix]["labels"])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"IDX pair {Path(prefix).name}*: images {x.shape} and labels {y.shape} do not match")
        xs.append(_square(x, name))
        ys.append(y.astype(np.int32))
    return Dataset(np.concatenate(xs), np.concatenate(ys), source=f"IDX ({len(chosen)} file pair(s))")


def _from_arrays(files: list[Path], name: str) -> Dataset:
    found: dict[str, np.ndarray] = {}
    for path in files:
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    found.update({key: archive[key] for key in archive.files})
            else:
                found[path.stem] = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"{path.name} could not be read (object arrays are refused): {err}") from None
    x = next((found[k] for k in ("images", "x", "data", "x_train") if k in found), None)
    y = next((found[k] for k in ("labels", "y", "label", "y_train") if k in found), None)
    if x is None or y is None:
        raise DataError(f"Channel '{name}': arrays named images/x and labels/y are needed, found {sorted(found)}")
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == SIDE * SIDE:
        x = x.reshape(-1, SIDE, SIDE)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dtype != np.uint8:  # floats in [0, 1] (or 0..255) -> the uint8 we keep in memory
        scale = 255.0 if float(np.max(x, initial=0)) <= 1.0 else 1.0
        x = np.clip(np.rint(x.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise DataError(f"Channel '{name}': {len(x)} images but {len(y)} labels")
    return Dataset(_square(x, name), y.astype(np.int32), source="arrays")


def _from_folders(root: Path, pictures: list[Path], name: str) -> Dataset:
    class_names = tuple(sorted({p.relative_to(root).parts[0] for p in pictures}))
    index = {c: i for i, c in enumerate(class_names)}
    xs, ys = [], []
    for path in pictures:
        try:
            xs.append(np.rint(images.decode(path.read_bytes()) * 255).astype(np.uint8))
        except ValueError as err:
            raise DataError(f"Channel '{name}': {path.relative_to(root)} could not be read: {err}") from None
        ys.append(index[path.relative_to(root).parts[0]])
    return Dataset(np.stack(xs), np.array(ys, np.int32), class_names, source="image folders")


def _square(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise DataError(f"Channel '{name}': images must be {SIDE}x{SIDE}, got shape {list(x.shape)}")
    if x.dtype != np.uint8:
        raise DataError(f"Channel '{name}': IDX images must be unsigned bytes, got {x.dtype}")
    return x
