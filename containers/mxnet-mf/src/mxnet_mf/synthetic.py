"""MovieLens-shaped rating data with a planted low-rank structure, for tests, benchmarks and smoke runs.

No MovieLens file may be redistributed, so quality is checked on data whose truth is known: ratings are
global mean + user bias + item bias + <user factors, item factors> + noise, rounded to 1..5 stars, with
long-tailed user activity and item popularity like ML-100K. `planted_pairs` gives items twins (the same
factors and bias), so a similar-items query has a known nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SyntheticRatings:
    users: np.ndarray  # 1-based MovieLens-style ids
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    twins: list[tuple[int, int]]  # (item id, its planted twin's item id)
    num_users: int
    num_items: int

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[SyntheticRatings, SyntheticRatings]:
        order = np.random.default_rng(seed).permutation(len(self.ratings))
        cut = int(len(order) * (1 - test_fraction))
        return self._take(order[:cut]), self._take(order[cut:])

    def _take(self, rows: np.ndarray) -> SyntheticRatings:
        rows = np.sort(rows)
        return SyntheticRatings(
            self.users[rows],
            self.items[rows],
            self.ratings[rows],
            self.timestamps[rows],
            self.twins,
            self.num_users,
            self.num_items,
        )

    def global_mean_rmse(self, reference: SyntheticRatings | None = None) -> float:
        """RMSE of always predicting the mean rating (of `reference`, default: of this set)."""
        mean = float(np.mean((reference or self).ratings))
        return float(np.sqrt(np.mean((self.ratings - mean) ** 2)))

    def write(self, path: Path, fmt: str = "u.data") -> Path:
        """u.data (tab, no header), ratings.dat (::) or ratings.csv (header), as MovieLens ships them."""
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = zip(
            self.users.tolist(), self.items.tolist(), self.ratings.tolist(), self.timestamps.tolist(), strict=False
        )
        if fmt == "u.data":
            lines = [f"{u}\t{i}\t{r:g}\t{t}" for u, i, r, t in columns]
        elif fmt == "ratings.dat":
            lines = [f"{u}::{i}::{r:g}::{t}" for u, i, r, t in columns]
        elif fmt == "ratings.csv":
            lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:.1f},{t}" for u, i, r, t in columns]
        else:
            raise ValueError(f"unknown format {fmt!r}")
        path.write_text("\n".join(lines) + "\n")
        return path

    def write_titles(self, path: Path, fmt: str = "u.item") -> Path:
        """Titles 'Movie <id> (1990)': u.item (| separated, latin-1) or movies.csv (header, quoted)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = range(1, self.num_items + 1)
        if fmt == "u.item":
            text = "".join(f"{i}|{title_of(i)}|01-Jan-1990||http://example.invalid/{i}|0|1|0\n" for i in ids)
            path.write_bytes(text.encode("latin-1"))
        elif fmt == "movies.csv":
            text = "movieId,title,genres\n" + "".join(f'{i},"{title_of(i)}",Drama|Comedy\n' for i in ids)
            path.write_text(text)
        else:
            raise ValueError(f"unknown format {fmt!r}")
        return path


def title_of(item_id: int) -> str:
    return f"Movie {item_id}, the sequel (1990)"


def generate(
    num_users: int = 943,
    num_items: int = 1682,
    num_ratings: int = 100_000,
    rank: int = 8,
    noise: float = 0.8,
    factor_scale: float = 0.5,
    planted_pairs: int = 0,
    min_per_user: int = 20,
    seed: int = 0,
) -> SyntheticRatings:
    """Defaults mimic ML-100K: 943 users x 1682 items, 100k ratings, mean ~3.5, std ~1.1, >= 20 per user."""
    rng = np.random.default_rng(seed)
    if num_ratings < num_users * min_per_user:
        min_per_user = max(1, num_ratings // num_users)
    # Unit item vectors (their direction is what cosine similarity sees); <u, i> then has std factor_scale.
    user_factors = rng.normal(0, factor_scale, (num_users, rank))
    item_factors = rng.normal(0, 1.0, (num_items, rank))
    item_factors /= np.linalg.norm(item_factors, axis=1, keepdims=True)
    user_bias = rng.normal(0, 0.35, num_users)
    item_bias = rng.normal(0, 0.45, num_items)
    # Twins: the second item of each pair copies the first's factors and bias. Pairs are drawn among the
    # popular half so both have enough ratings to be learned.
    popularity = rng.permutation(num_items)  # popularity rank -> item index
    twins = []
    for pair in range(planted_pairs):
        a, b = popularity[2 * pair], popularity[2 * pair + 1]
        item_factors[b], item_bias[b] = item_factors[a], item_bias[a]
        twins.append((int(a) + 1, int(b) + 1))
    item_weight = np.empty(num_items)
    item_weight[popularity] = 1.0 / np.arange(1, num_items + 1) ** 1.0
    activity = rng.lognormal(0, 1.0, num_users)
    extra = rng.multinomial(num_ratings - num_users * min_per_user, activity / activity.sum())
    counts = np.minimum(min_per_user + extra, num_items)
    users, items = [], []
    for user, count in enumerate(counts):
        chosen = rng.choice(num_items, size=count, replace=False, p=item_weight / item_weight.sum())
        users.append(np.full(count, user))
        items.append(chosen)
    u, i = np.concatenate(users), np.concatenate(items)
    truth = 3.53 + user_bias[u] + item_bias[i] + np.sum(user_factors[u] * item_factors[i], axis=1)
    ratings = np.clip(np.rint(truth + rng.normal(0, noise, len(u))), 1, 5).astype(np.float32)
    timestamps = 874_724_710 + rng.integers(0, 20_000_000, len(u))
    return SyntheticRatings(u + 1, i + 1, ratings, timestamps, twins, num_users, num_items)


# ---------------------------------------------------------------------- content (DSSM)
GENRE_WORDS = {
    "Space": ("star", "galaxy", "rocket", "planet", "alien", "orbit"),
    "Western": ("cowboy", "sheriff", "saloon", "outlaw", "desert", "ranch"),
    "Romance": ("love", "heart", "kiss", "wedding", "paris", "letter"),
    "Horror": ("ghost", "blood", "night", "haunted", "scream", "zombie"),
    "Cooking": ("kitchen", "chef", "recipe", "bake", "feast", "spice"),
    "Sports": ("goal", "champion", "team", "race", "match", "coach"),
}
FILLER_WORDS = ("the", "return", "last", "of", "day", "city", "story", "big", "little", "man")


@dataclass(frozen=True)
class ContentData:
    """Items with planted genres (title words and genre names tell them apart) and users who like one or
    two genres: they rate their genres' items 4-5 and the others 1-3. `items` are the catalogue's rows
    (item_id, title, genres, year); `genre_of` each item's first genre; `likes` each user's genres."""

    ratings: SyntheticRatings
    items: list[dict]
    genre_of: dict[int, str]
    likes: dict[int, tuple[str, ...]]

    def write_images(self, path: Path, seed: int = 0) -> Path:
        """item_ids + images (uint8, 16 numbers an item) in an .npz, as an item_images channel holds them."""
        rng = np.random.default_rng(seed)
        ids = np.array([item["item_id"] for item in self.items])
        images = np.stack([genre_image(self.genre_of[int(i)], rng) for i in ids])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, item_ids=ids, images=images)
        return path

    def write_items(self, path: Path, fmt: str = "movies.csv") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "movies.csv":
            rows = [f'{i["item_id"]},"{i["title"]} ({i["year"]})",{"|".join(i["genres"])}' for i in self.items]
            path.write_text("movieId,title,genres\n" + "\n".join(rows) + "\n")
        elif fmt == "jsonl":
            import json

            path.write_text("".join(json.dumps(item) + "\n" for item in self.items))
        else:
            raise ValueError(f"unknown format {fmt!r}")
        return path


def genre_image(genre: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A stand-in for a poster: uint8 numbers whose two brightest places tell the genre."""
    image = rng.integers(0, 60, size).astype(np.uint8)
    at = 2 * list(GENRE_WORDS).index(genre)
    image[at : at + 2] = rng.integers(180, 256, 2)
    return image


def content_item(item_id: int, genre: str, rng: np.random.Generator, second: str | None = None) -> dict:
    words = list(rng.choice(GENRE_WORDS[genre], 2, replace=False)) + [str(rng.choice(FILLER_WORDS))]
    rng.shuffle(words)
    genres = [genre] + ([second] if second and second != genre else [])
    return {
        "item_id": item_id,
        "title": " ".join(words).title(),
        "genres": genres,
        "year": int(rng.integers(1970, 2020)),
    }


def generate_content(num_users: int = 300, num_items: int = 360, per_user: int = 40, seed: int = 0) -> ContentData:
    rng = np.random.default_rng(seed)
    names = list(GENRE_WORDS)
    items, genre_of = [], {}
    for item_id in range(1, num_items + 1):
        genre = names[(item_id - 1) % len(names)]
        second = str(rng.choice(names)) if rng.random() < 0.2 else None
        items.append(content_item(item_id, genre, rng, second))
        genre_of[item_id] = genre
    by_genre = {g: [i for i, gi in genre_of.items() if gi == g] for g in names}
    likes, users, rated, ratings = {}, [], [], []
    for user in range(1, num_users + 1):
        liked = tuple(rng.choice(names, 1 + int(rng.random() < 0.3), replace=False).tolist())
        likes[user] = liked
        pool_liked = [i for g in liked for i in by_genre[g]]
        pool_other = [i for g in names if g not in liked for i in by_genre[g]]
        n_liked = int(per_user * 0.6)
        chosen = list(rng.choice(pool_liked, n_liked, replace=False)) + list(
            rng.choice(pool_other, per_user - n_liked, replace=False)
        )
        for item in chosen:
            users.append(user)
            rated.append(int(item))
            ratings.append(float(rng.integers(4, 6) if genre_of[int(item)] in liked else rng.integers(1, 4)))
    u, i = np.array(users), np.array(rated)
    table = SyntheticRatings(u, i, np.array(ratings, np.float32), 874_724_710 + rng.integers(0, 10**7, len(u)), [],
                             num_users, num_items)  # fmt: skip
    return ContentData(table, items, genre_of, likes)
