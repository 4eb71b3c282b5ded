"""A small trained-looking mxnet-mf model built from numpy arrays (no MXNet on the host): known ratings,
a planted nearest neighbour, titles, and the items each user rated."""

import numpy as np

from mxnet_mf.data import IdIndex
from mxnet_mf.recommender import Recommender, rated_csr

USER_IDS = np.array([10, 20, 30])
ITEM_IDS = np.array([100, 200, 300, 400])
# Item 300 points the same way as item 100 (its nearest neighbour by cosine); 200 and 400 are apart.
ITEM_FACTORS = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [-1.0, -1.0]], dtype=np.float32)
USER_FACTORS = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
RATED = [(0, 0), (1, 1), (2, 3)]  # (user index, item index) pairs seen in training


def make_model(kind: str = "mf") -> Recommender:
    params = {
        "user_embedding": USER_FACTORS,
        "item_embedding": ITEM_FACTORS,
        "global_bias": np.array([3.0], dtype=np.float32),
    }
    if kind == "mf":
        params["user_bias"] = np.array([0.1, -0.1, 0.0], dtype=np.float32)
        params["item_bias"] = np.array([0.2, 0.0, -0.2, 0.1], dtype=np.float32)
    else:  # one hidden layer of 3 relu units over concat(user, item), MXNet (out, in) layout
        rng = np.random.default_rng(0)
        params.update(
            hidden_0_weight=rng.normal(size=(3, 4)).astype(np.float32),
            hidden_0_bias=rng.normal(size=3).astype(np.float32),
            output_weight=rng.normal(size=(1, 3)).astype(np.float32),
            output_bias=np.array([0.5], dtype=np.float32),
        )
    users, items = np.array([u for u, _ in RATED]), np.array([i for _, i in RATED])
    indptr, indices = rated_csr(users, items, len(USER_IDS))
    return Recommender(
        kind=kind,
        users=IdIndex(USER_IDS),
        items=IdIndex(ITEM_IDS),
        params=params,
        min_rating=1.0,
        max_rating=5.0,
        mean_rating=3.2,
        titles=np.array(["A (1990)", "B (1991)", "", "D (1993)"]),
        rated_indptr=indptr,
        rated_indices=indices,
    )


def make_object2vec_model(num_classes: int = 1) -> Recommender:
    """An Object2Vec-mode model. A regressor is the biased-MF core: <p_u, q_i> + biases + 3 (as make_model("mf")).
    A classifier has identity towers (encoding = the token embedding, 2-d), the hadamard comparator and no MLP
    layer: its logits are [0, 4 * <p_u, q_i>] (class 1, "liked", where the factors agree)."""
    eye = np.eye(2, dtype=np.float32)
    params = {"user_embedding": USER_FACTORS, "item_embedding": ITEM_FACTORS}
    if num_classes == 1:
        params.update(
            user_bias=np.array([0.1, -0.1, 0.0], dtype=np.float32),
            item_bias=np.array([0.2, 0.0, -0.2, 0.1], dtype=np.float32),
            global_bias=np.array([3.0], dtype=np.float32),
        )
    else:  # logit of class 1 = 4 * sum(e0 * e1); class 0 = 0
        params.update(
            user_encoder_weight=eye,
            user_encoder_bias=np.zeros(2, dtype=np.float32),
            item_encoder_weight=eye,
            item_encoder_bias=np.zeros(2, dtype=np.float32),
            output_weight=np.array([[0.0, 0.0], [4.0, 4.0]], dtype=np.float32),
            output_bias=np.zeros(2, dtype=np.float32),
        )
    settings = {
        "token_dims": [2, 2],
        "enc_dim": 2,
        "comparators": ["hadamard"],
        "mlp_dim": 2,
        "mlp_layers": 0,
        "mlp_activation": "linear",
        "output_layer": "mean_squared_error" if num_classes == 1 else "softmax",
        "num_classes": num_classes,
    }
    users, items = np.array([u for u, _ in RATED]), np.array([i for _, i in RATED])
    indptr, indices = rated_csr(users, items, len(USER_IDS))
    return Recommender(
        kind="object2vec",
        users=IdIndex(USER_IDS),
        items=IdIndex(ITEM_IDS),
        params=params,
        min_rating=1.0 if num_classes == 1 else 0.0,
        max_rating=5.0 if num_classes == 1 else 1.0,
        mean_rating=3.2 if num_classes == 1 else 0.5,
        titles=np.array(["A (1990)", "B (1991)", "", "D (1993)"]),
        rated_indptr=indptr,
        rated_indices=indices,
        settings={"object2vec": settings},
    )
