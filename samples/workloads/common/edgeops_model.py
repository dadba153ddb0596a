# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample model: logistic regression flagging an anomalous reading of a production-line motor.

Shared by the predictor (inference) and the trainer (data, training, checkpoints). Standard
library only, pure functions except the file helpers at the end.

Model file (JSON):
  {"format": 1, "version": "1.0.0", "features": [...], "mean": [...], "scale": [...],
   "weights": [...], "bias": float, "threshold": 0.5, "trained": {...}}
Inputs are standardized with mean/scale before the weights apply.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import json
import math
import os
import random
import re
import tempfile

MODEL_FORMAT = 1
FEATURES = ("vibration_mm_s", "temperature_c", "current_a")
# (mean, standard deviation) of each feature for a healthy motor and a failing one.
NORMAL_READING = ((2.0, 0.6), (60.0, 4.0), (10.0, 0.8))
ANOMALOUS_READING = ((5.5, 1.5), (74.0, 6.0), (12.5, 1.2))
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d{6})\.json$")


class ModelError(ValueError):
    """A model file or an input is not usable; the message names the key."""


def sigmoid(z):
    # Split so that math.exp never overflows for large |z|.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def generate_readings(count, seed, anomaly_rate=0.3):
    """Deterministic labelled readings: list of (features, label) with label 1 = anomaly."""
    rng = random.Random(seed)
    rows = []
    for dummy in range(count):
        label = 1 if rng.random() < anomaly_rate else 0
        dist = ANOMALOUS_READING if label else NORMAL_READING
        rows.append(([round(rng.gauss(mu, sd), 3) for mu, sd in dist], label))
    return rows


def standardization(rows):
    """Per-feature mean and scale (standard deviation, never 0) of the training rows."""
    count = len(rows)
    means = [sum(x[i] for x, dummy in rows) / count for i in range(len(FEATURES))]
    scales = []
    for i, mean in enumerate(means):
        var = sum((x[i] - mean) ** 2 for x, dummy in rows) / count
        scales.append(math.sqrt(var) or 1.0)
    return means, scales


def new_model(rows, version):
    """An untrained model (zero weights) standardized on the rows."""
    means, scales = standardization(rows)
    return {"format": MODEL_FORMAT, "version": version, "features": list(FEATURES), "mean": means,
            "scale": scales, "weights": [0.0] * len(FEATURES), "bias": 0.0, "threshold": 0.5, "trained": {}}


def _standardize(model, features):
    return [(x - m) / s for x, m, s in zip(features, model["mean"], model["scale"])]


def score(model, features):
    """Probability that the reading is anomalous."""
    z = model["bias"] + sum(w * x for w, x in zip(model["weights"], _standardize(model, features)))
    return sigmoid(z)


def predict(model, features):
    """{"prediction": "anomaly"|"normal", "score": probability}."""
    features = check_features(model, features)
    probability = score(model, features)
    return {"prediction": "anomaly" if probability >= model["threshold"] else "normal",
            "score": round(probability, 6)}


def log_loss(model, rows):
    """Mean binary cross-entropy of the model on the rows."""
    eps = 1e-12
    total = 0.0
    for features, label in rows:
        p = min(max(score(model, features), eps), 1 - eps)
        total -= label * math.log(p) + (1 - label) * math.log(1 - p)
    return total / len(rows)


def train(model, rows, epochs, learning_rate=0.5, on_epoch=None):
    """Full-batch gradient descent; returns a new model and the loss after each epoch."""
    model = json.loads(json.dumps(model))
    standardized = [(_standardize(model, x), y) for x, y in rows]
    count = len(rows)
    losses = []
    for epoch in range(1, epochs + 1):
        grad_w = [0.0] * len(model["weights"])
        grad_b = 0.0
        for xs, label in standardized:
            err = sigmoid(model["bias"] + sum(w * x for w, x in zip(model["weights"], xs))) - label
            grad_b += err
            for i, x in enumerate(xs):
                grad_w[i] += err * x
        model["weights"] = [w - learning_rate * g / count for w, g in zip(model["weights"], grad_w)]
        model["bias"] -= learning_rate * grad_b / count
        loss = log_loss(model, rows)
        losses.append(loss)
        if on_epoch:
            on_epoch(epoch, loss)
    return model, losses


def accuracy(model, rows):
    hits = sum(1 for x, y in rows if (score(model, x) >= model["threshold"]) == bool(y))
    return hits / len(rows)


def check_features(model, features):
    """Floats for the model's features, or ModelError naming `features`."""
    expected = len(model["features"])
    if not isinstance(features, (list, tuple)) or len(features) != expected:
        raise ModelError("features must be a list of %d numbers (%s)" % (expected, ", ".join(model["features"])))
    try:
        values = [float(x) for x in features]
    except (TypeError, ValueError):
        raise ModelError("features must be numbers, got %r" % (features,))
    if any(isinstance(x, bool) or math.isnan(v) or math.isinf(v) for x, v in zip(features, values)):
        raise ModelError("features must be finite numbers, got %r" % (features,))
    return values


def check_model(model, source="model"):
    """Raise ModelError naming the key (and source) if the model cannot be used."""
    if not isinstance(model, dict):
        raise ModelError("%s: not a JSON object" % source)
    if model.get("format") != MODEL_FORMAT:
        raise ModelError("%s: format must be %d, got %r" % (source, MODEL_FORMAT, model.get("format")))
    count = len(model.get("features") or [])
    for key in ("mean", "scale", "weights"):
        values = model.get(key)
        if not isinstance(values, list) or len(values) != count or not all(isinstance(v, (int, float)) for v in values):
            raise ModelError("%s: %s must be a list of %d numbers" % (source, key, count))
    if any(v == 0 for v in model["scale"]):
        raise ModelError("%s: scale must not contain 0" % source)
    for key in ("bias", "threshold"):
        if not isinstance(model.get(key), (int, float)):
            raise ModelError("%s: %s must be a number" % (source, key))
    if not isinstance(model.get("version"), str):
        raise ModelError("%s: version must be a string" % source)
    return model


def load_model(path):
    with open(path) as handle:
        try:
            model = json.load(handle)
        except ValueError as err:
            raise ModelError("%s: not valid JSON (%s)" % (path, err))
    return check_model(model, path)


def write_readings_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(FEATURES) + ["anomaly"])
        for features, label in rows:
            writer.writerow(features + [label])


def read_readings_csv(path):
    rows = []
    with open(path, newline="") as handle:
        for line, record in enumerate(csv.DictReader(handle), start=2):
            try:
                rows.append(([float(record[name]) for name in FEATURES], int(record["anomaly"])))
            except (KeyError, TypeError, ValueError):
                raise ModelError("%s line %d: needs numeric columns %s and anomaly (0/1)" % (path, line, ", ".join(FEATURES)))
    if not rows:
        raise ModelError("%s: no readings" % path)
    return rows


def write_json_atomic(path, data):
    """Write a file so that readers see the old or the new content, never a partial one.

    tmp file in the same directory + fsync + rename + fsync of the directory (so the rename
    itself survives a power loss).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def checkpoints(models_dir):
    """Numbers of the checkpoints in the directory, oldest first."""
    found = []
    for name in os.listdir(models_dir):
        match = CHECKPOINT_RE.match(name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def save_checkpoint(models_dir, model, keep):
    """Write checkpoint-NNNNNN.json and current.json, then remove all but the last `keep` checkpoints.

    Returns the checkpoint number.
    """
    if keep < 1:
        raise ModelError("keep must be at least 1, got %r" % (keep,))
    existing = checkpoints(models_dir)
    number = existing[-1] + 1 if existing else 1
    write_json_atomic(os.path.join(models_dir, "checkpoint-%06d.json" % number), model)
    write_json_atomic(os.path.join(models_dir, "current.json"), model)
    for old in checkpoints(models_dir)[:-keep]:
        os.unlink(os.path.join(models_dir, "checkpoint-%06d.json" % old))
    return number
