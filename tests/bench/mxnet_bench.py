#!/usr/bin/env python3
"""MXNet 1.9.1 CPU anchor: the Keras mnist_cnn model as a hybridized Gluon network, timed like
../shared/anchors/keras_bench.py --steps (warm-up, then N steps of batch 128).

Same model, loss and optimizer: conv32-conv64 (3x3, relu) - maxpool 2 - dropout .25 - dense 128
(relu) - dropout .5 - dense 10, softmax cross-entropy, Adadelta(lr 1.0, rho 0.95, eps 1e-7).
Prints `mxnet samples_per_s=<float> step_ms=<float>` last.
Usage: mxnet_bench.py [--steps 60] [--warmup 10] [--data ../shared/data/mnist.npz]
Needs: python3 -m venv V && V/bin/pip install mxnet==1.9.1 numpy==1.23.5
"""
import argparse
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=60)
p.add_argument("--warmup", type=int, default=10)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--data", default="../shared/data/mnist.npz")
a = p.parse_args()

mx.random.seed(1)
with np.load(a.data) as d:
    x = (d["x_train"].astype("float32") / 255.0).reshape(-1, 1, 28, 28)  # NCHW for MXNet
    y = d["y_train"].astype("float32")

net = gluon.nn.HybridSequential()
net.add(
    gluon.nn.Conv2D(32, 3, activation="relu"),
    gluon.nn.Conv2D(64, 3, activation="relu"),
    gluon.nn.MaxPool2D(2),
    gluon.nn.Dropout(0.25),
    gluon.nn.Flatten(),
    gluon.nn.Dense(128, activation="relu"),
    gluon.nn.Dropout(0.5),
    gluon.nn.Dense(10),
)
net.initialize(mx.init.Xavier())
net.hybridize(static_alloc=True, static_shape=True)
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), "adadelta", {"learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-7})
batches = len(x) // a.batch


def step(i):
    s = (i % batches) * a.batch
    data, label = mx.nd.array(x[s:s + a.batch]), mx.nd.array(y[s:s + a.batch])
    with autograd.record():
        loss = loss_fn(net(data), label)
    loss.backward()
    trainer.step(a.batch)
    return loss


for i in range(a.warmup):
    step(i)
mx.nd.waitall()
t0 = time.perf_counter()
for i in range(a.steps):
    step(a.warmup + i)
mx.nd.waitall()
dt = time.perf_counter() - t0
print(f"mxnet samples_per_s={a.steps * a.batch / dt:.1f} step_ms={dt * 1000 / a.steps:.3f}", flush=True)
