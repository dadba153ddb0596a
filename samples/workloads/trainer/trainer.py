# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sample training worker: trains the predictor's model on local data and writes checkpoints.

Every TRAINER_INTERVAL seconds: read $TRAINER_DATA_DIR/readings.csv (when missing, readings are
generated deterministically from TRAINER_SEED and written there, or kept in memory if the
directory is read-only), run TRAINER_EPOCHS epochs of gradient descent from the current model,
log the loss of each epoch, and write checkpoint-NNNNNN.json and current.json atomically to
$TRAINER_MODELS_DIR, keeping the last TRAINER_KEEP checkpoints.

`python3 trainer.py --once --out FILE --version V` trains one model from scratch and writes it to
FILE: this is how the models baked into the predictor images were made.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import logging
import os
import sys
import threading

import edgeops_model as model_lib
import edgeops_service as service

LOG = logging.getLogger("edgeops")


def settings():
    return {
        "interval": service.env_int("TRAINER_INTERVAL", 60, 1, 86400),
        "epochs": service.env_int("TRAINER_EPOCHS", 30, 1, 100000),
        "keep": service.env_int("TRAINER_KEEP", 5, 1, 1000),
        "seed": service.env_int("TRAINER_SEED", 42),
        "samples": service.env_int("TRAINER_SAMPLES", 1000, 10, 10 ** 7),
        "learning_rate": service.env_float("TRAINER_LEARNING_RATE", 0.5, 1e-6, 100.0),
        "data_dir": os.environ.get("TRAINER_DATA_DIR", "/data"),
        "models_dir": os.environ.get("TRAINER_MODELS_DIR", "/models"),
    }


def load_or_generate_readings(data_dir, seed, samples):
    path = os.path.join(data_dir, "readings.csv")
    if os.path.exists(path):
        return model_lib.read_readings_csv(path), path
    rows = model_lib.generate_readings(samples, seed)
    try:
        model_lib.write_readings_csv(path, rows)
        LOG.info("no %s: generated %d readings from seed %d and wrote them there", path, samples, seed)
        return rows, path
    except OSError as err:
        LOG.info("no %s: using %d readings generated from seed %d (not saved: %s)", path, samples, seed, err.strerror)
        return rows, "generated:seed=%d" % seed


def starting_model(models_dir, rows):
    """Continue from current.json when it is usable, else start from zero weights."""
    current = os.path.join(models_dir, "current.json")
    if os.path.exists(current):
        try:
            return model_lib.load_model(current)
        except model_lib.ModelError as err:
            LOG.error("starting from scratch, %s", err)
    return model_lib.new_model(rows, "%s+train" % service.version())


def train_once(conf):
    """One training round; returns the checkpoint number."""
    rows, source = load_or_generate_readings(conf["data_dir"], conf["seed"], conf["samples"])
    model = starting_model(conf["models_dir"], rows)
    previous = model_lib.checkpoints(conf["models_dir"])
    number = (previous[-1] + 1) if previous else 1

    def log_epoch(epoch, loss):
        LOG.info("checkpoint %d epoch %d/%d loss %.6f", number, epoch, conf["epochs"], loss)

    model, losses = model_lib.train(model, rows, conf["epochs"], conf["learning_rate"], on_epoch=log_epoch)
    model["version"] = "%s+ckpt.%d" % (service.version(), number)
    model["trained"] = {"epochs": conf["epochs"], "loss": round(losses[-1], 6), "samples": len(rows),
                        "data": source, "accuracy": round(model_lib.accuracy(model, rows), 4)}
    written = model_lib.save_checkpoint(conf["models_dir"], model, conf["keep"])
    LOG.info("wrote checkpoint %d (model %s, loss %.6f, accuracy %.3f)", written, model["version"], losses[-1],
             model["trained"]["accuracy"])
    return written


def run_forever(conf):
    stop = threading.Event()
    service.on_sigterm(stop.set)
    LOG.info("trainer %s: every %ds, %d epochs, keep %d, models in %s", service.version(), conf["interval"],
             conf["epochs"], conf["keep"], conf["models_dir"])
    while not stop.is_set():
        try:
            train_once(conf)
        except (OSError, model_lib.ModelError) as err:
            # The health check (age of the last checkpoint) reports a trainer that keeps failing.
            LOG.error("training round failed: %s", err)
        stop.wait(conf["interval"])
    LOG.info("stopped")
    return 0


def build_model(out, version, seed, samples, epochs, learning_rate):
    rows = model_lib.generate_readings(samples, seed)
    model, losses = model_lib.train(model_lib.new_model(rows, version), rows, epochs, learning_rate)
    model["trained"] = {"epochs": epochs, "loss": round(losses[-1], 6), "samples": samples, "data": "generated:seed=%d" % seed,
                        "accuracy": round(model_lib.accuracy(model, rows), 4)}
    model_lib.write_json_atomic(out, model)
    return model


def main(argv=None):
    service.setup_logging("trainer")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="train one model from scratch into --out and exit")
    parser.add_argument("--out", help="model file written by --once")
    parser.add_argument("--version", default=service.version())
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.once:
        if not args.out:
            parser.error("--once needs --out")
        model = build_model(args.out, args.version, args.seed, args.samples, args.epochs, args.learning_rate)
        LOG.info("wrote %s: %s", args.out, model["trained"])
        return 0
    try:
        conf = settings()
        os.makedirs(conf["models_dir"], exist_ok=True)
    except (service.SettingError, OSError) as err:
        LOG.error("cannot start: %s", err)
        return 2
    return run_forever(conf)


if __name__ == "__main__":
    sys.exit(main())
