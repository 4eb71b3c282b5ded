"""The course's movie-retrieval Lambda function: the nearest movie to a movie in the embedding space.

Event (the course's test event): {"bucket_name": "my-bucket", "movie_id_to_examine": 2}  (optional "k": how
many neighbours to list, default 5). Environment: ENDPOINT_NAME, an endpoint that answers Object2Vec's
single-input inference, {"instances": [{"in1": [movie]}, ...]} -> {"predictions": [{"embeddings": [...]}, ...]}
(the course uses its recommendation model; any mxnet-mf model trained with Object2Vec's hyperparameters does).

What it does, as the course's function does:
- reads `object2vec/movielens/ml-100k/ua.base` (MovieLens ratings, tab-separated user, movie, rating,
  timestamp) and `object2vec/movielens/ml-100k/u.item` (latin-1, `|`-separated: id|title|...) from the bucket;
- writes the movie ids of ua.base, as a JSON list, to `object2vec/movielens/ml-100k/unique_movie_ids.txt`
  (the course's function does; a role that may not write there only gets a warning in the log);
- asks the endpoint for the embedding of every movie of ua.base in one request (should the endpoint answer
  413, too large, the request is split in halves until the answers fit);
- prints `The closest movie to <title> in the embedding space is <title>` (Euclidean distance, the movie
  itself excluded; ties go to the smaller id).
It returns, where the course's function returned {"statusCode": 200, "body": "\"Hello from Lambda!\""},
  {"statusCode": 200, "body": "<the fields below, as JSON>",
   "movie_id": 2, "title": "GoldenEye (1995)", "nearest_movie_id": 1013, "nearest_title": "...",
   "distance": 0.42, "nearest": [{"movie_id", "title", "distance"}, ... k of them],
   "message": "The closest movie to ... is ...", "candidates": 1679, "embedding_dim": 300,
   "endpoint": "recommendationModel"}
A failure raises, with a message that says what to fix: EventError (a bad event, or a movie id that is not in
ua.base), DataError (a bucket or key that does not exist or cannot be read, a malformed file),
ConfigurationError (ENDPOINT_NAME not set), EndpointError (the endpoint failed or answered without embeddings).

Self-contained (the standard library and boto3, no numpy layer), so the file can be pasted into a Lambda
console as it is (Python 3.10 or later). Clients are created the standard way (`boto3.client("s3")`,
`boto3.client("sagemaker-runtime")`), so AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, AWS_REGION
and the usual credential chain apply.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

DATA_DIR = "object2vec/movielens/ml-100k"
RATINGS_KEY = f"{DATA_DIR}/ua.base"
ITEMS_KEY = f"{DATA_DIR}/u.item"
UNIQUE_MOVIE_IDS_KEY = f"{DATA_DIR}/unique_movie_ids.txt"
DEFAULT_K = 5
MAX_K = 100


class EventError(ValueError):
    """The event is not one this function can answer."""


class DataError(RuntimeError):
    """A data file in the bucket is missing, unreadable or malformed."""


class ConfigurationError(RuntimeError):
    """The function's environment lacks a setting."""


class EndpointError(RuntimeError):
    """The endpoint failed or answered something other than embeddings."""


# The settings a client is made from; a warm Lambda reuses its clients while they stay the same.
CLIENT_ENVIRONMENT = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
)
_clients: dict[tuple[str | None, ...], Any] = {}


def _client(service: str) -> Any:
    """boto3's client of a service, created the standard way, once per set of the settings above."""
    key = (service, *(os.environ.get(variable) for variable in CLIENT_ENVIRONMENT))
    if key not in _clients:
        import boto3

        _clients[key] = boto3.client(service)
    return _clients[key]


class _TooLarge(Exception):
    """The endpoint's answer was too large (413): ask for fewer movies at once."""


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    bucket, movie, k = _parse_event(event)
    endpoint = os.environ.get("ENDPOINT_NAME")
    if not endpoint:
        raise ConfigurationError("set ENDPOINT_NAME to the endpoint that answers the movies' embeddings")
    s3 = _client("s3")
    movie_ids = unique_movie_ids(_read(s3, bucket, RATINGS_KEY).decode("latin-1"), RATINGS_KEY)
    if movie not in movie_ids:
        raise EventError(
            f"movie {movie} is not in s3://{bucket}/{RATINGS_KEY} ({len(movie_ids)} movies, "
            f"ids {movie_ids[0]} to {movie_ids[-1]}): choose a movie that was rated there"
        )
    if len(movie_ids) < 2:
        raise DataError(f"s3://{bucket}/{RATINGS_KEY} rates only movie {movie}: there is no other movie to compare")
    titles = movie_titles(_read(s3, bucket, ITEMS_KEY).decode("latin-1"), ITEMS_KEY)
    _save_unique_movie_ids(s3, bucket, movie_ids)
    embeddings = movie_embeddings(_client("sagemaker-runtime"), endpoint, movie_ids)
    ranked = nearest_movies(movie, embeddings)[:k]
    best_id, best_distance = ranked[0]

    def named(movie_id: int) -> str:
        return titles.get(movie_id) or f"movie {movie_id}"

    message = f"The closest movie to {named(movie)} in the embedding space is {named(best_id)}"
    print(message)
    result = {
        "movie_id": movie,
        "title": titles.get(movie),
        "nearest_movie_id": best_id,
        "nearest_title": titles.get(best_id),
        "distance": best_distance,
        "nearest": [{"movie_id": i, "title": titles.get(i), "distance": d} for i, d in ranked],
        "message": message,
        "candidates": len(movie_ids) - 1,
        "embedding_dim": len(embeddings[movie]),
        "endpoint": endpoint,
    }
    return {"statusCode": 200, "body": json.dumps(result), **result}


def _parse_event(event: Any) -> tuple[str, int, int]:
    if not isinstance(event, dict):
        raise EventError('the event must be an object such as {"bucket_name": "my-bucket", "movie_id_to_examine": 2}')
    bucket = event.get("bucket_name")
    if not isinstance(bucket, str) or not bucket:
        raise EventError('the event needs "bucket_name": the bucket that holds ' + f"{RATINGS_KEY} and {ITEMS_KEY}")
    movie = event.get("movie_id_to_examine")
    try:
        if isinstance(movie, bool) or movie is None or (isinstance(movie, float) and not movie.is_integer()):
            raise ValueError
        movie = int(movie)
    except (TypeError, ValueError):
        raise EventError(f'"movie_id_to_examine" must be a movie id such as 2 (see u.item), got {movie!r}') from None
    k = event.get("k", DEFAULT_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise EventError(f'"k" must be a whole number from 1 to {MAX_K}, got {k!r}')
    return bucket, movie, k


# ---------------------------------------------------------------------- S3 and the MovieLens files
def _read(s3: Any, bucket: str, key: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as err:
        details = getattr(err, "response", None)
        if not isinstance(details, dict):
            raise DataError(f"could not read s3://{bucket}/{key}: {type(err).__name__}: {err}") from err
        code = str(details.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            raise DataError(f'bucket {bucket!r} does not exist (the event\'s "bucket_name")') from err
        if code in ("NoSuchKey", "404"):
            raise DataError(
                f"s3://{bucket}/{key} does not exist: upload it there, e.g. "
                f"aws s3api put-object --bucket {bucket} --key {key} --body ml-100k/{key.rsplit('/', 1)[-1]}"
            ) from err
        if code in ("AccessDenied", "403"):
            raise DataError(f"reading s3://{bucket}/{key} was denied: the function's role needs s3:GetObject") from err
        message = details.get("Error", {}).get("Message", str(err))
        raise DataError(f"could not read s3://{bucket}/{key}: {code}: {message}") from err


def unique_movie_ids(ratings: str, name: str = "ua.base") -> list[int]:
    """The movie ids (second column) of MovieLens rating lines, ascending."""
    ids: set[int] = set()
    for number, line in enumerate(ratings.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            ids.add(int(fields[1]))
        except (IndexError, ValueError):
            raise DataError(
                f"{name} line {number}: expected user, movie, rating, timestamp separated by tabs, got {line[:80]!r}"
            ) from None
    if not ids:
        raise DataError(f"{name} holds no ratings")
    return sorted(ids)


def movie_titles(items: str, name: str = "u.item") -> dict[int, str]:
    """Movie id -> title from MovieLens u.item lines (id|title|release date|...)."""
    titles: dict[int, str] = {}
    for number, line in enumerate(items.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        try:
            titles[int(fields[0])] = fields[1]
        except (IndexError, ValueError):
            raise DataError(f"{name} line {number}: expected movie id|title|..., got {line[:80]!r}") from None
    return titles


def _save_unique_movie_ids(s3: Any, bucket: str, movie_ids: list[int]) -> None:
    try:
        s3.put_object(Bucket=bucket, Key=UNIQUE_MOVIE_IDS_KEY, Body=json.dumps(movie_ids).encode())
    except Exception as err:  # the course's function writes it; nothing here reads it back
        print(f"WARNING: could not write s3://{bucket}/{UNIQUE_MOVIE_IDS_KEY}: {err}")


# ---------------------------------------------------------------------- the endpoint
def movie_embeddings(runtime: Any, endpoint: str, movie_ids: list[int]) -> dict[int, list[float]]:
    """Each movie's embedding from the endpoint's in1 tower: one request for all, halved while too large."""
    try:
        rows = _embeddings(runtime, endpoint, movie_ids)
    except _TooLarge:
        rows = []
        pending = [movie_ids[: len(movie_ids) // 2], movie_ids[len(movie_ids) // 2 :]]
        while pending:
            chunk = pending.pop(0)
            try:
                rows.extend(_embeddings(runtime, endpoint, chunk))
            except _TooLarge:
                if len(chunk) == 1:
                    raise EndpointError(
                        f"endpoint {endpoint!r} answered 413 (too large) for the embedding of movie {chunk[0]} alone"
                    ) from None
                pending[:0] = [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
        print(f"the endpoint's answer for {len(movie_ids)} movies was too large; asked in parts")
    sizes = {len(row) for row in rows}
    if len(sizes) != 1:
        raise EndpointError(f"endpoint {endpoint!r} answered embeddings of different lengths: {sorted(sizes)}")
    return dict(zip(movie_ids, rows, strict=True))


def _embeddings(runtime: Any, endpoint: str, movie_ids: list[int]) -> list[list[float]]:
    body = json.dumps({"instances": [{"in1": [movie]} for movie in movie_ids]})
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint, ContentType="application/json", Accept="application/json", Body=body
        )
        payload = response["Body"].read()
    except Exception as err:
        details = getattr(err, "response", None)
        details = details if isinstance(details, dict) else {}
        status = details.get("OriginalStatusCode")
        if status is not None and int(status) == 413:
            raise _TooLarge from None
        if status is not None:
            raise EndpointError(
                f"endpoint {endpoint!r} answered {status}: {_container_message(details.get('OriginalMessage'))}"
            ) from err
        error = details.get("Error", {})
        reason = f"{error.get('Code')}: {error.get('Message')}" if error else f"{type(err).__name__}: {err}"
        raise EndpointError(f"InvokeEndpoint on endpoint {endpoint!r} failed: {reason}") from err
    try:
        predictions = json.loads(payload)["predictions"]
        rows = [[float(value) for value in prediction["embeddings"]] for prediction in predictions]
    except (ValueError, KeyError, TypeError) as err:
        raise EndpointError(
            f'endpoint {endpoint!r} did not answer {{"predictions": [{{"embeddings": [...]}}, ...]}} for in1-only '
            f"instances ({type(err).__name__}: {err}); its answer began {payload[:200]!r}. Is ENDPOINT_NAME a model "
            "that serves Object2Vec embeddings?"
        ) from None
    if len(rows) != len(movie_ids):
        raise EndpointError(f"endpoint {endpoint!r} answered {len(rows)} embeddings for {len(movie_ids)} movies")
    if not all(math.isfinite(value) for row in rows for value in row):
        raise EndpointError(f"endpoint {endpoint!r} answered embeddings that are not finite numbers")
    return rows


def _container_message(message: Any) -> str:
    try:
        decoded = json.loads(message)
        if isinstance(decoded, dict) and "error" in decoded:
            return str(decoded["error"])
    except (TypeError, ValueError):
        pass
    return str(message)[:500]


def nearest_movies(movie: int, embeddings: dict[int, list[float]]) -> list[tuple[int, float]]:
    """Every other movie with its Euclidean distance to `movie`, nearest first (ties: smaller id first)."""
    target = embeddings[movie]
    distances = [(other, math.dist(target, vector)) for other, vector in embeddings.items() if other != movie]
    return sorted(distances, key=lambda pair: (pair[1], pair[0]))
