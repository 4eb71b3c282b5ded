"""The model=dssm training job: the items channel's features and the ratings in, a DssmModel out.

The catalogue is every item of the `items` channel (rated or not) plus any rated item it lacks (with no
words). The vocabulary is the words of the rated items found in at least `min_word_count` of them: a word
only unrated items have would never be trained. With a validation channel, every epoch logs
validation_hr_at_10 / validation_ndcg_at_10: each liked validation rating ranked against 100 catalogue items
the user rated nowhere (the NCF papers' protocol).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from byoc_runtime import atomic
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.metrics import log_metric, write_metrics
from byoc_runtime.training_env import TrainingEnv

from .data import IdIndex, RatingTable, channel_blobs, decode_text
from .dssm import DssmModel, Towers, id_key, profiles
from .item_features import ItemFeatures, Vocabulary, parse_items
from .recommender import rated_csr

EVAL_NEGATIVES, TOP_K = 100, 10


def read_items(env: TrainingEnv) -> ItemFeatures:
    channel = env.channel("items", required=False)
    if channel is None:
        raise DataError(
            "model=dssm needs an 'items' channel with the items' features (u.item, movies.csv, or a CSV / JSON "
            "Lines file with item_id, title, genres, year, text, ...)"
        )
    return parse_items((name, decode_text(blob)) for name, blob in channel_blobs(channel))


IMAGE_CHANNELS = ("item_images", "images")


def read_images(env: TrainingEnv, positions: dict, count: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The optional image channel: .npz files with `item_ids` (or `ids`) and `images` (or `features`) arrays, or
    item_ids.npy + images.npy; one row per item, any shape after the first axis (pixels, or a pre-trained
    network's features), uint8 (scaled to [0, 1]) or floats. Returns (catalogue rows x numbers, has-image
    mask, divisor), or None without the channel."""
    channel = next((env.channels[n] for n in IMAGE_CHANNELS if n in env.channels), None)
    if channel is None:
        return None
    pairs = []
    files = sorted(p for p in Path(channel.path).rglob("*") if p.is_file())
    for path in files:
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    names = archive.files
                    id_name = next((n for n in ("item_ids", "ids") if n in names), None)
                    image_name = next((n for n in ("images", "features") if n in names), None)
                    if id_name is None or image_name is None:
                        raise DataError(
                            f"Channel '{channel.name}': {path.name} holds {names}; expected item_ids and images"
                        )
                    pairs.append((archive[id_name], archive[image_name], path.name))
            elif path.name == "item_ids.npy" and (path.parent / "images.npy").exists():
                loaded = (np.load(path, allow_pickle=False), np.load(path.parent / "images.npy", allow_pickle=False))
                pairs.append((*loaded, "images.npy"))
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"Channel '{channel.name}': {path.name} is not a readable numpy file: {err}") from None
    if not pairs:
        raise DataError(f"Channel '{channel.name}' holds no .npz (item_ids + images) or item_ids.npy + images.npy")
    sizes = {int(np.prod(images.shape[1:])) for _, images, _ in pairs}
    if len(sizes) > 1:
        raise DataError(f"Channel '{channel.name}': images of different sizes ({sorted(sizes)} numbers each)")
    size = sizes.pop()
    uint8 = all(images.dtype == np.uint8 for _, images, _ in pairs)
    out, has, unknown = np.zeros((count, size), np.float32), np.zeros(count, bool), 0
    for item_ids, images, name in pairs:
        if len(item_ids) != len(images):
            raise DataError(f"Channel '{channel.name}': {name} has {len(item_ids)} ids for {len(images)} images")
        if images.dtype.kind not in "uif" or (images.dtype.kind == "f" and not np.isfinite(images).all()):
            raise DataError(f"Channel '{channel.name}': {name}'s images must be finite numbers, not {images.dtype}")
        flat = images.reshape(len(images), size).astype(np.float32) / (255.0 if uint8 else 1.0)
        for raw, row in zip(item_ids.tolist(), flat, strict=True):
            position = positions.get(id_key(raw))
            if position is None:
                unknown += 1
                continue
            out[position], has[position] = row, True
    if unknown:
        print(f"WARNING: {unknown} image(s) of items not in the catalogue ignored", flush=True)
    if not has.any():
        raise DataError(f"Channel '{channel.name}': no image belongs to an item of the items channel or the ratings")
    print(f"item images: {int(has.sum())} of {count} items, {size} numbers each", flush=True)
    return out, has, 255.0 if uint8 else 1.0


def catalogue_rows(
    features: ItemFeatures, rated_items: np.ndarray
) -> tuple[list, list[list[str]], list[str], np.ndarray, dict]:
    """(ids, words, titles, row of each rating's item, row of each id_key): the channel's items, then rated
    ones it lacks."""
    ids, words, titles = list(features.ids), list(features.words), list(features.titles)
    positions = {id_key(raw): row for row, raw in enumerate(ids)}
    missing = 0
    rows = np.empty(len(rated_items), dtype=np.int64)
    for n, raw in enumerate(rated_items.tolist()):
        key = id_key(raw)
        row = positions.get(key)
        if row is None:
            row = positions[key] = len(ids)
            ids.append(raw)
            words.append([])
            titles.append("")
            missing += 1
        rows[n] = row
    if missing:
        print(f"WARNING: {missing} rated item(s) have no features in the items channel: scored by id alone", flush=True)
    return ids, words, titles, rows, positions


def run(env: TrainingEnv, hp: dict, train_table: RatingTable, validation: RatingTable | None) -> None:
    if len(env.hosts) > 1:
        raise HyperparameterError("model", "dssm trains on one host; set instance_count=1")
    layers = hp["dssm_layers"]
    if not layers or any(not isinstance(units, int) or units < 1 for units in layers):
        raise HyperparameterError("dssm_layers", f"expected positive whole numbers of units, got {layers!r}")
    features = read_items(env)
    ids, words, titles, item_rows, positions = catalogue_rows(features, train_table.items)
    images = read_images(env, positions, len(ids))
    standardised = None
    if images is not None:
        raw, has, divisor = images
        mean = raw[has].mean(axis=0)
        scale = raw[has].std(axis=0) + 1e-3
        standardised = np.where(has[:, None], (raw - mean) / scale, 0.0).astype(np.float32)
    user_index, users = IdIndex.build(train_table.users)
    liked = train_table.ratings >= hp["positive_rating"]
    if not liked.any():
        raise DataError(f"no training rating is >= positive_rating ({hp['positive_rating']:g}): nothing to learn from")
    rated_item_rows = np.unique(item_rows)
    vocabulary = Vocabulary.build([words[row] for row in rated_item_rows.tolist()], hp["min_word_count"])
    item_tokens, known = vocabulary.encode(words)
    profile_tokens, profile_weights = profiles(
        len(vocabulary), item_tokens, users[liked], item_rows[liked], len(user_index), hp["profile_words"]
    )
    rated_indptr, rated_indices = rated_csr(users, item_rows, len(user_index))
    print(
        f"dssm: {len(train_table)} ratings ({int(liked.sum())} liked), {len(user_index)} users, {len(ids)} items "
        f"({len(ids) - len(rated_item_rows)} never rated), {len(vocabulary.words)} words, "
        f"{float(np.mean(known)):.1f} known words an item",
        flush=True,
    )
    evaluate = _evaluator(validation, user_index, ids, positions, users, item_rows, hp, profile_tokens, profile_weights,
                          item_tokens, standardised)  # fmt: skip

    from . import dssm_training, fitting

    config = dssm_training.DssmConfig(
        dim=hp["num_factors"],
        layers=layers,
        negatives=hp["negatives"],
        gamma=hp["gamma"],
        user_id_dropout=hp["user_id_dropout"],
        epochs=hp["epochs"],
        batch_size=hp["mini_batch_size"],
        learning_rate=hp["learning_rate"],
        wd=hp["wd"],
        seed=hp["seed"],
        checkpoint_dir=env.checkpoint_dir,
    )
    signature = {"model": "dssm", "users": len(user_index), "items": len(ids), "words": len(vocabulary.words),
                 "dim": config.dim, "layers": layers,
                 "image_size": None if standardised is None else standardised.shape[1]}  # fmt: skip
    result = dssm_training.fit(
        config,
        item_tokens,
        standardised,
        profile_tokens,
        profile_weights,
        users[liked],
        item_rows[liked],
        len(vocabulary),
        fitting.contexts(env.num_gpus)[0],
        evaluate,
        signature,
        env.is_master,
    )
    if result.interrupted:
        return
    image_rows = None
    if images is not None:
        result.towers.image_mean, result.towers.image_scale, result.towers.image_divisor = mean, scale, divisor
        image_rows = np.where(has[:, None], result.towers.image_rows(raw), 0.0).astype(np.float32)
    metrics = {"model": "dssm", "epochs": result.epochs_done, "history": result.history, **result.history[-1]}
    metrics.pop("epoch", None)
    if result.resumed_from is not None:
        metrics["resumed_from_epoch"] = result.resumed_from
    write_metrics(metrics, env.paths)
    model = DssmModel(
        towers=result.towers,
        vocabulary=vocabulary,
        users=user_index,
        user_profile_tokens=profile_tokens,
        user_profile_weights=profile_weights,
        item_ids=ids,
        item_tokens=item_tokens,
        titles=titles,
        rated_indptr=rated_indptr,
        rated_indices=rated_indices,
        settings={"hyperparameters": hp},
        item_image_rows=image_rows,
    )
    model.save(env.paths.model_dir)
    atomic.write_json(env.paths.model_dir / "metrics.json", metrics, default=float)
    print(f"model written to {env.paths.model_dir}", flush=True)


def _evaluator(validation, user_index, ids, positions, users, item_rows, hp, profile_tokens, profile_weights,
               item_tokens, standardised):  # fmt: skip
    if validation is None:
        return None
    v_users = user_index.lookup_array(validation.users)
    v_rows = np.array([positions.get(id_key(raw), -1) for raw in validation.items.tolist()], dtype=np.int64)
    usable = (v_users >= 0) & (v_rows >= 0) & (validation.ratings >= hp["positive_rating"])
    if not usable.any():
        log_metric("validation_liked_pairs", 0.0)
        return None
    rated = {(u, r) for u, r in zip(users.tolist(), item_rows.tolist(), strict=True)}
    rated |= {(u, r) for u, r in zip(v_users.tolist(), v_rows.tolist(), strict=True) if u >= 0 and r >= 0}
    pair_users, pair_rows = v_users[usable], v_rows[usable]
    candidates = sample_unrated(pair_users, pair_rows, rated, len(ids), EVAL_NEGATIVES, hp["seed"])
    print(f"validation: {len(pair_users)} liked pairs, each ranked against {EVAL_NEGATIVES} unrated items", flush=True)

    def evaluate(towers: Towers) -> dict[str, float]:
        user_vectors = towers.users(towers.user_embedding[pair_users], profile_tokens[pair_users],
                                    profile_weights[pair_users])  # fmt: skip
        image_rows = None if standardised is None else standardised @ towers.image_projection
        item_vectors = towers.items(item_tokens, image_rows)
        scores = np.einsum("nd,ncd->nc", user_vectors, item_vectors[candidates])
        hit, ndcg = hit_and_ndcg(scores, TOP_K)
        return {"validation_hr_at_10": hit, "validation_ndcg_at_10": ndcg}

    return evaluate


def sample_unrated(users: np.ndarray, positives: np.ndarray, rated: set, num_items: int, count: int,
                   seed: int) -> np.ndarray:  # fmt: skip
    """(pairs, 1 + count) catalogue rows: each pair's positive, then `count` rows its user rated nowhere
    (drawn with replacement only when the user left fewer than `count` unrated)."""
    rng = np.random.default_rng(seed + 7)
    by_user: dict[int, list[int]] = {}
    for user, row in rated:
        by_user.setdefault(user, []).append(row)
    out = np.empty((len(users), 1 + count), dtype=np.int64)
    out[:, 0] = positives
    unrated_of: dict[int, np.ndarray] = {}
    for n, user in enumerate(users.tolist()):
        if user not in unrated_of:
            unrated_of[user] = np.setdiff1d(np.arange(num_items), by_user.get(user, []))
        unrated = unrated_of[user]
        out[n, 1:] = rng.choice(unrated, count, replace=len(unrated) < count) if len(unrated) else positives[n]
    return out


def hit_and_ndcg(scores: np.ndarray, k: int) -> tuple[float, float]:
    """Column 0 is the positive; ties count against it."""
    ranks = (scores[:, 1:] >= scores[:, :1]).sum(axis=1)
    hit = ranks < k
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
