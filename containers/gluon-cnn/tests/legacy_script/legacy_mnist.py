"""A training script in the old SageMaker MXNet interface (as in the course's Gluon MNIST lab): the container
calls train(...) and save(net, model_dir); serving calls model_fn(model_dir) and transform_fn(...).
It reads the MNIST IDX files of the 'training' and 'testing' channels itself."""

import gzip
import json
import logging
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

logging.basicConfig(level=logging.INFO)


def train(channel_input_dirs, hyperparameters, hosts, num_gpus, **kwargs):
    batch_size = hyperparameters.get("batch_size", 100)
    epochs = hyperparameters.get("epochs", 10)
    learning_rate = hyperparameters.get("learning_rate", 0.1)
    momentum = hyperparameters.get("momentum", 0.9)
    ctx = mx.gpu() if num_gpus > 0 else mx.cpu()
    kvstore = "local" if len(hosts) == 1 else "dist_sync"
    train_data = load(channel_input_dirs["training"], "train", batch_size, shuffle=True)
    test_data = load(channel_input_dirs["testing"], "t10k", batch_size, shuffle=False)

    net = gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(gluon.nn.Dense(128, activation="relu"))
        net.add(gluon.nn.Dense(64, activation="relu"))
        net.add(gluon.nn.Dense(10))
    net.collect_params().initialize(mx.init.Xavier(magnitude=2.24), ctx=ctx)
    trainer = gluon.Trainer(
        net.collect_params(), "sgd", {"learning_rate": learning_rate, "momentum": momentum}, kvstore=kvstore
    )
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for epoch in range(epochs):
        metric = mx.metric.Accuracy()
        for data, label in train_data:
            data, label = data.as_in_context(ctx), label.as_in_context(ctx)
            with autograd.record():
                output = net(data)
                L = loss(output, label)
            L.backward()
            trainer.step(data.shape[0])
            metric.update([label], [output])
        name, acc = metric.get()
        print(f"[Epoch {epoch}] training: {name}={acc}")
        print(f"[Epoch {epoch}] validation: accuracy={test(ctx, net, test_data)}")
    return net


def save(net, model_dir):
    y = net(mx.sym.var("data"))
    y.save(os.path.join(model_dir, "model.json"))
    net.collect_params().save(os.path.join(model_dir, "model.params"))


def load(directory, split, batch_size, shuffle):
    images = gzip.open(os.path.join(directory, f"{split}-images-idx3-ubyte.gz")).read()
    labels = gzip.open(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz")).read()
    x = np.frombuffer(images, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.float32)
    return gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def test(ctx, net, test_data):
    metric = mx.metric.Accuracy()
    for data, label in test_data:
        output = net(data.as_in_context(ctx))
        metric.update([label.as_in_context(ctx)], [output])
    return metric.get()[1]


def model_fn(model_dir):
    return gluon.SymbolBlock.imports(
        os.path.join(model_dir, "model.json"), ["data"], os.path.join(model_dir, "model.params"), ctx=mx.cpu()
    )


def transform_fn(net, data, input_content_type, output_content_type):
    parsed = json.loads(data)
    nda = mx.nd.array(parsed).reshape((-1, 784))
    prediction = mx.nd.argmax(net(nda), axis=1)
    return json.dumps(prediction.asnumpy().astype(int).tolist()), output_content_type
