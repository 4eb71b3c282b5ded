"""Object2Vec compatibility: the built-in algorithm's hyperparameters, and which of them mean something here.

A job is in Object2Vec mode when `model` is `object2vec`, or when `model` is not set and any hyperparameter
only Object2Vec has is (the course's dicts set `output_layer`, `enc_dim`, `enc0_vocab_size`, ...). The
ones with a meaning here shape the network (networks.Object2VecNet): two towers (token embedding ->
linear projection to enc_dim), Object2Vec's comparator, an MLP, a regression or softmax output. The rest are
accepted, so the course's dicts run unchanged, and logged once as having no effect. An unknown name stays a
failure (byoc_runtime.hyperparameters.validate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from byoc_runtime.errors import HyperparameterError
from byoc_runtime.hyperparameters import Param

COMPARATORS = ("hadamard", "concat", "abs_diff")
ACTIVATIONS = ("tanh", "relu", "linear")
OUTPUT_LAYERS = ("softmax", "mean_squared_error")

# Object2Vec's hyperparameters that shape the model here (defaults and ranges as Object2Vec documents them).
MAPPED: dict[str, Param] = {
    "output_layer": Param(str, "softmax", choices=OUTPUT_LAYERS, help="object2vec: softmax (classes) or regression"),
    "num_classes": Param(int, 2, min=2, max=30, help="object2vec softmax: labels 0..num_classes-1"),
    "enc0_vocab_size": Param(int, None, min=2, max=3_000_000, help="object2vec: in0 (user) tokens are below it"),
    "enc1_vocab_size": Param(int, None, min=2, max=3_000_000, help="object2vec: in1 (item) tokens are below it"),
    "enc0_token_embedding_dim": Param(int, 300, min=2, max=1000, help="object2vec: user token embedding size"),
    "enc1_token_embedding_dim": Param(int, 300, min=2, max=1000, help="object2vec: item token embedding size"),
    "enc_dim": Param(
        int, 4096, min=4, max=10000, help="object2vec towers (softmax, > 2 classes): each tower's output size"
    ),
    "comparator_list": Param(
        str,
        "hadamard, concat, abs_diff",
        help="object2vec towers (softmax, > 2 classes): how the two tower outputs are combined",
    ),
    "mlp_dim": Param(
        int, 512, min=2, max=10000, help="object2vec towers (softmax, > 2 classes): units of each MLP layer"
    ),
    "mlp_layers": Param(
        int, 2, min=0, max=10, help="object2vec towers (softmax, > 2 classes): MLP layers between comparator and output"
    ),
    "mlp_activation": Param(
        str, "linear", choices=ACTIVATIONS, help="object2vec towers (softmax, > 2 classes): MLP activation"
    ),
    "weight_decay": Param(float, None, min=0.0, max=10000.0, help="object2vec's name for wd"),
}
# Shared with the other models (early stopping needs a validation channel; on by default in object2vec mode).
EARLY_STOPPING: dict[str, Param] = {
    "early_stopping_patience": Param(
        int, None, min=1, max=5, help="epochs without improvement before stopping (object2vec default 3)"
    ),
    "early_stopping_tolerance": Param(
        float, 0.01, min=1e-6, max=0.1, help="validation loss decrease that counts as an improvement"
    ),
}
# Accepted so that Object2Vec's dicts run unchanged; they have no effect here (logged once).
NO_EFFECT: dict[str, Param] = {
    "_kvstore": Param(str, None, help="no effect: the kvstore follows the hosts and GPUs (see kvstore)"),
    "_num_gpus": Param(str, None, help="no effect: every GPU of the host is used"),
    "_num_kv_servers": Param(str, None, help="no effect: one parameter server per host"),
    "bucket_width": Param(int, None, min=0, max=100, help="no effect: every input is one token"),
    "enc0_network": Param(
        str, None, choices=("hcnn", "bilstm", "pooled_embedding"), help="no effect: towers embed one token"
    ),
    "enc1_network": Param(
        str, None, choices=("enc0", "hcnn", "bilstm", "pooled_embedding"), help="no effect: towers embed one token"
    ),
    "enc0_layers": Param(str, None, help="no effect: towers embed one token"),
    "enc1_layers": Param(str, None, help="no effect: towers embed one token"),
    "enc0_max_seq_len": Param(int, None, min=1, max=5000, help="no effect: in0 is one token"),
    "enc1_max_seq_len": Param(int, None, min=1, max=5000, help="no effect: in1 is one token"),
    "enc0_cnn_filter_width": Param(int, None, min=1, max=9, help="no effect: no CNN encoder"),
    "enc1_cnn_filter_width": Param(int, None, min=1, max=9, help="no effect: no CNN encoder"),
    "enc0_freeze_pretrained_embedding": Param(bool, None, help="no effect: no pretrained embeddings"),
    "enc1_freeze_pretrained_embedding": Param(bool, None, help="no effect: no pretrained embeddings"),
    "enc0_pretrained_embedding_file": Param(str, None, help="no effect: no pretrained embeddings"),
    "enc1_pretrained_embedding_file": Param(str, None, help="no effect: no pretrained embeddings"),
    "enc0_vocab_file": Param(str, None, help="no effect: no pretrained embeddings"),
    "enc1_vocab_file": Param(str, None, help="no effect: no pretrained embeddings"),
    "tied_token_embedding_weight": Param(bool, None, help="no effect: users and items have their own tables"),
    "negative_sampling_rate": Param(int, None, min=0, max=1000, help="no effect: no negative sampling"),
    "token_embedding_storage_type": Param(
        str, None, choices=("dense", "row_sparse"), help="no effect: row_sparse gradients on one host, dense else"
    ),
}
SPEC: dict[str, Param] = {**MAPPED, **EARLY_STOPPING, **NO_EFFECT}
# Names only Object2Vec has: any of them (without `model`) selects Object2Vec mode.
ONLY_OBJECT2VEC = frozenset(MAPPED) | frozenset(NO_EFFECT)
# Names of the other models that have no place in Object2Vec mode.
NOT_OBJECT2VEC = frozenset({"num_factors", "hidden_units"})


def mode(given: Mapping[str, Any], model: str) -> str:
    """'object2vec' or the `model` given. `given`: the user's hyperparameters as passed (names matter)."""
    o2v = sorted(ONLY_OBJECT2VEC & set(given))
    if "model" not in given:
        return "object2vec" if o2v else model
    if model != "object2vec" and o2v:
        raise HyperparameterError(
            o2v[0],
            f"it is an Object2Vec hyperparameter, for model object2vec, but model is {model!r} "
            "(leave model unset or set it to object2vec)",
        )
    return model


def check(given: Mapping[str, Any], hp: dict[str, Any]) -> None:
    """Object2Vec mode: the other models' names are mistakes; comparator_list must name known operators."""
    for name in sorted(NOT_OBJECT2VEC & set(given)):
        raise HyperparameterError(
            name, "it sizes the mf/deep/mlp models; in Object2Vec mode use enc0_token_embedding_dim, enc_dim, mlp_dim"
        )
    comparators(hp["comparator_list"])
    if "weight_decay" in given and "wd" in given:
        raise HyperparameterError("weight_decay", "set weight_decay (Object2Vec's name) or wd, not both")


def comparators(text: str) -> list[str]:
    names = [part.strip() for part in str(text).strip("[]").replace("'", "").replace('"', "").split(",")]
    names = [name for name in names if name]
    if not names:
        raise HyperparameterError("comparator_list", f"names no operator (allowed: {', '.join(COMPARATORS)})")
    for name in names:
        if name not in COMPARATORS:
            raise HyperparameterError("comparator_list", f"{name!r} is not one of {', '.join(COMPARATORS)}")
    return names


# A regression or a binary softmax is the biased-MF core on the token embeddings (networks.Object2VecNet): these
# shape only the towers, which more classes use.
TOWERS_ONLY = ("enc_dim", "comparator_list", "mlp_dim", "mlp_layers", "mlp_activation")
# The core's per-rating L2 for a softmax when `l2` is not set: the cross-entropy's gradients are smaller than the
# squared error's (ML-100K binarized, ua.test accuracy: 0.1 -> 0.702, 0.05 -> 0.703, 0.03 -> 0.714, 0.02 -> 0.707).
SOFTMAX_L2 = 0.03


def uses_core(hp: Mapping[str, Any]) -> bool:
    """Whether the network is the biased-MF core (a regression or a binary softmax) rather than the towers."""
    return hp["output_layer"] == "mean_squared_error" or hp["num_classes"] <= 2


def no_effect_line(given: Mapping[str, Any], core: bool = False) -> str | None:
    """One line naming every no-effect hyperparameter the job set, or None when it set none."""
    names = [name for name in NO_EFFECT if name in given]
    if core:
        names += [name for name in TOWERS_ONLY if name in given]
    if not names:
        return None
    shown = ", ".join(f"{name}={given[name]!r}" for name in names)
    why = "mxnet-mf embeds one user token and one item token"
    if core:
        why += "; a regression or a binary softmax is biased MF on the token embeddings, without towers or MLP"
    return (
        f"Object2Vec hyperparameters accepted with no effect here: {shown} ({why}; see its README's Object2Vec table)"
    )


DEFAULT_PATIENCE = 3  # Object2Vec's early_stopping_patience default


def network_settings(hp: Mapping[str, Any]) -> dict[str, Any]:
    """What shapes the network (networks.Object2VecNet) and the served model, from the validated hyperparameters."""
    return {
        "token_dims": [hp["enc0_token_embedding_dim"], hp["enc1_token_embedding_dim"]],
        "enc_dim": hp["enc_dim"],
        "comparators": comparators(hp["comparator_list"]),
        "mlp_dim": hp["mlp_dim"],
        "mlp_layers": hp["mlp_layers"],
        "mlp_activation": hp["mlp_activation"],
        "output_layer": hp["output_layer"],
        "num_classes": hp["num_classes"] if hp["output_layer"] == "softmax" else 1,
    }
