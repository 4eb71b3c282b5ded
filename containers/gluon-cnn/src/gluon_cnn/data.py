"""Training data from a channel directory, in the formats users have: the MNIST/Fashion-MNIST IDX files as
published (.gz or not), .npz/.npy arrays, or a folder of PNG/JPEG images per class.

Everything becomes uint8 images (N, 28, 28) and int32 labels; normalisation happens on the device.
"""

from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from byoc_runtime.errors import DataError
from byoc_runtime.training_data import check_file_kind, describe, directory_files, gunzip, npy_problem, read_head

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


def read_idx(path: Path, where: str | None = None) -> np.ndarray:
    """An IDX file (the format of MNIST; gzip or plain) as a numpy array of its declared type and shape.
    A truncated or corrupt file raises DataError naming `where` and its first incomplete image or label."""
    where = where or path.name
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gunzip(raw, where, _first_incomplete)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_TYPES:
        raise DataError(f"{where} is not an IDX file (bad magic number {raw[:4].hex(' ') or 'missing'})")
    dims = raw[3]
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{where} is truncated: its IDX header ends after {len(raw)} of {header} bytes")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    count = int(np.prod(shape))
    if len(raw) - header < count * dtype.itemsize:
        raise DataError(f"{where} is truncated: {_first_incomplete(raw)}")
    if len(raw) - header > count * dtype.itemsize:
        raise DataError(
            f"{where} declares shape {shape} ({count * dtype.itemsize} bytes of data) but holds "
            f"{len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype, count, offset=header).reshape(shape)


def _first_incomplete(raw: bytes) -> str:
    """Of the (decompressed) start of an IDX file: which image or label is the first one cut off."""
    if len(raw) < 4 or raw[2] not in IDX_TYPES or len(raw) < 4 + 4 * raw[3]:
        return "its IDX header is incomplete"
    dims = raw[3]
    shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
    item_bytes = np.dtype(IDX_TYPES[raw[2]]).itemsize * int(np.prod(shape[1:]))
    what = "label" if dims == 1 else "image"
    present = len(raw) - 4 - 4 * dims
    return (
        f"its header declares shape {shape}; {what} {present // item_bytes} of {shape[0]} is the first incomplete "
        f"one ({item_bytes} bytes per {what} after the {4 + 4 * dims}-byte header, {present} bytes of data present)"
    )


READS = "gluon-cnn reads MNIST IDX files (.gz or not), .npz/.npy arrays, or PNG/JPEG images in one folder per class"
_KINDS = {"idx": ("idx", "gzip"), "arrays": ("npy", "zip"), "images": ("png", "jpeg")}


def load_channel(path: Path, name: str = "train", content_type: str | None = None) -> Dataset:
    """The data set in a channel directory; the format is recognised from the files present. Errors name the
    channel and the file (relative to the channel directory)."""
    files = directory_files(path, name)
    idx = [p for p in files if _IDX_NAME.match(p.name)]
    arrays = [p for p in files if p.suffix in (".npz", ".npy")]
    pictures = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != path]
    for kind, chosen in (("idx", idx), ("arrays", arrays), ("images", pictures)):
        if chosen:
            for file in chosen if kind != "images" else chosen[:1]:  # one image tells the folders' format
                check_file_kind(name, content_type, _relative(path, file), read_head(file), _KINDS[kind], READS)
            reader = {"idx": _from_idx, "arrays": _from_arrays, "images": _from_folders}[kind]
            return reader(path, chosen, name)
    shown = ", ".join(f"{_relative(path, p)} ({describe(read_head(p))})" for p in files[:3])
    raise DataError(
        f"Channel '{name}' holds no data in a known format (found: {shown}). Give MNIST IDX files "
        "(train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz), an .npz with images/labels arrays, "
        "images.npy + labels.npy, or PNG/JPEG files in one sub-folder per class."
    )


def _relative(root: Path, path: Path) -> str:
    return str(path.relative_to(root))


def _from_idx(root: Path, files: list[Path], name: str) -> Dataset:
    pairs: dict[str, dict[str, Path]] = {}
    for path in files:
        match = _IDX_NAME.match(path.name)
        pairs.setdefault(str(path.parent / match["prefix"]), {})[match["kind"]] = path
    complete = {prefix: pair for prefix, pair in pairs.items() if len(pair) == 2}
    if not complete:
        shown = [_relative(root, p) for p in files]
        raise DataError(f"Channel '{name}' has IDX files but no images/labels pair: {shown}")
    # A channel holding the whole published set (train-* and t10k-*): train on train-*, test on t10k-*.
    split = "t10k" if name in ("test", "validation") else "train"
    chosen = {p: pair for p, pair in complete.items() if Path(p).name.startswith(split)} or complete
    xs, ys = [], []
    for prefix in sorted(chosen):
        images, labels = chosen[prefix]["images"], chosen[prefix]["labels"]
        x = read_idx(images, f"Channel '{name}': {_relative(root, images)}")
        y = read_idx(labels, f"Channel '{name}': {_relative(root, labels)}")
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"Channel '{name}': {_relative(root, images)} holds images of shape {list(x.shape)} but "
                f"{_relative(root, labels)} labels of shape {list(y.shape)}: one label per 28x28 image is needed"
            )
        xs.append(_square(x, name))
        ys.append(y.astype(np.int32))
    return Dataset(np.concatenate(xs), np.concatenate(ys), source=f"IDX ({len(chosen)} file pair(s))")


def _from_arrays(root: Path, files: list[Path], name: str) -> Dataset:
    found: dict[str, np.ndarray] = {}
    for path in files:
        where = f"Channel '{name}': {_relative(root, path)}"
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    found.update({key: archive[key] for key in archive.files})
            else:
                problem = npy_problem(path, "image" if path.stem in ("images", "x", "data", "x_train") else "row")
                if problem is not None:
                    raise DataError(f"{where} {problem}")
                found[path.stem] = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"{where} could not be read (object arrays are refused): {err}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:  # a truncated or corrupt .npz (zip) archive
            raise DataError(f"{where} is not a readable .npz archive (truncated or corrupt?): {err}") from None
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
