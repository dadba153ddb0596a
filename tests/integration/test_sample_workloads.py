# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample workload images (samples/workloads), built by playbooks/samples/build_images.yml and run
hardened (read-only root, tmpfs /tmp, no capabilities, no-new-privileges, uid 10001) on a throwaway
network of the controller's Docker Engine. The controller reaches them only on 127.0.0.1 ports or
with `docker exec`."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import json
import os
import subprocess
import time
import uuid
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from conftest import REPO, ansible

PLAYBOOK = "playbooks/samples/build_images.yml"
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "10001"]
NORMAL = [2.0, 60.0, 10.0]
ANOMALOUS = [6.5, 80.0, 13.5]


def _model_lib():
    spec = importlib.util.spec_from_file_location(
        "edgeops_model_it", os.path.join(REPO, "samples", "workloads", "common", "edgeops_model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODEL_LIB = _model_lib()


def baked_prediction(version, features):
    path = os.path.join(REPO, "samples", "workloads", "predictor", "models", "model-%s.json" % version)
    return MODEL_LIB.predict(MODEL_LIB.load_model(path), features)


def docker(*args, check=True):
    proc = subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, "docker %s: %s" % (" ".join(args), proc.stderr)
    return proc


def inspect(name, fmt):
    return json.loads(docker("inspect", "--format", "{{json %s}}" % fmt, name).stdout)


def http(port, path, body=None, timeout=5):
    """(status, parsed JSON) of a request to 127.0.0.1:port."""
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                      headers={"Content-Type": "application/json"} if data else {})
    try:
        with urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read().decode("utf-8"))
    except HTTPError as err:
        return err.code, json.loads(err.read().decode("utf-8"))


def wait_for(what, probe, timeout, interval=0.5):
    """Poll probe() until it returns something truthy; fail naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, ValueError) as err:  # not listening yet, connection reset
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def oom_killed(name):
    """Whether the kernel's OOM killer ended the container (memory cgroup limit reached).

    Docker records it in State.OOMKilled from cgroup OOM events; on this project's machines
    (kernel 6.x with cgroup v1, Engine 20.10) those events never arrive and OOMKilled stays false
    although the kernel killed the process, so the kernel log is the witness then.
    """
    if inspect(name, ".State.OOMKilled") is True:
        return True
    container_id = inspect(name, ".Id")
    kernel_log = subprocess.run(["dmesg"], capture_output=True, text=True, check=False)
    assert kernel_log.returncode == 0, "State.OOMKilled is false and the kernel log cannot be read: %s" % kernel_log.stderr
    return any("oom-kill:" in line and "oom_memcg=/docker/%s" % container_id in line
               for line in kernel_log.stdout.splitlines())


class Lab(object):
    """Containers, volumes and a network made by one test run, all removed at the end."""

    def __init__(self):
        self.prefix = "edgeops-samples-%s" % uuid.uuid4().hex[:8]
        self.network = self.prefix
        self.containers = []
        self.volumes = []
        docker("network", "create", "--label", "org.edgeops.test=%s" % self.prefix, self.network)

    def run(self, name, image, *options, port=None, hardened=True):
        """Start a detached container on the network; returns its name (and the 127.0.0.1 port of `port`)."""
        full = "%s-%s" % (self.prefix, name)
        args = ["run", "-d", "--name", full, "--network", self.network, "--label", "org.edgeops.test=%s" % self.prefix]
        args += HARDENED if hardened else []
        if port:
            args += ["-p", "127.0.0.1::%d" % port]
        docker(*(args + list(options) + [image]))
        self.containers.append(full)
        if not port:
            return full, None
        published = docker("port", full, "%d/tcp" % port).stdout.split()[0]
        return full, int(published.rsplit(":", 1)[1])

    def volume(self, name):
        full = "%s-%s" % (self.prefix, name)
        docker("volume", "create", "--label", "org.edgeops.test=%s" % self.prefix, full)
        self.volumes.append(full)
        return full

    def cleanup(self):
        for name in self.containers:
            docker("rm", "-f", "-v", name, check=False)
        for name in self.volumes:
            docker("volume", "rm", "-f", name, check=False)
        docker("network", "rm", self.network, check=False)


@pytest.fixture(scope="module")
def built():
    first = ansible("ansible-playbook", PLAYBOOK)
    assert first.rc == 0, first.out
    second = ansible("ansible-playbook", PLAYBOOK)
    assert second.rc == 0, second.out
    return {"first": first, "second": second}


@pytest.fixture
def lab(built):  # pylint: disable=redefined-outer-name,unused-argument
    made = Lab()
    yield made
    made.cleanup()


TAGS = ["edgeops/predictor:1.0.0", "edgeops/predictor:1.1.0", "edgeops/predictor:1.1.0-bad-crash",
        "edgeops/predictor:1.1.0-bad-unhealthy", "edgeops/predictor:1.1.0-bad-leak", "edgeops/predictor:1.1.0-bad-500",
        "edgeops/trainer:1.0.0", "edgeops/device-manager:1.0.0"]


def test_build_is_idempotent_and_every_image_shares_the_base_layer(built):  # pylint: disable=redefined-outer-name
    assert built["second"].recap["localhost"]["changed"] == 0, built["second"].out
    assert built["second"].recap["localhost"]["failed"] == 0
    base = [line.strip() for line in built["second"].out.splitlines() if "edgeops/workload-base:" in line][0].lstrip("- ")
    base_layer = inspect(base, ".RootFS.Layers")
    assert len(base_layer) == 1
    for tag in TAGS:
        assert tag in built["second"].out
        layers = inspect(tag, ".RootFS.Layers")
        assert layers[0] == base_layer[0], tag
        config = inspect(tag, ".Config")
        assert config["User"] == "10001:10001", tag
        assert config["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/healthcheck"], tag
    # no docs or apt lists in the base
    listing = docker("run", "--rm", "--entrypoint", "/bin/sh", base, "-c",
                     "find /usr/share/man /var/lib/apt/lists -mindepth 1 | wc -l; ls /usr/share/doc | wc -l; "
                     "find /usr/share/doc -type f ! -name copyright | wc -l").stdout.split()
    assert listing[0] == "0" and listing[2] == "0", listing


def test_predictor_serves_the_baked_model_and_stops_cleanly_on_sigterm(lab):  # pylint: disable=redefined-outer-name
    name, port = lab.run("pred100", "edgeops/predictor:1.0.0", port=8080)
    status, health = wait_for("predictor 1.0.0 /health", lambda: http(port, "/health"), 15)
    assert status == 200 and health["status"] == "ok" and health["version"] == "1.0.0"
    for features in (NORMAL, ANOMALOUS):
        expected = dict(baked_prediction("1.0.0", features), model_version="1.0.0")
        assert http(port, "/predict", {"features": features}) == (200, expected)
        assert http(port, "/predict?features=" + ",".join(str(x) for x in features)) == (200, expected)
    assert http(port, "/predict", {"features": [1, 2]})[0] == 400
    assert http(port, "/version") == (200, {"version": "1.0.0", "model_version": "1.0.0"})
    assert docker("exec", name, "/usr/local/bin/healthcheck").returncode == 0
    assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    # read-only root: the service user cannot write outside /tmp
    assert docker("exec", name, "touch", "/opt/edgeops/x", check=False).returncode != 0
    assert docker("exec", name, "touch", "/tmp/x").returncode == 0
    started = time.monotonic()
    docker("stop", "--time", "10", name)
    assert time.monotonic() - started < 5
    assert inspect(name, ".State.ExitCode") == 0
    logs = docker("logs", name).stdout
    assert "predictor 1.0.0 starting" in logs and "stopped" in logs


def test_predictor_1_1_0_reports_its_version_and_serves_its_own_model(lab):  # pylint: disable=redefined-outer-name
    dummy, port = lab.run("pred110", "edgeops/predictor:1.1.0", port=8080)
    status, health = wait_for("predictor 1.1.0 /health", lambda: http(port, "/health"), 15)
    assert status == 200 and health["version"] == "1.1.0" and health["model_version"] == "1.1.0"
    expected = dict(baked_prediction("1.1.0", NORMAL), model_version="1.1.0")
    assert expected["score"] != baked_prediction("1.0.0", NORMAL)["score"]
    assert http(port, "/predict", {"features": NORMAL}) == (200, expected)


def test_bad_releases_fail_the_way_they_should(lab):  # pylint: disable=redefined-outer-name
    # All four start at once: the long waits (unhealthy after ~20 s) overlap.
    crash, dummy = lab.run("crash", "edgeops/predictor:1.1.0-bad-crash")
    unhealthy, unhealthy_port = lab.run("unhealthy", "edgeops/predictor:1.1.0-bad-unhealthy", port=8080)
    leak, dummy = lab.run("leak", "edgeops/predictor:1.1.0-bad-leak", "--memory", "64m", "--memory-swap", "64m")
    p500, p500_port = lab.run("p500", "edgeops/predictor:1.1.0-bad-500", port=8080)

    wait_for("the crash release to exit", lambda: inspect(crash, ".State.Status") == "exited", 15)
    assert inspect(crash, ".State.ExitCode") not in (0, None)
    assert "crashing at start" in docker("logs", crash).stdout

    assert wait_for("predict500 /health", lambda: http(p500_port, "/health"), 15)[0] == 200
    assert http(p500_port, "/predict", {"features": NORMAL})[0] == 500
    assert http(p500_port, "/predict?features=1,2,3")[0] == 500

    wait_for("the leak release to be killed", lambda: inspect(leak, ".State.Status") == "exited", 30)
    assert inspect(leak, ".State.ExitCode") == 137  # SIGKILL
    assert oom_killed(leak)
    assert "leak: holding" in docker("logs", leak).stdout

    wait_for("the unhealthy release to be healthy first", lambda: inspect(unhealthy, ".State.Health.Status") == "healthy", 20)
    healthy_since = time.monotonic()
    assert http(unhealthy_port, "/health")[0] == 200
    wait_for("the unhealthy release to turn unhealthy",
             lambda: inspect(unhealthy, ".State.Health.Status") == "unhealthy", 45)
    assert time.monotonic() - healthy_since >= 5  # it was healthy for a while, not from the start
    assert http(unhealthy_port, "/health")[0] == 503
    assert inspect(unhealthy, ".State.Running") is True


def test_trainer_writes_checkpoints_that_the_predictor_loads(lab):  # pylint: disable=redefined-outer-name
    models = lab.volume("models")
    trainer, dummy = lab.run("trainer", "edgeops/trainer:1.0.0", "-v", "%s:/models" % models,
                             "-e", "TRAINER_INTERVAL=2", "-e", "TRAINER_EPOCHS=5", "-e", "TRAINER_KEEP=2",
                             "-e", "TRAINER_SAMPLES=300")

    def checkpoints():
        out = docker("exec", trainer, "ls", "/models", check=False).stdout.split()
        return [n for n in out if n.startswith("checkpoint-")]

    wait_for("three checkpoints to have been written", lambda: "checkpoint-000003.json" in checkpoints(), 30)
    assert len(checkpoints()) <= 2  # TRAINER_KEEP
    assert not [n for n in docker("exec", trainer, "ls", "-a", "/models").stdout.split() if n.startswith(".tmp-")]
    logs = docker("logs", trainer).stdout
    assert "epoch 5/5 loss" in logs and "no /data/readings.csv: generated 300 readings" in logs
    wait_for("the trainer to be healthy", lambda: inspect(trainer, ".State.Health.Status") == "healthy", 30)

    predictor, port = lab.run("pred", "edgeops/predictor:1.0.0", "-v", "%s:/models:ro" % models, port=8080)
    status, health = wait_for("predictor /health", lambda: http(port, "/health"), 15)
    assert status == 200 and health["model_source"] == "/models/current.json"
    assert health["model_version"].startswith("1.0.0+ckpt.")
    status, answer = http(port, "/predict", {"features": ANOMALOUS})
    assert status == 200 and answer["prediction"] == "anomaly" and answer["model_version"].startswith("1.0.0+ckpt.")
    # later checkpoints are picked up without a restart
    first = int(health["model_version"].rsplit(".", 1)[1])
    wait_for("a newer checkpoint to be served",
             lambda: int(http(port, "/version")[1]["model_version"].rsplit(".", 1)[1]) > first, 20)
    assert "loaded model 1.0.0+ckpt." in docker("logs", predictor).stdout

    docker("stop", "--time", "10", trainer)
    assert inspect(trainer, ".State.ExitCode") == 0


def test_device_manager_reports_predictor_health_and_never_reveals_the_token(lab, tmp_path):  # pylint: disable=redefined-outer-name
    token = "tok-%s" % uuid.uuid4().hex
    secret = tmp_path / "dashboard_token"
    secret.write_text(token + "\n")
    os.chmod(str(secret), 0o644)
    predictor, dummy = lab.run("predictor", "edgeops/predictor:1.0.0", "--network-alias", "predictor")
    manager, port = lab.run("manager", "edgeops/device-manager:1.0.0", "-v", "%s:/run/secrets/dashboard_token:ro" % secret,
                            port=8081)
    wait_for("device-manager /health", lambda: http(port, "/health")[0] == 200, 15)

    def healthy_report():
        answer = http(port, "/status")
        return answer if answer[1]["predictor"]["healthy"] else None

    status, report = wait_for("the predictor to be reported healthy", healthy_report, 20)
    assert status == 200
    assert report["version"] == "1.0.0" and report["service"] == "device-manager"
    assert report["predictor"]["version"] == "1.0.0" and report["predictor"]["http_status"] == 200
    assert report["dashboard_token"] == "present"
    assert report["uptime_s"] >= 0
    assert docker("exec", manager, "/usr/local/bin/healthcheck").returncode == 0

    docker("stop", predictor)
    status, report = http(port, "/status")
    assert status == 200 and report["predictor"]["healthy"] is False and report["predictor"]["error"]

    raw = json.dumps(report)
    logs = docker("logs", manager)
    assert token not in raw
    assert token not in logs.stdout + logs.stderr
    assert "dashboard token present" in logs.stdout


def test_device_manager_without_the_secret_says_absent(lab):  # pylint: disable=redefined-outer-name
    dummy, port = lab.run("manager-nosecret", "edgeops/device-manager:1.0.0", port=8081)
    status, report = wait_for("device-manager /status", lambda: http(port, "/status"), 15)
    assert status == 200 and report["dashboard_token"] == "absent"
    assert report["predictor"]["healthy"] is False
