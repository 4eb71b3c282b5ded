"""What the soak sends: good requests of every shape a family answers, and bad requests of every class the
runtime knows (plus each family's own: unknown ids, wrong widths, out-of-range values).

Good requests are built from the model directory (its ids, widths) so that they are answerable; their
expected answers come from the same model in-process (reference.py), never from here.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from byoc_runtime.codecs import recordio_protobuf

from .wire import Request

JSON, CSV, JSONL, NPY = "application/json", "text/csv", "application/jsonlines", "application/x-npy"
RECORDIO = "application/x-recordio-protobuf"
MAX_PAYLOAD = 6 * 1024 * 1024  # SAGEMAKER_MAX_PAYLOAD_IN_MB's default


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _csv(rows) -> bytes:
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows).encode()


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """An .npy header as numpy writes it (version 1.0), declaring any dtype and shape we like."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


# ------------------------------------------------------------------------------------------ generic bad input
def generic_bad(template: Request) -> list[Request]:
    """Every class of bad input the runtime itself parses, whatever the family. `template` is one of the
    family's good requests (for the cases that need an otherwise valid body)."""
    deep = b"[" * 200_000 + b"]" * 200_000
    record = recordio_protobuf.write_dense(np.ones((2, 3), np.float32))
    bad = [
        Request("bad: no Content-Type, CSV body", b"1,2,3\n", None),
        Request("bad: Content-Type text/html", b"<html></html>", "text/html"),
        Request("bad: Content-Type application/octet-stream", b"\x00\x01\x02", "application/octet-stream"),
        Request("bad: Accept image/gif", template.body, template.content_type, "image/gif"),
        Request("bad: Accept with only q=0", template.body, template.content_type, "application/json;q=0"),
        Request("bad: malformed JSON", b'{"instances": [[1, 2}', JSON),
        Request("bad: empty JSON body", b"", JSON),
        Request("bad: JSON null", b"null", JSON),
        Request("bad: JSON number", b"42", JSON),
        Request("bad: JSON string", b'"hello"', JSON),
        Request("bad: JSON empty list", b"[]", JSON),
        Request("bad: JSON empty object", b"{}", JSON),
        Request("bad: JSON instances not a list", b'{"instances": "abc"}', JSON),
        Request("bad: JSON 200k-deep nesting", deep, JSON),
        Request("bad: JSON 200k-deep, unbalanced", b'{"instances": ' + b"[" * 200_000, JSON),
        Request("bad: JSON NaN", b'{"instances": [[NaN, 1, 2]]}', JSON),
        Request("bad: JSON Infinity", b'{"instances": [[Infinity, -Infinity, 1]]}', JSON),
        Request("bad: JSON 1e999", b'{"instances": [[1e999, 1, 2]]}', JSON),
        Request("bad: JSON not UTF-8", b'{"instances": ["\xff\xfe\xfd"]}', JSON),
        Request("bad: JSON huge integer", b'{"instances": [[' + b"9" * 5000 + b", 1, 2]]}", JSON),
        Request("bad: JSON Lines malformed", b'{"instances": [1]}\n{oops\n', JSONL),
        Request("bad: JSON Lines deep nesting", b"[1]\n" + deep + b"\n", JSONL),
        Request("bad: JSON Lines empty", b"\n\n", JSONL),
        Request("bad: CSV ragged", b"1,2,3\n4,5\n", CSV),
        Request("bad: CSV not numbers", b"a,b,c\nd,e,f\n", CSV),
        Request("bad: CSV not UTF-8", b"\xff\xfe,1,2\n", CSV),
        Request("bad: CSV NaN and inf", b"nan,inf,1\n", CSV),
        Request("bad: CSV empty", b"", CSV),
        Request("bad: NPY bad magic", b"\x93NUMPX\x01\x00garbage", NPY),
        Request("bad: NPY truncated header", _npy(np.zeros((2, 3)))[:20], NPY),
        Request("bad: NPY truncated data", _npy(np.zeros((50, 3)))[:-100], NPY),
        Request("bad: NPY pickled object array", _npy(np.array([{"a": 1}, None], dtype=object), True), NPY),
        Request("bad: NPY header claims 10^12 float64", _npy_header("<f8", (10**12,)) + b"\0" * 64, NPY),
        Request("bad: NPY header claims 2^62 x 2^62", _npy_header("<f4", (2**62, 2**62)) + b"\0" * 64, NPY),
        Request("bad: NPY header negative shape", _npy_header("<f4", (-1, 3)) + b"\0" * 64, NPY),
        Request(
            "bad: NPY header is code",
            b"\x93NUMPY\x01\x00" + struct.pack("<H", 54) + b"__import__('os').system('id')                       \n",
            NPY,
        ),  # fmt: skip
        Request("bad: NPY unicode strings", _npy(np.array(["ab", "cd", "ef"])), NPY),
        Request("bad: NPY complex", _npy(np.ones((1, 3), np.complex64)), NPY),
        Request("bad: NPY structured dtype", _npy(np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])), NPY),
        Request("bad: NPY NaN", _npy(np.array([[np.nan, 1.0, 2.0]])), NPY),
        Request("bad: NPY .npz archive", _npz(), NPY),
        Request("bad: recordIO bad magic", b"\x00\x00\x00\x00" + record[4:], RECORDIO),
        Request("bad: recordIO truncated", record[:-7], RECORDIO),
        Request(
            "bad: recordIO length past the body", struct.pack("<II", 0xCED7230A, (1 << 29) - 1) + b"x" * 64, RECORDIO
        ),  # fmt: skip
        Request("bad: recordIO junk protobuf", struct.pack("<II", 0xCED7230A, 8) + b"\xff" * 8, RECORDIO),
        Request("bad: recordIO empty", b"", RECORDIO),
        Request("bad: body over the size limit", b"1," * (MAX_PAYLOAD // 2 + 1), CSV),
        Request("bad: chunked body over the size limit", b"1," * (MAX_PAYLOAD // 2 + 1), CSV, mode="chunked"),
        Request("bad: body cut off mid-stream", template.body * 50, template.content_type, mode="cut-off"),
        Request("bad: malformed request line", b"GARBAGE\r\n\r\n", mode="raw"),
        Request(
            "bad: 20 KB header",
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\nContent-Length: 0\r\n\r\n",
            mode="raw",
        ),  # fmt: skip
        Request("bad: GET /invocations", b"", None, method="GET"),
        Request("bad: POST /ping", b"{}", JSON, path="/ping"),
        Request("bad: unknown path", b"{}", JSON, path="/predict"),
    ]
    return bad


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.zeros(3))
    return buffer.getvalue()


def trickle(template: Request) -> Request:
    return Request("bad: headers trickled one byte at a time", template.body, template.content_type, mode="trickle")


# ------------------------------------------------------------------------------------------ families
Family = Callable[[Path, np.random.Generator], tuple[list[Request], list[Request]]]


def linear(model_dir: Path, rng: np.random.Generator) -> tuple[list[Request], list[Request]]:
    width = int(np.load(model_dir / "model.npz")["weights"].shape[0])
    good = []
    for _ in range(40):
        rows = np.round(rng.normal(size=(int(rng.integers(1, 20)), width)), 4)
        good += [
            Request("CSV rows -> JSON", _csv(rows), CSV, JSON),
            Request("CSV rows -> CSV", _csv(rows), CSV, CSV),
            Request("JSON instances -> JSON", _json({"instances": rows.tolist()}), JSON),
            Request(
                "JSON features objects -> JSON Lines",
                _json({"instances": [{"features": r} for r in rows.tolist()]}),
                JSON,
                JSONL,
            ),  # fmt: skip
            Request("NPY float32 -> NPY", _npy(rows.astype(np.float32)), NPY, NPY),
            Request(
                "recordIO dense -> recordIO", recordio_protobuf.write_dense(rows.astype(np.float32)), RECORDIO, RECORDIO
            ),  # fmt: skip
        ]
    bad = [
        Request("bad: wrong width", _csv(np.ones((2, width + 1))), CSV),
        Request("bad: 3-D NPY", _npy(np.ones((2, 2, width))), NPY),
        Request("bad: huge numbers overflow the prediction", _json({"instances": [[1e308] * width] * 2}), JSON),
        Request("bad: instances of strings", _json({"instances": [["a"] * width]}), JSON),
    ]
    return good, bad


def mxnet_mf(model_dir: Path, rng: np.random.Generator) -> tuple[list[Request], list[Request]]:
    with np.load(model_dir / "model.npz", allow_pickle=False) as saved:
        users, items = saved["user_ids"].tolist(), saved["item_ids"].tolist()

    def pick(ids, n):
        return [ids[i] for i in rng.integers(0, len(ids), n)]

    good = []
    for _ in range(40):
        n = int(rng.integers(1, 30))
        us, its = pick(users, n), pick(items, n)
        good += [
            Request(
                "Object2Vec rating",
                _json({"instances": [{"in0": [u], "in1": [i]} for u, i in zip(us, its, strict=False)]}),
            ),
            Request(
                "named rating -> CSV",
                _json({"instances": [{"user_id": u, "item_id": i} for u, i in zip(us, its, strict=False)]}),
                JSON,
                CSV,
            ),  # fmt: skip
            Request("top-k", _json({"instances": [{"user_id": u, "k": int(rng.integers(1, 20))} for u in us[:5]]})),
            Request("similar items", _json({"instances": [{"item_id": i, "k": 3} for i in its[:5]]})),
            Request("CSV user,item -> JSON", _csv(zip(us, its, strict=False)), CSV, JSON),
            Request(
                "JSON Lines -> JSON Lines",
                b"".join(_json({"user_id": u, "item_id": i}) + b"\n" for u, i in zip(us, its, strict=False)),
                JSONL,
                JSONL,
            ),  # fmt: skip
        ]
    unknown = max(u for u in users if isinstance(u, int)) + 10**6 if isinstance(users[0], int) else "nobody"
    bad = [
        Request("bad: unknown user id", _json({"instances": [{"user_id": unknown, "item_id": items[0]}]})),
        Request("bad: unknown item id", _json({"instances": [{"item_id": "no-such-item"}]})),
        Request("bad: k = 0", _json({"instances": [{"user_id": users[0], "k": 0}]})),
        Request("bad: in0 not a list", _json({"instances": [{"in0": users[0], "in1": "x"}]})),
        Request("bad: unknown task", _json({"instances": [{"user_id": users[0], "task": "dance"}]})),
        Request("bad: instance not an object", _json({"instances": [[users[0], items[0]]]})),
        Request("bad: id 1e308", _json({"instances": [{"user_id": 1e308, "item_id": items[0]}]})),
        Request("bad: CSV with 3 columns", _csv([[users[0], items[0], 5]]), CSV),
    ]
    return good, bad


def ncf_tf(model_dir: Path, rng: np.random.Generator) -> tuple[list[Request], list[Request]]:
    with np.load(model_dir / "ncf" / "mappings.npz", allow_pickle=False) as maps:
        user_ids, item_ids = maps["user_ids"].tolist(), maps["item_ids"].tolist()
    n_users, n_items = len(user_ids), len(item_ids)
    good = []
    for _ in range(40):
        n = int(rng.integers(1, 30))
        us, its = rng.integers(0, n_users, n).tolist(), rng.integers(0, n_items, n).tolist()
        good += [
            Request(
                "instances of indices",
                _json({"instances": [{"input_1": u, "input_2": i} for u, i in zip(us, its, strict=False)]}),
            ),
            Request("columnar inputs -> CSV", _json({"inputs": {"input_1": us, "input_2": its}}), JSON, CSV),
            Request(
                "raw ids",
                _json(
                    {
                        "instances": [
                            {"user_id": user_ids[u], "item_id": item_ids[i]} for u, i in zip(us, its, strict=False)
                        ]
                    }
                ),
            ),  # fmt: skip
            Request("top-k", _json({"instances": [{"user_id": user_ids[u], "top_k": 5} for u in us[:3]]})),
            Request("CSV pairs -> JSON", _csv(zip(us, its, strict=False)), CSV, JSON),
            Request("NPY pairs -> NPY", _npy(np.array([us, its], np.int64).T), NPY, NPY),
        ]
    bad = [
        Request("bad: index out of range", _json({"instances": [{"input_1": n_users + 5, "input_2": 0}]})),
        Request("bad: unknown raw id", _json({"instances": [{"user_id": -12345, "item_id": item_ids[0]}]})),
        Request("bad: fractional index", _json({"instances": [{"input_1": 1.5, "input_2": 0}]})),
        Request("bad: one-hot of the wrong length", _json({"instances": [{"input_1": [0, 1, 0], "input_2": [1]}]})),
        Request("bad: top_k = 0", _json({"instances": [{"user_id": user_ids[0], "top_k": 0}]})),
        Request("bad: index 1e308", _json({"instances": [{"input_1": 1e308, "input_2": 0}]})),
        Request("bad: top-k as CSV", _json({"instances": [{"user_id": user_ids[0], "top_k": 3}]}), JSON, CSV),
        Request("bad: NPY of 3 columns", _npy(np.zeros((2, 3), np.int64)), NPY),
    ]
    return good, bad


def gluon_cnn(model_dir: Path, rng: np.random.Generator) -> tuple[list[Request], list[Request]]:
    def png(pixels: np.ndarray) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        return buffer.getvalue()

    good = []
    for _ in range(40):
        n = int(rng.integers(1, 8))
        images = (rng.random((n, 28, 28)) ** 3 * 255).astype(np.uint8)  # sparse bright strokes, like digits
        good += [
            Request("JSON 1x28x28 floats", _json({"instances": (images[:1, None] / 255.0).round(4).tolist()})),
            Request("JSON N x 784 ints -> CSV", _json({"instances": images.reshape(n, -1).tolist()}), JSON, CSV),
            Request("NPY uint8 batch -> NPY", _npy(images), NPY, NPY),
            Request("NPY float32 -> JSON", _npy(images.astype(np.float32) / 255), NPY, JSON),
            Request("PNG", png(images[0]), "image/png", JSON),
            Request("JSON verbose", _json({"instances": images[:2].tolist(), "verbose": True}), JSON, JSON),
            Request("JSON Lines -> JSON Lines", b"".join(_json(i.tolist()) + b"\n" for i in images), JSONL, JSONL),
        ]
    digit = png(np.zeros((28, 28), np.uint8))
    bad = [
        Request("bad: 27x27 image", _json({"instances": np.zeros((1, 27, 27)).tolist()})),
        Request("bad: negative pixels", _json({"instances": (-np.ones((1, 784))).tolist()})),
        Request("bad: pixels above 255", _json({"instances": (np.ones((1, 784)) * 300).tolist()})),
        Request("bad: pixels 1e308", _json({"instances": (np.ones((1, 784)) * 1e308).tolist()})),
        Request("bad: PNG truncated", digit[:-20], "image/png"),
        Request("bad: PNG bad CRC", digit[:-5] + b"\x00" + digit[-4:], "image/png"),
        Request("bad: PNG claims 100000x100000", _png_claiming(100_000, 100_000), "image/png"),
        Request("bad: JPEG garbage", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image/jpeg"),
        Request("bad: image/png that is text", b"hello", "image/png"),
    ]
    return good, bad


def _png_claiming(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    )


def fm(model_dir: Path, rng: np.random.Generator) -> tuple[list[Request], list[Request]]:
    with np.load(model_dir / "fm_model.npz", allow_pickle=False) as saved:
        width = int(saved["w"].shape[0])
    good = []
    for _ in range(40):
        n = int(rng.integers(1, 10))
        dense = np.where(rng.random((n, width)) < 0.2, rng.random((n, width)), 0).round(3).astype(np.float32)
        keys = [np.flatnonzero(row) for row in dense]
        sparse = [{"data": {"features": {"keys": k.tolist(), "shape": [width], "values": row[k].tolist()}}}
                  for k, row in zip(keys, dense, strict=False)]  # fmt: skip
        good += [
            Request("JSON dense", _json({"instances": [{"features": r} for r in dense.tolist()]})),
            Request("JSON sparse -> JSON Lines", _json({"instances": sparse}), JSON, JSONL),
            Request("CSV -> CSV", _csv(dense.tolist()), CSV, CSV),
            Request("recordIO dense -> recordIO", recordio_protobuf.write_dense(dense), RECORDIO, RECORDIO),
            Request(
                "recordIO sparse -> JSON",
                recordio_protobuf.write_sparse(
                    [(k, row[k]) for k, row in zip(keys, dense, strict=False)], num_cols=width
                ),
                RECORDIO,
                JSON,
            ),  # fmt: skip
            Request(
                "JSON Lines -> JSON Lines",
                b"".join(_json({"features": r}) + b"\n" for r in dense.tolist()),
                JSONL,
                JSONL,
            ),  # fmt: skip
        ]
    bad = [
        Request("bad: wrong feature count", _json({"instances": [{"features": [0.0] * (width - 1)}]})),
        Request(
            "bad: sparse key out of range",
            _json({"instances": [{"data": {"features": {"keys": [width + 3], "shape": [width], "values": [1.0]}}}]}),
        ),  # fmt: skip
        Request(
            "bad: sparse keys and values of different lengths",
            _json({"instances": [{"data": {"features": {"keys": [0, 1], "shape": [width], "values": [1.0]}}}]}),
        ),  # fmt: skip
        Request(
            "bad: sparse negative key",
            _json({"instances": [{"data": {"features": {"keys": [-1], "shape": [width], "values": [1.0]}}}]}),
        ),  # fmt: skip
        Request("bad: features 1e308", _json({"instances": [{"features": [1e308] * width}]})),
        Request(
            "bad: recordIO of the wrong width", recordio_protobuf.write_dense(np.ones((2, 3), np.float32)), RECORDIO
        ),  # fmt: skip
    ]
    return good, bad


FAMILIES: dict[str, Family] = {
    "linear_family": linear,
    "mxnet_mf": mxnet_mf,
    "ncf_tf": ncf_tf,
    "gluon_cnn": gluon_cnn,
    "fm_algo": fm,
}
# The main job's demo of each family (local/demos/<name>.py): sample data and hyperparameters to train on.
DEMOS = {"linear_family": "test_linear", "mxnet_mf": "mxnet_mf", "ncf_tf": "ncf_tf", "gluon_cnn": "gluon_cnn",
         "fm_algo": "fm"}  # fmt: skip


def encode_requests(requests: list[Request]) -> str:
    return "".join(
        json.dumps(
            {
                "kind": r.kind,
                "body": base64.b64encode(r.body).decode(),
                "content_type": r.content_type,
                "accept": r.accept,
            }
        )
        + "\n"  # fmt: skip
        for r in requests
    )
