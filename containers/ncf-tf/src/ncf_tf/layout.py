"""Where the SavedModels are: TensorFlow Serving's layout, found as SageMaker's TensorFlow Serving container
finds it (no TensorFlow needed here).

A model is a directory holding numeric version directories, each with a saved_model.pb (or .pbtxt):
  /opt/ml/model/<version>/saved_model.pb           one model, named "model" (as that container names it)
  /opt/ml/model/<name>/<version>/saved_model.pb    one model per <name> (any depth below /opt/ml/model)
Every version is loaded; a request without tfs-model-version gets the newest (the largest number: 000000002
is version 2). Several models: SAGEMAKER_TFS_DEFAULT_MODEL_NAME names the one a request without
tfs-model-name gets, else the first by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT_MODEL_NAME = "model"  # basename of /opt/ml/model, the name SageMaker's TFS container gives it
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
MAX_DEPTH = 8  # how deep below the model directory models are looked for


class LayoutError(ValueError):
    """The model directory holds no servable SavedModel, or an ambiguous layout; the message says how to fix it."""


@dataclass(frozen=True)
class ModelLayout:
    name: str
    base: Path
    versions: dict[int, Path]  # version number -> its directory

    @property
    def newest(self) -> int:
        return max(self.versions)


def is_saved_model(directory: Path) -> bool:
    return any((directory / name).is_file() for name in SAVED_MODEL_FILES)


def version_dirs(base: Path) -> dict[int, Path]:
    """The numeric subdirectories of `base` holding a SavedModel, by version number."""
    versions: dict[int, Path] = {}
    for child in sorted(_subdirs(base)):
        if child.name.isdigit() and child.name.isascii() and is_saved_model(child):
            number = int(child.name)
            if number in versions:
                raise LayoutError(
                    f"{versions[number]} and {child} are both version {number} of the model in {base}; keep one"
                )
            versions[number] = child
    return versions


def discover(root: Path) -> list[ModelLayout]:
    """Every model under `root`, sorted by name; LayoutError when there is none or two share a name."""
    if not root.is_dir():
        raise LayoutError(f"the model directory {root} does not exist")
    found: list[ModelLayout] = []
    _walk(root, root, 0, found)
    if not found:
        raise LayoutError(_nothing_found(root))
    names: dict[str, ModelLayout] = {}
    for model in found:
        if model.name in names:
            raise LayoutError(
                f"two models are named {model.name!r} ({names[model.name].base} and {model.base}): a model's name is "
                "its directory's name, so give them different names"
            )
        names[model.name] = model
    return sorted(found, key=lambda m: m.name)


def default_name(names: list[str], wanted: str | None) -> str:
    """The model requests without tfs-model-name go to: `wanted` (SAGEMAKER_TFS_DEFAULT_MODEL_NAME), else the
    first by name."""
    if wanted:
        if wanted not in names:
            raise LayoutError(
                f"SAGEMAKER_TFS_DEFAULT_MODEL_NAME={wanted!r} names no model here; the models are: {', '.join(names)}"
            )
        return wanted
    return sorted(names)[0]


def _walk(root: Path, directory: Path, depth: int, found: list[ModelLayout]) -> None:
    versions = version_dirs(directory)
    if versions:
        found.append(ModelLayout(ROOT_MODEL_NAME if directory == root else directory.name, directory, versions))
    if depth >= MAX_DEPTH:
        return
    for child in sorted(_subdirs(directory)):
        if child not in versions.values():  # a version's own folders (variables/, assets/) hold no models
            _walk(root, child, depth + 1, found)


def _subdirs(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return [Path(e.path) for e in entries if e.is_dir()]
    except OSError:
        return []


def _nothing_found(root: Path) -> str:
    hints = []
    if is_saved_model(root):
        hints.append(f"saved_model.pb is directly in {root}: put the SavedModel in a version directory, {root}/1/")
    for directory, _, files in _bounded_walk(root):
        if directory != root and any(f in SAVED_MODEL_FILES for f in files):
            hints.append(
                f"{directory} holds a SavedModel but its name is not a version number: rename it "
                f"{directory.parent}/1 (or move it into {directory}/1/)"
            )
        if any(f.endswith((".keras", ".h5", ".hdf5")) for f in files):
            keras = next(f for f in files if f.endswith((".keras", ".h5", ".hdf5")))
            hints.append(
                f"{directory / keras} is a Keras file, not a SavedModel: export one with model.export(DIR) "
                "or tf.saved_model.save(model, DIR)"
            )
    try:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    except OSError:
        entries = []
    listing = ", ".join(entries[:12]) + (f" and {len(entries) - 12} more" if len(entries) > 12 else "")
    message = (
        f"no SavedModel in {root}: TensorFlow Serving's layout is {root}/<version>/saved_model.pb or "
        f"{root}/<name>/<version>/saved_model.pb, <version> a number such as 000000001; "
        f"{root} holds: {listing or 'nothing'}"
    )
    return message + "".join(f". {hint}" for hint in hints[:3])


def _bounded_walk(root: Path):
    for directory, dirs, files in os.walk(root):
        path = Path(directory)
        if len(path.relative_to(root).parts) >= MAX_DEPTH:
            dirs[:] = []
        yield path, dirs, files
