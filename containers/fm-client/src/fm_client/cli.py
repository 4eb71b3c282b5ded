"""fm-client command line: prepare data, train + deploy + evaluate, evaluate an existing endpoint.

  python -m fm_client mnist --data-dir ../shared/data/mnist --output data/mnist
  python -m fm_client movielens --ratings ml-100k/u.data --output data/ml
  python -m fm_client convert --features x.npy --labels y.npy --output data/mine --shards 4
  python -m fm_client train --train data/mnist/train --test data/mnist/test \\
      --hp feature_dim=784 --hp num_factors=10 --hp predictor_type=binary_classifier --evaluate
  python -m fm_client evaluate --endpoint my-fm-endpoint --test data/mnist/test --region eu-west-1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime.codecs.recordio_protobuf import CsrMatrix

from . import evaluate, mnist, movielens
from .recordio import read_recordio, write_shards


def _write(directory: Path, features: Any, labels: np.ndarray, shards: int) -> list[Path]:
    return write_shards(directory, features, labels, num_shards=shards)


def _load_matrix(path: Path) -> Any:
    """.npy (dense), .csv (dense, no header) or .npz written by scipy.sparse.save_npz (read without scipy)."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as saved:
            if "indptr" not in saved or str(saved["format"]) != "csr":
                raise ValueError(f"{path}: expected a CSR matrix saved with scipy.sparse.save_npz")
            return CsrMatrix(saved["indptr"], saved["indices"], saved["data"], int(saved["shape"][1]))
    return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)


def _test_set(directory: Path) -> tuple[Any, np.ndarray]:
    parts = [read_recordio(p) for p in sorted(Path(directory).glob("*.rec"))]
    if not parts:
        raise SystemExit(f"no .rec files in {directory}")
    labels = np.concatenate([p.labels for p in parts])
    if parts[0].is_sparse:
        offsets = np.cumsum([0] + [p.sparse.indices.size for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.sparse.indptr[1:] + o for p, o in zip(parts, offsets, strict=True)])
        csr = CsrMatrix(
            indptr,
            np.concatenate([p.sparse.indices for p in parts]),
            np.concatenate([p.sparse.values for p in parts]),
            parts[0].sparse.num_cols,
        )
        return csr, labels
    return np.vstack([p.features for p in parts]), labels


def _hyperparameters(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--hp takes name=value, got {pair!r}")
        out[name.strip()] = value.strip()
    return out


def cmd_mnist(args: argparse.Namespace) -> None:
    for split, limit in (("train", args.train_limit), ("test", args.test_limit)):
        x, y = mnist.load_binary(args.data_dir, split, args.digit, limit)
        paths = _write(args.output / split, x, y, args.shards)
        print(f"{split}: {len(y)} records, {int(y.sum())} positives -> {len(paths)} file(s) in {args.output / split}")
    print("feature_dim=784")


def cmd_movielens(args: argparse.Namespace) -> None:
    ratings = movielens.read_ratings(args.ratings)
    if args.test_ratings:
        train, test = ratings, movielens.read_ratings(args.test_ratings)
    else:
        train, test = movielens.split(ratings, args.test_fraction, args.seed)
    encoding = movielens.OneHotEncoding.fit(train)
    for name, part in (("train", train), ("test", test)):
        features = encoding.transform(part.users, part.items)
        _write(args.output / name, features, movielens.labels_of(part, args.binary_threshold), args.shards)
        print(f"{name}: {len(part)} ratings -> {args.output / name}")
    (args.output / "encoding.json").write_text(encoding.to_json())
    print(f"feature_dim={encoding.feature_dim}")


def cmd_convert(args: argparse.Namespace) -> None:
    features = _load_matrix(args.features)
    labels = None if args.labels is None else _load_matrix(args.labels).ravel()
    paths = write_shards(args.output, features, labels, num_shards=args.shards)
    print(f"{len(paths)} file(s) in {args.output}")


def _evaluate_and_report(predictor: Any, test_dir: Path, report_path: Path | None, batch_size: int) -> None:
    features, labels = _test_set(test_dir)
    report = evaluate.evaluate_endpoint(predictor, features, labels, batch_size)
    print(evaluate.format_table(report))
    if report_path:
        evaluate.save_report(report, report_path)


def cmd_train(args: argparse.Namespace) -> None:
    from .launcher import FMLauncher

    launcher = FMLauncher(
        image=args.image,
        local=not args.aws,
        region=args.region,
        role=args.role,
        bucket=args.bucket,
        instance_type=args.instance_type,
    )
    launcher.fit(_hyperparameters(args.hp), args.train, args.test, instance_count=args.instance_count)
    print(f"model: {launcher.estimator.model_data}")
    if not (args.deploy or args.evaluate):
        return
    predictor = launcher.deploy()
    try:
        print(f"endpoint: {predictor.endpoint_name}")
        if args.evaluate:
            _evaluate_and_report(predictor, args.test, args.report, args.batch_size)
    finally:
        if not args.keep_endpoint:
            launcher.delete()


def cmd_evaluate(args: argparse.Namespace) -> None:
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer

    from .launcher import aws_session

    predictor = Predictor(
        args.endpoint, aws_session(args.region), serializer=JSONSerializer(), deserializer=JSONDeserializer()
    )
    _evaluate_and_report(predictor, args.test, args.report, args.batch_size)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="fm-client", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = main.add_subparsers(dest="command", required=True)

    p = sub.add_parser("mnist", help="MNIST IDX files -> 'is it a <digit>' dense recordIO-protobuf")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--digit", type=int, default=0)
    p.add_argument("--train-limit", type=int)
    p.add_argument("--test-limit", type=int)
    p.add_argument("--shards", type=int, default=1)
    p.set_defaults(run=cmd_mnist)

    p = sub.add_parser("movielens", help="MovieLens ratings -> sparse one-hot user+item recordIO-protobuf")
    p.add_argument("--ratings", type=Path, required=True, help="u.data, ua.base, ratings.dat or ratings.csv")
    p.add_argument("--test-ratings", type=Path, help="e.g. ua.test; otherwise a random split")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--binary-threshold", type=float, help="labels 1 for rating >= this (binary_classifier)")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--shards", type=int, default=1)
    p.set_defaults(run=cmd_movielens)

    p = sub.add_parser("convert", help=".npy / .csv / scipy .npz -> recordIO-protobuf shards")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--labels", type=Path)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--shards", type=int, default=1)
    p.set_defaults(run=cmd_convert)

    for name, run in (("train", cmd_train), ("evaluate", cmd_evaluate)):
        p = sub.add_parser(name, help="fit (+ deploy, evaluate)" if name == "train" else "evaluate an endpoint")
        p.add_argument("--test", type=Path, required=name == "evaluate", help="directory of .rec files")
        p.add_argument("--region")
        p.add_argument("--report", type=Path, help="save the evaluation as JSON here")
        p.add_argument("--batch-size", type=int, default=500)
        p.set_defaults(run=run)
        if name == "evaluate":
            p.add_argument("--endpoint", required=True)
            continue
        p.add_argument("--train", type=Path, required=True)
        p.add_argument("--hp", action="append", default=[], help="hyperparameter name=value (repeat)")
        p.add_argument("--image", help="'builtin' for SageMaker's algorithm, an image URI, default: byoc-fm")
        p.add_argument("--aws", action="store_true", help="run on SageMaker instead of local mode")
        p.add_argument("--role")
        p.add_argument("--bucket")
        p.add_argument("--instance-type")
        p.add_argument("--instance-count", type=int, default=1)
        p.add_argument("--deploy", action="store_true")
        p.add_argument("--evaluate", action="store_true", help="deploy, evaluate on --test, delete the endpoint")
        p.add_argument("--keep-endpoint", action="store_true")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"fm-client: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
