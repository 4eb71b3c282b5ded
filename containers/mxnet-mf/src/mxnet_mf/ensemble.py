"""model=mf's default ensemble, w * MF + (1 - w) * I-AutoRec, folded into one biased MF (numpy only).

Both members are a dot product plus biases (autorec.py says why the I-AutoRec's decoder is one), so their
weighted average is too: user factors [sqrt(w) p_u, sqrt(1 - w) w_u], item factors [sqrt(w) q_i,
sqrt(1 - w) (h_i - mean h)], biases weighted. The
served model is then an ordinary `mf` Recommender with more factors: ratings, top-k and similar items need
no second code path, and an unseen id falls back to the weighted biases as plain MF does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AutoRecModel:
    """The trained net as a biased MF: rating = <item_codes[i], user_weights[u]> + user_bias[u]."""

    item_codes: np.ndarray  # (num_items, units)
    user_weights: np.ndarray  # (num_users, units)
    user_bias: np.ndarray  # (num_users,)
    epochs_done: int = 0
    interrupted: bool = False

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.item_codes[items], self.user_weights[users]) + self.user_bias[users]


def blend(mf: dict[str, np.ndarray], autorec: AutoRecModel, mf_weight: float) -> dict[str, np.ndarray]:
    """w * MF + (1 - w) * AutoRec as one biased MF. Each member's factors are scaled by the square root of its
    weight on both sides (the dot products come out weighted, and cosine similarity of items sees each member
    as much as the ratings do: none of the I-AutoRec's at w = 1); its codes are centred, their mean's dot
    product with a user's weights moving into that user's bias (sigmoid codes share a large positive part
    that would otherwise make every item look alike)."""
    other = 1.0 - mf_weight
    centre = autorec.item_codes.mean(axis=0)
    return {
        **mf,
        "user_embedding": np.hstack(
            [np.sqrt(mf_weight) * mf["user_embedding"], np.sqrt(other) * autorec.user_weights]
        ).astype(np.float32),
        "item_embedding": np.hstack(
            [np.sqrt(mf_weight) * mf["item_embedding"], np.sqrt(other) * (autorec.item_codes - centre)]
        ).astype(np.float32),
        "user_bias": mf_weight * mf["user_bias"] + other * (autorec.user_bias + autorec.user_weights @ centre),
        "item_bias": mf_weight * mf["item_bias"],
        "global_bias": mf_weight * mf["global_bias"],
    }


def fit_weight(
    mf: np.ndarray, autorec: np.ndarray, ratings: np.ndarray, low: float, high: float
) -> tuple[float, float]:
    """The MF's share w in [0, 1] minimising the squared error of w * mf + (1 - w) * autorec on held-out
    ratings (closed form), and the RMSE of that blend clipped to the rating range."""
    difference = mf - autorec
    denominator = float(difference @ difference)
    weight = float(np.clip(difference @ (ratings - autorec) / denominator, 0.0, 1.0)) if denominator > 0 else 1.0
    blended = np.clip(weight * mf + (1 - weight) * autorec, low, high)
    return weight, float(np.sqrt(np.mean((blended - ratings) ** 2)))
