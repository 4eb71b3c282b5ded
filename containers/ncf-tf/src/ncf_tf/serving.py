"""Serving handlers (BYOC_SERVE=ncf_tf.serving): any SavedModel, as SageMaker's TensorFlow Serving container
serves it, and our own NCF models with their extras.

- Any SavedModel in TensorFlow Serving's layout (layout.py): every version of every model loaded, requests
  routed by X-Amzn-SageMaker-Custom-Attributes (tfs-model-name, tfs-model-version, tfs-method), TF Serving's
  REST semantics on any signature (tfs_rest.py, savedmodels.py).
- A model our trainer wrote (its <base>/ncf/ extras: id maps, each user's training items) also answers what
  only it can (requests.py): raw user/item ids, top-k recommendations, the course client's one-hot vectors,
  [user, item] rows, CSV/NPY pairs; {"inputs": ...} is answered as {"predictions": ...} there, as it always
  was. Everything else to it (another signature, classify/regress, an older version) is TF Serving's.
- Without TensorFlow (the serve-only image, byoc-ncf-tf:<version>-cpu-serve): our trainer's models are scored
  in numpy from the weights it exports beside the SavedModel (numpy_model.py), with the same requests and
  answers; what needs TensorFlow (a SavedModel without those weights, another signature, classify/regress, an
  older version) is answered 501 NeedsFramework naming the full image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime import codecs, request_context
from byoc_runtime.errors import BadRequest, NotAcceptable
from byoc_runtime.serve_only import framework_missing, needs_framework

from . import artifacts, layout, numpy_model, savedmodels, tfs_rest
from .requests import USER_KEYS, PairQuery, TopKQuery, parse
from .tfs_rest import CLASSIFY, PREDICT, NotFound

log = logging.getLogger(__name__)
ACCEPTS = (codecs.JSON, codecs.JSONLINES, codecs.CSV, codecs.NPY)
CHUNK = 1 << 16  # rows per model call: bounds the memory of huge batch requests
DEFAULT_MODEL_ENV = "SAGEMAKER_TFS_DEFAULT_MODEL_NAME"


@dataclass
class NcfModel:
    signature: Any  # the SavedModel's serving_default
    extras: artifacts.Extras
    loaded: Any = None  # the SavedModel object: the signature's variables belong to it, so keep it alive

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        out = [
            self.signature(input_1=tf.constant(users[i : i + CHUNK]), input_2=tf.constant(items[i : i + CHUNK]))
            for i in range(0, len(users), CHUNK)
        ]
        return np.concatenate([next(iter(o.values())).numpy().reshape(-1) for o in out])

    def top_k(self, query: TopKQuery) -> list[dict[str, Any]]:
        n_items = self.extras.n_items
        all_items = np.arange(n_items, dtype=np.int32)
        scores = self.score(np.repeat(query.users, n_items), np.tile(all_items, len(query.users)))
        scores = scores.reshape(len(query.users), n_items)
        answers = []
        for row, user in zip(scores, query.users, strict=True):
            if query.exclude_seen:
                row = row.copy()
                row[self.extras.seen(int(user))] = -np.inf
            k = min(query.k, int(np.isfinite(row).sum()))
            best = np.argpartition(-row, k - 1)[:k] if k else np.empty(0, np.int64)
            best = best[np.argsort(-row[best], kind="stable")]
            answers.append({
                "user_id": self.extras.maps.user_ids[user].item(),
                "item_ids": self.extras.maps.item_ids[best].tolist(),
                "items": best.tolist(),
                "scores": row[best].astype(float).tolist(),
            })
        return answers


@dataclass
class Served:
    """Everything model_fn loaded: the models by name, the default one, and the NCF extras where present."""

    models: dict[str, savedmodels.ServedModel]
    default: str
    ncf: dict[str, NcfModel] = field(default_factory=dict)  # model name -> its NCF scorer (newest version)

    def model(self, name: str | None) -> savedmodels.ServedModel:
        name = name or self.default
        if name not in self.models:
            raise NotFound(f"Servable not found for request: Latest({name}) (models: {', '.join(sorted(self.models))})")
        return self.models[name]

    @property
    def extras(self) -> artifacts.Extras:
        """The default model's NCF extras (bench.ncf_tf and our tests use them)."""
        return self.ncf[self.default].extras


@dataclass
class NumpyNcfModel(NcfModel):
    """Our trainer's model scored in numpy (no TensorFlow): the same answers as NcfModel's."""

    weights: numpy_model.NeuMF | None = None

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = [self.weights.score(users[i : i + CHUNK], items[i : i + CHUNK]) for i in range(0, len(users), CHUNK)]
        return np.concatenate(out) if out else np.empty(0, np.float32)


@dataclass
class NumpyServed:
    """model_fn's result without TensorFlow: every model's versions (for TF Serving's not-found answers) and
    the NCF models numpy can score (their newest version)."""

    versions: dict[str, list[int]]
    default: str
    ncf: dict[str, NumpyNcfModel]

    @property
    def extras(self) -> artifacts.Extras:
        return self.ncf[self.default].extras


def model_fn(model_dir: str) -> Served | NumpyServed:
    root = Path(model_dir)
    if framework_missing("tensorflow"):
        return _numpy_model_fn(root)
    models = {m.name: m for m in savedmodels.load_all(root)}
    default = layout.default_name(list(models), os.environ.get(DEFAULT_MODEL_ENV) or None)
    if len(models) > 1:
        log.info("models %s; requests without tfs-model-name go to %s", ", ".join(sorted(models)), default)
    ncf = {}
    for name, served in models.items():
        if (served.base / artifacts.EXTRAS / "mappings.npz").is_file():
            ncf[name] = _ncf_model(served)
    return Served(models, default, ncf)


def _ncf_model(served: savedmodels.ServedModel) -> NcfModel:
    """Our trainer's model: its newest version's serving_default with the id maps and seen items beside it."""
    newest = served.newest
    signature = newest.signatures.get(tfs_rest.DEFAULT_SIGNATURE)
    if signature is None or not {"input_1", "input_2"} <= signature.inputs.keys():
        raise ValueError(
            f"{served.base / artifacts.EXTRAS} holds NCF id maps, but {newest.path} has no serving_default "
            "signature taking input_1 (user index) and input_2 (item index); remove the ncf/ folder to serve it as "
            "any other SavedModel"
        )
    model = NcfModel(newest.functions[tfs_rest.DEFAULT_SIGNATURE], artifacts.read_extras(served.base), newest.loaded)
    model.score(np.zeros(1, np.int32), np.zeros(1, np.int32))  # trace once before the first request
    log.info("model %s: NCF extras (%d users, %d items) from %s", served.name, model.extras.n_users,
             model.extras.n_items, served.base / artifacts.EXTRAS)  # fmt: skip
    return model


def _numpy_model_fn(root: Path) -> NumpyServed:
    found = layout.discover(root)
    default = layout.default_name([m.name for m in found], os.environ.get(DEFAULT_MODEL_ENV) or None)
    ncf, without = {}, []
    for model in found:
        weights = model.base / artifacts.EXTRAS / numpy_model.WEIGHTS
        if not weights.is_file():
            without.append(f"{model.name} ({model.base}: no {artifacts.EXTRAS}/{numpy_model.WEIGHTS})")
            continue
        scorer = numpy_model.NeuMF.load(weights)
        if scorer.version != model.newest:  # a newer SavedModel was added beside ours: only TensorFlow has it
            without.append(f"{model.name} (its newest version {model.newest} is not the exported {scorer.version})")
            continue
        extras = artifacts.read_extras(model.base)
        if (scorer.n_users, scorer.n_items) != (extras.n_users, extras.n_items):
            raise ValueError(
                f"{weights} has {scorer.n_users} users x {scorer.n_items} items, the id maps "
                f"{extras.n_users} x {extras.n_items}: the model directory is inconsistent"
            )
        ncf[model.name] = NumpyNcfModel(None, extras, weights=scorer)
        log.info("model %s: NCF in numpy (%d users, %d items) from %s", model.name, extras.n_users, extras.n_items,
                 weights)  # fmt: skip
    if not ncf:
        raise needs_framework(
            f"serving {', '.join(without)}: a SavedModel without the weights our trainer exports", "TensorFlow"
        )
    for name in without:
        log.warning("model %s: answered 501 here (needs TensorFlow)", name)
    return NumpyServed({m.name: sorted(m.versions) for m in found}, default, ncf)


def _numpy_predict(data: Any, model: NumpyServed, target: tfs_rest.Target) -> Any:
    """predict_fn without TensorFlow: the NCF requests, TF Serving's not-found answers, 501 for the rest."""
    name = target.model or model.default
    if name not in model.versions:
        raise NotFound(f"Servable not found for request: Latest({name}) (models: {', '.join(sorted(model.versions))})")
    versions = model.versions[name]
    if target.version is not None and target.version not in versions:
        raise NotFound(f"Servable not found for request: Specific({name}, {target.version}) (versions: "
                       + ", ".join(map(str, versions)) + ")")  # fmt: skip
    ncf = model.ncf.get(name)
    if ncf is None:
        raise needs_framework(f"model {name} (a SavedModel without our trainer's weights)", "TensorFlow")
    if target.version is not None and target.version != versions[-1]:
        raise needs_framework(f"version {target.version} of model {name} (not the newest)", "TensorFlow")
    if target.method != PREDICT:
        raise needs_framework(f"tfs-method={target.method}", "TensorFlow")
    if not _for_ncf(data):
        raise needs_framework("a request for another signature or with 'examples'", "TensorFlow")
    return _ncf_predict(data, ncf)


def input_fn(body: bytes, content_type: str) -> Any:
    return codecs.decode(body, content_type)


def predict_fn(data: Any, model: Served | NumpyServed) -> Any:
    target = tfs_rest.parse_custom_attributes(_request_header(tfs_rest.CUSTOM_ATTRIBUTES))
    if isinstance(model, NumpyServed):
        return _numpy_predict(data, model, target)
    served = model.model(target.model)
    servable = served.version(target.version)
    ncf = model.ncf.get(served.name)
    if target.method == PREDICT and ncf is not None and servable is served.newest and _for_ncf(data):
        return _ncf_predict(data, ncf)
    # JSON Lines and CSV rows are instances, as in SageMaker's container: the body's type tells a list of lines
    # from a JSON list (input_fn's result is only the data, so that a user's own predict_fn gets what it did)
    request = tfs_rest.as_tfs_request(data, codecs.media_type(_request_header("Content-Type") or codecs.JSON))
    if target.method != PREDICT:
        examples = tfs_rest.examples_request(request, target.method)
        return TfsAnswer(servable.classify(examples) if target.method == CLASSIFY else servable.regress(examples))
    if "examples" in request and not ("instances" in request or "inputs" in request):
        raise BadRequest(
            "Missing 'inputs' or 'instances' key (a request with 'examples' is for classify or regress: send the "
            f"header {tfs_rest.CUSTOM_ATTRIBUTES}: tfs-method=classify or tfs-method=regress)"
        )
    signature = servable.signature(tfs_rest.signature_name_of(request))
    parsed = tfs_rest.predict_request(request, signature)
    return TfsAnswer(tfs_rest.predict_answer(servable.run(signature, parsed.tensors), parsed.row_format))


@dataclass(frozen=True)
class TfsAnswer:
    body: dict[str, Any]


def _for_ncf(data: Any) -> bool:
    """Whether our NCF handling takes this request: anything but another signature or a classify/regress body."""
    if isinstance(data, dict):
        if data.get("signature_name", tfs_rest.DEFAULT_SIGNATURE) != tfs_rest.DEFAULT_SIGNATURE:
            return False
        if "examples" in data and not any(k in data for k in ("instances", "inputs", *USER_KEYS)):
            return False
    return True


def _ncf_predict(data: Any, model: NcfModel) -> Any:
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "signature_name"}
    query = parse(data, model.extras)
    if isinstance(query, TopKQuery):
        return {"predictions": model.top_k(query)}
    assert isinstance(query, PairQuery)
    return model.score(query.users, query.items).reshape(-1, 1)


def _request_header(name: str) -> str | None:
    """A header of the request being answered; None outside one."""
    return request_context.header(name)


def output_fn(prediction: Any, accept: str) -> bytes:
    kind = codecs.media_type(accept)
    if isinstance(prediction, TfsAnswer):
        return codecs.encode(prediction.body, accept)
    if isinstance(prediction, dict):
        if kind not in (codecs.JSON, codecs.JSONLINES):
            raise NotAcceptable("top-k recommendations are answered as application/json (or jsonlines) only")
        return codecs.encode(prediction, accept)
    if kind in (codecs.CSV, codecs.NPY):
        return codecs.encode(prediction, accept)
    return codecs.encode({"predictions": prediction.round(7).tolist()}, accept)
