# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample workloads' model and training code (samples/workloads), imported by path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.server
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WORKLOADS = os.path.join(REPO, "samples", "workloads")


def _load(name, relpath):
    # The apps import their shared modules by name (PYTHONPATH=/opt/edgeops/lib in the images).
    common = os.path.join(WORKLOADS, "common")
    if common not in sys.path:
        sys.path.insert(0, common)
    spec = importlib.util.spec_from_file_location(name, os.path.join(WORKLOADS, relpath))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # one module object, whether imported here or by the apps
    spec.loader.exec_module(module)
    return module


model_lib = _load("edgeops_model", "common/edgeops_model.py")
trainer = _load("edgeops_sample_trainer", "trainer/trainer.py")
predictor = _load("edgeops_sample_predictor", "predictor/predictor.py")

NORMAL = [2.0, 60.0, 10.0]
ANOMALOUS = [6.5, 80.0, 13.5]


def baked(version):
    return model_lib.load_model(os.path.join(WORKLOADS, "predictor", "models", "model-%s.json" % version))


def test_generated_readings_are_deterministic_per_seed():
    assert model_lib.generate_readings(50, 3) == model_lib.generate_readings(50, 3)
    assert model_lib.generate_readings(50, 3) != model_lib.generate_readings(50, 4)
    labels = [y for dummy, y in model_lib.generate_readings(1000, 3)]
    assert 200 < sum(labels) < 400


def test_training_lowers_the_loss_and_learns_the_anomalies():
    rows = model_lib.generate_readings(400, 5)
    start = model_lib.new_model(rows, "t")
    seen = []
    trained, losses = model_lib.train(start, rows, 40, on_epoch=lambda epoch, loss: seen.append(epoch))
    assert seen == list(range(1, 41))
    assert losses[0] < model_lib.log_loss(start, rows)
    assert losses[-1] < losses[0] / 2
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))
    assert model_lib.accuracy(trained, rows) > 0.95
    assert start["weights"] == [0.0, 0.0, 0.0]  # train() does not modify its input


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_baked_models_predict_known_readings(version):
    model = baked(version)
    assert model["version"] == version
    normal = model_lib.predict(model, NORMAL)
    anomalous = model_lib.predict(model, ANOMALOUS)
    assert normal["prediction"] == "normal" and normal["score"] < 0.2
    assert anomalous["prediction"] == "anomaly" and anomalous["score"] > 0.9


def test_the_two_baked_releases_are_different_models():
    old, new = baked("1.0.0"), baked("1.1.0")
    assert old["weights"] != new["weights"]
    assert model_lib.predict(old, NORMAL)["score"] != model_lib.predict(new, NORMAL)["score"]
    # the newer release is the better model on data neither was trained on
    rows = model_lib.generate_readings(500, 99)
    assert model_lib.log_loss(new, rows) < model_lib.log_loss(old, rows)


def test_baked_models_are_reproducible_from_the_trainer(tmp_path):
    # How predictor/models/model-1.0.0.json was made (see the README).
    out = str(tmp_path / "m.json")
    trainer.build_model(out, "1.0.0", seed=7, samples=300, epochs=20, learning_rate=0.3)
    rebuilt = model_lib.load_model(out)
    assert rebuilt["weights"] == pytest.approx(baked("1.0.0")["weights"])


@pytest.mark.parametrize("features", [[1, 2], "1,2,3", [1, "x", 3], [1, float("nan"), 3], [True, 1, 2], None])
def test_bad_features_are_refused_naming_the_key(features):
    with pytest.raises(model_lib.ModelError) as err:
        model_lib.predict(baked("1.0.0"), features)
    assert "features" in str(err.value)


def test_features_from_query_or_body():
    assert predictor.parse_features({"features": ["2, 60,10"]}, b"") == ["2", "60", "10"]
    assert predictor.parse_features({}, b'{"features": [1, 2, 3]}') == [1, 2, 3]
    for query, body in (({}, b""), ({}, b"{}"), ({}, b"not json")):
        with pytest.raises(model_lib.ModelError) as err:
            predictor.parse_features(query, body)
        assert "features" in str(err.value) or "JSON" in str(err.value)


@pytest.mark.parametrize("key, value", [("format", 2), ("weights", [1.0]), ("scale", [1.0, 0, 1.0]), ("bias", "x"),
                                        ("version", 1)])
def test_bad_model_files_are_refused_naming_the_key_and_file(tmp_path, key, value):
    model = baked("1.0.0")
    model[key] = value
    path = tmp_path / "current.json"
    path.write_text(json.dumps(model))
    with pytest.raises(model_lib.ModelError) as err:
        model_lib.load_model(str(path))
    assert key in str(err.value) and str(path) in str(err.value)


def test_checkpoints_are_numbered_and_only_the_last_n_are_kept(tmp_path):
    models = str(tmp_path)
    model = baked("1.0.0")
    numbers = [model_lib.save_checkpoint(models, dict(model, version="v%d" % n), keep=3) for n in range(1, 6)]
    assert numbers == [1, 2, 3, 4, 5]
    assert sorted(os.listdir(models)) == ["checkpoint-000003.json", "checkpoint-000004.json",
                                          "checkpoint-000005.json", "current.json"]
    assert model_lib.load_model(os.path.join(models, "current.json"))["version"] == "v5"
    assert model_lib.load_model(os.path.join(models, "checkpoint-000004.json"))["version"] == "v4"
    with pytest.raises(model_lib.ModelError):
        model_lib.save_checkpoint(models, model, keep=0)


def test_checkpoint_write_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "current.json")
    model_lib.write_json_atomic(path, {"version": "old"})
    calls = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 1:  # the data fsync, before the rename
            raise OSError(5, "I/O error")
        return real_fsync(fd)

    monkeypatch.setattr(model_lib.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        model_lib.write_json_atomic(path, {"version": "new"})
    assert json.load(open(path)) == {"version": "old"}
    assert os.listdir(str(tmp_path)) == ["current.json"]  # no temporary file left behind


def test_checkpoint_write_renames_a_synced_temporary_file(tmp_path, monkeypatch):
    events = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        events.append("fsync")
        return real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", os.path.basename(src)[:5], os.path.basename(dst)))
        return real_rename(src, dst)

    monkeypatch.setattr(model_lib.os, "fsync", fsync)
    monkeypatch.setattr(model_lib.os, "rename", rename)
    model_lib.write_json_atomic(str(tmp_path / "current.json"), {"version": "x"})
    assert events == ["fsync", ("rename", ".tmp-", "current.json"), "fsync"]


def test_a_training_round_writes_a_checkpoint_from_generated_data(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EDGEOPS_VERSION", "9.9.9")
    data, models = tmp_path / "data", tmp_path / "models"
    data.mkdir()
    models.mkdir()
    conf = {"interval": 1, "epochs": 5, "keep": 2, "seed": 1, "samples": 200, "learning_rate": 0.5,
            "data_dir": str(data), "models_dir": str(models)}
    with caplog.at_level("INFO", logger="edgeops"):
        assert trainer.train_once(conf) == 1
        assert trainer.train_once(conf) == 2
    assert (data / "readings.csv").exists()
    assert model_lib.read_readings_csv(str(data / "readings.csv")) == model_lib.generate_readings(200, 1)
    current = model_lib.load_model(str(models / "current.json"))
    assert current["version"] == "9.9.9+ckpt.2"
    # the second round continued from the first one's model, so its loss is lower
    first = model_lib.load_model(str(models / "checkpoint-000001.json"))
    assert current["trained"]["loss"] < first["trained"]["loss"]
    epoch_lines = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage()]
    assert len(epoch_lines) == 10 and "checkpoint 2 epoch 5/5 loss" in epoch_lines[-1]


def test_a_bad_readings_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "readings.csv"
    path.write_text("vibration_mm_s,temperature_c,current_a,anomaly\n1,2,3,0\n1,x,3,1\n")
    with pytest.raises(model_lib.ModelError) as err:
        model_lib.read_readings_csv(str(path))
    assert "line 3" in str(err.value) and str(path) in str(err.value)


healthcheck = _load("edgeops_sample_healthcheck", "common/healthcheck.py")
device_manager = _load("edgeops_sample_device_manager", "device-manager/device_manager.py")


def test_trainer_health_follows_the_age_of_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINER_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINER_INTERVAL", "10")
    current = tmp_path / "current.json"
    current.write_text("{}")
    os.utime(str(current), (1000, 1000))
    assert healthcheck.checkpoint_healthy(now=1000 + 59)[0] is True  # 3 intervals, at least 60 s
    assert healthcheck.checkpoint_healthy(now=1000 + 61)[0] is False
    monkeypatch.setenv("TRAINER_HEALTH_MAX_AGE", "100")
    assert healthcheck.checkpoint_healthy(now=1000 + 99)[0] is True


def test_token_state_never_returns_the_token(tmp_path):
    secret = tmp_path / "dashboard_token"
    assert device_manager.token_state(str(secret)) == "absent"
    secret.write_text("  \n")
    assert device_manager.token_state(str(secret)) == "absent"
    secret.write_text("s3cr3t-value\n")
    assert device_manager.token_state(str(secret)) == "present"


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        status = 200 if self.path == "/health" else 500
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if status == 200 else b'{"status": "failing"}')

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture
def status_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_url_health_is_the_status_line_of_a_real_get(status_server):  # pylint: disable=redefined-outer-name
    assert healthcheck.url_healthy("http://127.0.0.1:%d/health" % status_server) == (True, "HTTP 200")
    healthy, detail = healthcheck.url_healthy("http://127.0.0.1:%d/broken" % status_server)
    assert healthy is False and "500" in detail


def test_url_health_of_a_closed_port_is_an_error_main_reports_unhealthy(monkeypatch, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HEALTHCHECK_URL", "http://127.0.0.1:%d/health" % port)
    assert healthcheck.main() == 1
    assert capsys.readouterr().out.startswith("unhealthy: ")


@pytest.mark.parametrize("url", ["https://127.0.0.1/health", "http://:80/health", "http://host:port/health"])
def test_a_bad_healthcheck_url_is_named(url):
    with pytest.raises(ValueError) as err:
        healthcheck.split_http_url(url)
    assert "HEALTHCHECK_URL" in str(err.value)


def test_the_health_check_imports_no_http_stack():
    # Every probe of every container is a new process: what it imports is paid on each one.
    code = ("import sys; sys.path.insert(0, %r); import healthcheck; "
            "print(sorted(m for m in ('urllib.request', 'http.client', 'ssl', 'logging', 'json', 'edgeops_service') "
            "if m in sys.modules))" % os.path.join(WORKLOADS, "common"))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
