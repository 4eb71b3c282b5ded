"""Gluon CNN on the MNIST sample shipped with the image's sources (2,000 training, 500 test images):
JSON, NPY, PNG and verbose requests, and a JSON Lines batch transform."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import numpy as np

from local.demo import Demo, Request

SAMPLE = Path(__file__).resolve().parents[2] / "containers" / "gluon-cnn" / "sample" / "mnist"


def _test_set() -> tuple[np.ndarray, np.ndarray]:
    x = np.frombuffer(gzip.open(SAMPLE / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    y = np.frombuffer(gzip.open(SAMPLE / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return x.reshape(-1, 28, 28), y


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image  # requirements-dev.txt

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def make(workdir: Path) -> Demo:
    for channel, split in (("train", "train"), ("test", "t10k")):
        (workdir / channel).mkdir()
        for source in SAMPLE.glob(f"{split}-*"):
            shutil.copy(source, workdir / channel / source.name)
    x, y = _test_set()
    with open(workdir / "batch.jsonl", "w") as out:
        for image in x[:20]:
            out.write(json.dumps(image.reshape(-1).tolist()) + "\n")
    paper = 255 - np.kron(x[3], np.ones((4, 4), np.uint8))  # a dark digit on white paper, 112x112
    return Demo(
        family="gluon-cnn",
        inputs={"train": workdir / "train", "test": workdir / "test"},
        hyperparameters={"network": "cnn", "epochs": 5, "log_interval": 0, "class_names": "mnist"},
        requests=[
            Request(f"JSON 1x28x28, the course's request (label {y[0]})", (x[:1] / 255.0).tolist()),
            Request(f"NPY 10 images, uint8 (labels {y[:10].tolist()})", x[:10], content_type="application/x-npy"),
            Request(f"PNG 112x112 dark digit on white (label {y[3]})", _png(paper), content_type="image/png"),
            Request(f"JSON verbose (label {y[1]})", {"instances": x[1:2].tolist(), "verbose": True}),
        ],
        metric_names=["validation_accuracy", "train_accuracy", "images_per_second", "epochs"],
        transform=Request(
            f"20 images as JSON Lines (labels {y[:20].tolist()})",
            workdir / "batch.jsonl",
            "application/jsonlines",
            "application/jsonlines",
        ),
    )
