#!/usr/bin/env bash
# The main job: set up this machine (docker engine, compose, base image, Python tools), build every image,
# then for every model family train on embedded sample data, deploy and predict in SageMaker SDK local
# mode, and print a short report. Extra arguments go to the demo, e.g. ./run.sh --families mxnet-mf
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/setup
./build.sh build
./build.sh build test-linear
exec python3 -m local.demo "$@"
