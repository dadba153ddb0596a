# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sample predictor: real-time anomaly predictions for production-line motor readings over HTTP.

  GET  /health                    200 {"status": "ok", "version", "model_version", "model_source"}
  GET  /version                   200 {"version", "model_version"}
  POST /predict {"features": [vibration_mm_s, temperature_c, current_a]}
  GET  /predict?features=2.1,61,10
                                  200 {"prediction": "anomaly"|"normal", "score", "model_version"}
The model baked in the image is used unless the trainer has written $PREDICTOR_MODELS_DIR/current.json,
which is (re)loaded whenever it changes.

PREDICTOR_FAULT makes a deliberately bad release of the same code (for rollout tests):
  crash       exits 3 at start
  unhealthy   /health answers 503 once PREDICTOR_UNHEALTHY_AFTER seconds (20) have passed
  leak        allocates PREDICTOR_LEAK_MB_PER_S (20) MB/s until the memory limit kills it
  predict500  /health is fine, /predict answers 500
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import logging
import os
import sys
import threading
import time

import edgeops_model as model_lib
import edgeops_service as service

LOG = logging.getLogger("edgeops")
FAULTS = ("none", "crash", "unhealthy", "leak", "predict500")


class ModelHolder(object):
    """The model in use: the trained one in the models volume when present and valid, else the baked one."""

    def __init__(self, baked_path, current_path):
        self.baked = model_lib.load_model(baked_path)
        self.baked_path = baked_path
        self.current_path = current_path
        self.model, self.source = self.baked, baked_path
        self._seen = None
        self._lock = threading.Lock()

    def get(self):
        try:
            st = os.stat(self.current_path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._seen:
                self._seen = stamp
                self._reload(stamp)
            return self.model, self.source

    def _reload(self, stamp):
        if stamp is None:
            if self.source != self.baked_path:
                LOG.info("%s is gone: back to the baked model %s", self.current_path, self.baked["version"])
            self.model, self.source = self.baked, self.baked_path
            return
        try:
            self.model, self.source = model_lib.load_model(self.current_path), self.current_path
            LOG.info("loaded model %s from %s", self.model["version"], self.current_path)
        except (OSError, model_lib.ModelError) as err:
            # A bad file from the trainer must not take predictions down: keep the model in use.
            LOG.error("ignoring %s: %s", self.current_path, err)


def parse_features(query, body):
    """Features from ?features=a,b,c or a JSON body {"features": [...]}; ModelError names the key."""
    if body:
        try:
            payload = json.loads(body.decode("utf-8"))
        except ValueError:
            raise model_lib.ModelError("body must be JSON like {\"features\": [2.1, 61.0, 10.2]}")
        if not isinstance(payload, dict) or "features" not in payload:
            raise model_lib.ModelError("features is missing from the JSON body")
        return payload["features"]
    if "features" not in query:
        raise model_lib.ModelError("features is missing (e.g. ?features=2.1,61.0,10.2)")
    return [x.strip() for x in query["features"][0].split(",")]


def make_handler(holder, fault, started, unhealthy_after):
    class Handler(service.JsonHandler):
        def route(self, method, path, query, body):
            model, source = holder.get()
            if path == "/health" and method == "GET":
                if fault == "unhealthy" and time.monotonic() - started >= unhealthy_after:
                    return 503, {"status": "unhealthy", "version": service.version()}
                return 200, {"status": "ok", "version": service.version(), "model_version": model["version"],
                             "model_source": source}
            if path == "/version" and method == "GET":
                return 200, {"version": service.version(), "model_version": model["version"]}
            if path == "/predict" and method in ("GET", "POST"):
                if fault == "predict500":
                    return 500, {"error": "prediction failed (deliberately bad release)"}
                try:
                    answer = model_lib.predict(model, parse_features(query, body))
                except model_lib.ModelError as err:
                    return 400, {"error": str(err)}
                answer["model_version"] = model["version"]
                return 200, answer
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
    return Handler


def leak(mb_per_second):
    """Hold ever more memory, touched so it is resident, until the kernel's OOM killer ends us."""
    hoard = []
    chunk = max(1, mb_per_second // 10) * 1024 * 1024
    while True:
        hoard.append(b"\xa5" * chunk)
        if len(hoard) % 10 == 0:
            LOG.info("leak: holding %d MB", len(hoard) * chunk // (1024 * 1024))
        time.sleep(0.1)


def main():
    service.setup_logging("predictor")
    try:
        port = service.env_int("PREDICTOR_PORT", 8080, 1, 65535)
        fault = os.environ.get("PREDICTOR_FAULT", "none") or "none"
        if fault not in FAULTS:
            raise service.SettingError("PREDICTOR_FAULT must be one of %s, got %r" % (", ".join(FAULTS), fault))
        unhealthy_after = service.env_float("PREDICTOR_UNHEALTHY_AFTER", 20.0)
        leak_rate = service.env_int("PREDICTOR_LEAK_MB_PER_S", 20, 1, 1024)
        models_dir = os.environ.get("PREDICTOR_MODELS_DIR", "/models")
        holder = ModelHolder(os.environ.get("PREDICTOR_MODEL", "/opt/edgeops/model.json"),
                             os.path.join(models_dir, "current.json"))
    except (service.SettingError, model_lib.ModelError, OSError) as err:
        LOG.error("cannot start: %s", err)
        return 2
    model, source = holder.get()
    LOG.info("predictor %s starting: model %s from %s, fault %s", service.version(), model["version"], source, fault)
    if fault == "crash":
        LOG.error("crashing at start (deliberately bad release)")
        return 3
    if fault == "leak":
        threading.Thread(target=leak, args=(leak_rate,), daemon=True).start()
    return service.serve(make_handler(holder, fault, time.monotonic(), unhealthy_after), port)


if __name__ == "__main__":
    sys.exit(main())
