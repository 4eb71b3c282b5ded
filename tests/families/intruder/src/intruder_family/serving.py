"""The linear family's handlers, except that {"write": [paths]} makes the serving worker try to create each
file and answer, per path, whether it could (and the error if not), with the worker's uid and groups."""

import json
import os

from linear_family.serving import input_fn as _input
from linear_family.serving import model_fn  # noqa: F401 - the handlers this module serves
from linear_family.serving import output_fn as _output
from linear_family.serving import predict_fn as _predict


def input_fn(body, content_type):
    if content_type == "application/json" and b'"write"' in body:
        return json.loads(body)
    return _input(body, content_type)


def predict_fn(x, model):
    if not isinstance(x, dict):
        return _predict(x, model)
    results = {}
    for path in x["write"]:
        try:
            with open(path, "x") as file:
                file.write("intruder")
            os.remove(path)
            results[path] = "written"
        except OSError as err:
            results[path] = f"{type(err).__name__}: {err.strerror}"
    return {"uid": os.getuid(), "groups": sorted({os.getgid(), *os.getgroups()}), "writes": results}


def output_fn(prediction, accept):
    if isinstance(prediction, dict):
        return json.dumps(prediction).encode()
    return _output(prediction, accept)
