# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate: validation, verdicts, the soak and Prometheus exposition parsing.

HTTP and metric probes talk to a real http.server on 127.0.0.1 in a thread; TCP probes to real
sockets; unreachable targets are 192.0.2.1 (TEST-NET-1, never routed) with a short timeout or a
mocked socket error. The gate runs on a fake clock, so the soak tests do not wait.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _health as h
from ansible_collections.edgeops.fleet.plugins.module_utils._generations import metrics as m
from ansible_collections.edgeops.fleet.plugins.module_utils._generations import probes as p


def probe(**kwargs):
    return h.validate_probe(kwargs, 0)


# ---- fixtures ------------------------------------------------------------------------------

METRICS = """\
# HELP predictor_latency_seconds Prediction latency.
# TYPE predictor_latency_seconds summary
predictor_latency_seconds{quantile="0.5"} 0.012
predictor_latency_seconds{quantile="0.99"} 0.2 1700000000000
predictor_latency_seconds_sum 12.5
predictor_latency_seconds_count 1000
# TYPE http_requests_total counter
http_requests_total{code="200",path="/predict"} 990
http_requests_total{code="500",path="/predict"} 10
http_requests_total{path="/health",code="200"} 42
# a plain comment
request_size_bucket{le="0.5"} 3
request_size_bucket{le="+Inf"} 7
queue_depth 3
temperature_celsius{sensor="gpu",note="a \\"quoted\\", {braced} value"} 61.5
weird_value NaN
"""


class Handler(BaseHTTPRequestHandler):
    routes = {
        "/health": (200, "status: ok\n"),
        "/error": (500, "boom"),
        "/json": (200, '{"score": 0.93, "model": "v2"}'),
        "/metrics": (200, METRICS),
        "/broken-metrics": (200, "<html>not metrics</html>\n"),
    }

    def do_GET(self):
        status, body = self.routes.get(self.path, (404, "not found"))
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 nobody listens on (connect is refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class Clock:
    """A fake monotonic clock; sleep() advances it. Probes may take time with ``cost``."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A fake probe: ``plan[name](t)`` -> (verdict, detail), t seconds since the gate started."""

    def __init__(self, clock, plan, cost=0.0):
        self.clock, self.plan, self.cost = clock, plan, cost
        self.start = clock()
        self.calls = []

    def __call__(self, p):
        t = self.clock() - self.start
        self.calls.append((p["name"], t))
        self.clock.now += self.cost
        return self.plan[p["name"]](t)


def always(verdict, detail="x"):
    return lambda t: (verdict, detail)


def gate(probes, plan, soak=0, cost=0.0):
    clock = Clock()
    script = Script(clock, plan, cost)
    result = h.run_gate(h.validate_probes(probes), soak, script, clock=clock, sleep=clock.sleep)
    return result, script, clock


# ---- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("probes, message", [
    ([{"name": "web", "type": "http", "url": "http://x/", "bdy": "ok"}],
     r"^probes\[0\] \(web\): unknown key\(s\) bdy for type http \(allowed: body, body_regex, interval, name, "),
    ([{"name": "a", "type": "tcp", "port": 1}, {"name": "b", "type": "tcp", "port": 2, "url": "http://x/"}],
     r"^probes\[1\] \(b\): unknown key\(s\) url for type tcp"),
    ([{"name": "web", "type": "http"}], r"^probes\[0\] \(web\)\.url is required for type http$"),
    ([{"type": "http", "url": "http://x/"}], r"^probes\[0\]\.name is required"),
    ([{"name": "", "type": "tcp", "port": 1}], r"^probes\[0\]\.name is required"),
    ([{"name": "x", "type": "ping"}], r"^probes\[0\] \(x\)\.type must be one of command, container, http, metric, "
                                      r"systemd, tcp, got 'ping'$"),
    ([{"name": "x"}], r"^probes\[0\] \(x\)\.type must be one of .* got None$"),
    (["web"], r"^probes\[0\] must be a mapping, got str$"),
    ([], r"^probes must be a non-empty list"),
    ([{"name": "x", "type": "tcp", "port": 70000}], r"^probes\[0\] \(x\)\.port must be a whole number between 1 and 65535"),
    ([{"name": "x", "type": "tcp", "port": "22a"}], r"^probes\[0\] \(x\)\.port must be"),
    ([{"name": "x", "type": "tcp", "port": 22, "retries": 0}], r"^probes\[0\] \(x\)\.retries must be a whole number"),
    ([{"name": "x", "type": "tcp", "port": 22, "timeout": True}], r"^probes\[0\] \(x\)\.timeout must be a number"),
    ([{"name": "x", "type": "tcp", "port": 22, "interval": "soon"}], r"^probes\[0\] \(x\)\.interval must be a number"),
    ([{"name": "x", "type": "http", "url": "ftp://h/"}], r"^probes\[0\] \(x\)\.url must start with http"),
    ([{"name": "x", "type": "http", "url": "http://h/", "status": 700}], r"^probes\[0\] \(x\)\.status must be"),
    ([{"name": "x", "type": "http", "url": "http://h/", "body_regex": "("}],
     r"^probes\[0\] \(x\)\.body_regex is not a valid regular expression"),
    ([{"name": "m", "type": "metric", "url": "http://h/metrics", "metric": "up", "op": "<"}],
     r"^probes\[0\] \(m\)\.threshold is required for type metric$"),
    ([{"name": "m", "type": "metric", "url": "http://h/metrics", "metric": "up", "op": "=", "threshold": 1}],
     r"^probes\[0\] \(m\)\.op must be one of < <= > >= == !=, got '='$"),
    ([{"name": "m", "type": "metric", "url": "http://h/metrics", "metric": "up", "op": "<", "threshold": "high"}],
     r"^probes\[0\] \(m\)\.threshold must be a number, got 'high'$"),
    ([{"name": "m", "type": "metric", "url": "http://h/metrics", "metric": "up-time", "op": "<", "threshold": 1}],
     r"^probes\[0\] \(m\)\.metric must be a Prometheus metric name"),
    ([{"name": "m", "type": "metric", "url": "http://h/m", "metric": "up", "op": "<", "threshold": 1, "labels": ["a"]}],
     r"^probes\[0\] \(m\)\.labels must be a mapping"),
    ([{"name": "m", "type": "metric", "url": "http://h/m", "metric": "up", "op": "<", "threshold": 1,
       "labels": {"job": ["a"]}}], r"^probes\[0\] \(m\)\.labels\.job must be a string"),
    ([{"name": "m", "type": "metric", "url": "http://h/m", "metric": "up", "op": "<", "threshold": 1,
       "labels": {"1job": "a"}}], r"^probes\[0\] \(m\)\.labels: '1job' is not a Prometheus label name"),
    ([{"name": "c", "type": "command", "argv": "true"}], r"^probes\[0\] \(c\)\.argv must be a list of strings"),
    ([{"name": "c", "type": "command", "argv": ["sh"], "exit_code": 256}], r"^probes\[0\] \(c\)\.exit_code must be"),
    ([{"name": "s", "type": "systemd", "unit": ""}], r"^probes\[0\] \(s\)\.unit is required for type systemd$"),
    ([{"name": "s", "type": "container", "service": "a"}, {"name": "s", "type": "systemd", "unit": "b"}],
     r"^probes\[1\] \(s\)\.name: 's' is not unique \(also probes\[0\]\)$"),
])
def test_validation_names_the_probe_and_the_key(probes, message):
    with pytest.raises(h.HealthError, match=message):
        h.validate_probes(probes)


def test_validation_fills_defaults_and_converts():
    out = h.validate_probes([
        {"name": "web", "type": "http", "url": "http://127.0.0.1:8080/health"},
        {"name": "ssh", "type": "tcp", "port": "22", "interval": "0.5"},
        {"name": "lat", "type": "metric", "url": "http://h/metrics", "metric": "lat_seconds",
         "labels": {"quantile": 0.99}, "op": "<=", "threshold": "-1.5e-1"},
        {"name": "cmd", "type": "command", "argv": ["test", "-e", 1]},
    ])
    assert out[0] == {"name": "web", "type": "http", "url": "http://127.0.0.1:8080/health", "status": 200,
                      "retries": 3, "interval": 2, "timeout": 5}
    assert out[1]["host"] == "127.0.0.1" and out[1]["port"] == 22 and out[1]["interval"] == 0.5
    assert out[2]["labels"] == {"quantile": "0.99"} and out[2]["threshold"] == -0.15
    assert out[3]["argv"] == ["test", "-e", "1"] and out[3]["exit_code"] == 0


def test_generation_health_checks_are_valid_probes():
    """A release's health_checks (generation module) can be reused as probes once named."""
    from ansible_collections.edgeops.fleet.plugins.module_utils._generations.release import validate_health_check
    check = validate_health_check({"name": "p", "type": "http", "url": "http://h/", "body": "ok"}, 0)
    assert h.validate_probe(check, 0) == check


def test_validate_gate():
    probes, soak, fail_on = h.validate_gate([{"name": "a", "type": "tcp", "port": 1}], 30, [])
    assert soak == 30 and fail_on == [] and probes[0]["name"] == "a"
    with pytest.raises(h.HealthError, match=r"^soak must be a number between 0 and 86400, got -1$"):
        h.validate_gate([{"name": "a", "type": "tcp", "port": 1}], -1)
    with pytest.raises(h.HealthError, match=r"^fail_on: 'passed'"):
        h.validate_gate([{"name": "a", "type": "tcp", "port": 1}], 0, ["passed"])


# ---- verdicts of real probes ---------------------------------------------------------------

def test_http_verdicts(server, closed_port):
    run = h.HealthProbe()
    assert run(probe(name="p", type="http", url=server + "/health", body="ok")) == (
        "passed", "GET %s/health returned 200" % server)
    assert run(probe(name="p", type="http", url=server + "/error")) == (
        "failed", "GET %s/error returned 500, expected 200" % server)
    assert run(probe(name="p", type="http", url=server + "/error", status=500, body="boom"))[0] == "passed"
    assert run(probe(name="p", type="http", url=server + "/health", body="healthy")) == (
        "failed", "GET %s/health: body does not contain 'healthy'" % server)
    assert run(probe(name="p", type="http", url=server + "/json", body_regex=r'"score":\s*0\.9\d'))[0] == "passed"
    verdict, detail = run(probe(name="p", type="http", url=server + "/json", body_regex=r'"model": "v3"'))
    assert verdict == "failed" and detail.endswith("body does not match '\"model\": \"v3\"'")
    # refused: the host answered, so the service is broken
    verdict, detail = run(probe(name="p", type="http", url="http://127.0.0.1:%d/" % closed_port))
    assert verdict == "failed" and "refused" in detail.lower()


def test_http_ignores_proxies(server, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://192.0.2.1:3128")
    monkeypatch.setenv("no_proxy", "")
    assert h.HealthProbe()(probe(name="p", type="http", url=server + "/health", timeout=1))[0] == "passed"


@pytest.mark.parametrize("host, url_host", [("192.0.2.1", "192.0.2.1"), ("100::1", "[100::1]")])
def test_unroutable_address_is_inconclusive(host, url_host):
    """TEST-NET-1 and the IPv6 discard prefix are never routed: a connect times out or has no route."""
    try:
        socket.create_connection((host, 80), timeout=0.3).close()
        pytest.skip("this network answers for %s" % host)
    except socket.timeout:
        pass
    except OSError as exc:
        if exc.errno not in p.UNREACHABLE_ERRNOS:
            pytest.skip("this network answers for %s: %s" % (host, exc))
    run = h.HealthProbe()
    started = time.monotonic()
    verdict, detail = run(probe(name="p", type="tcp", host=host, port=80, timeout=0.3))
    assert verdict == "inconclusive", detail
    assert detail.startswith("connect %s:80: unreachable: " % url_host)
    verdict, detail = run(probe(name="p", type="http", url="http://%s:8080/health" % url_host, timeout=0.3))
    assert verdict == "inconclusive", detail
    assert detail.startswith("GET http://%s:8080/health: unreachable: " % url_host)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("error, verdict, text", [
    (OSError(errno.EHOSTUNREACH, "No route to host"), "inconclusive", "unreachable: No route to host"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "inconclusive", "unreachable: Network is unreachable"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "inconclusive",
     "unreachable: cannot resolve the host name (Name or service not known)"),
    (socket.timeout("timed out"), "inconclusive", "unreachable: connect timed out"),
    (OSError(errno.ECONNREFUSED, "Connection refused"), "failed", "Connection refused"),
    (OSError(errno.ECONNRESET, "Connection reset by peer"), "failed", "Connection reset by peer"),
])
def test_connect_errors_are_classified(monkeypatch, error, verdict, text):
    def refuse(*args, **kwargs):
        raise error
    monkeypatch.setattr(socket, "create_connection", refuse)
    run = h.HealthProbe()
    assert run(probe(name="p", type="tcp", host="device.example", port=22)) == (
        verdict, "connect device.example:22: %s" % text)
    assert run(probe(name="p", type="http", url="http://device.example/health")) == (
        verdict, "GET http://device.example/health: %s" % text)
    assert run(probe(name="p", type="metric", url="http://device.example/metrics", metric="up", op="==",
                     threshold=1)) == (verdict, "GET http://device.example/metrics: %s" % text)


def test_http_accepted_but_silent_is_failed():
    """The host accepted the connection and said nothing: it answered, the service is broken."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # the kernel completes the handshake; nobody ever reads or answers
    try:
        verdict, detail = h.HealthProbe()(probe(name="p", type="http", timeout=0.3,
                                                url="http://127.0.0.1:%d/" % listener.getsockname()[1]))
    finally:
        listener.close()
    assert verdict == "failed"
    assert "no response within 0.3 s (the connection was accepted)" in detail


def test_tcp_verdicts(server, closed_port):
    port = int(server.rsplit(":", 1)[1])
    run = h.HealthProbe()
    assert run(probe(name="p", type="tcp", port=port)) == ("passed", "connect 127.0.0.1:%d ok" % port)
    verdict, detail = run(probe(name="p", type="tcp", port=closed_port))
    assert verdict == "failed" and "refused" in detail.lower()


def test_metric_probe_over_http(server):
    run = h.HealthProbe()
    base = dict(name="m", type="metric", url=server + "/metrics")
    verdict, detail = run(probe(metric="predictor_latency_seconds", labels={"quantile": "0.99"}, op="<",
                                threshold=0.25, **base))
    assert verdict == "passed"
    assert detail == 'predictor_latency_seconds{quantile="0.99"} = 0.2 < 0.25 (GET %s/metrics)' % server
    verdict, detail = run(probe(metric="predictor_latency_seconds", labels={"quantile": "0.99"}, op="<",
                                threshold=0.1, **base))
    assert verdict == "failed"
    assert detail.startswith('predictor_latency_seconds{quantile="0.99"} = 0.2, expected < 0.1')
    verdict, detail = run(probe(metric="gpu_memory_bytes", op=">", threshold=0, **base))
    assert (verdict, detail) == ("failed", "metric gpu_memory_bytes not found (GET %s/metrics)" % server)
    verdict, detail = run(probe(name="m", type="metric", url=server + "/broken-metrics", metric="up", op="==", threshold=1))
    assert verdict == "failed" and "line 1 is not a sample" in detail
    verdict, detail = run(probe(name="m", type="metric", url=server + "/missing", metric="up", op="==", threshold=1))
    assert (verdict, detail) == ("failed", "GET %s/missing returned 404, expected 200" % server)


class Runner:
    """Stands in for docker and systemctl."""

    def __init__(self, responses):
        self.responses = responses
        self.calls = []

    def __call__(self, argv, input_data=None, timeout=None, env=None):
        self.calls.append(list(argv))
        key = " ".join(argv[:2])
        return self.responses[key]


def test_container_systemd_command_reuse_the_device_checks():
    inspect = [{"Name": "/edgeops-predictor-1", "State": {"Status": "running", "Health": {"Status": "healthy"}}}]
    runner = Runner({"docker ps": (0, "abc\n", ""), "docker inspect": (0, json.dumps(inspect), ""),
                     "systemctl is-active": (3, "inactive\n", "")})
    run = h.HealthProbe(runner=runner, compose_project="site")
    verdict, detail = run(probe(name="c", type="container", service="predictor"))
    assert (verdict, detail) == ("passed", "service predictor: 1 container(s) running and healthy")
    assert "label=com.docker.compose.project=site" in runner.calls[0]
    inspect[0]["State"]["Health"]["Status"] = "unhealthy"
    runner.responses["docker inspect"] = (0, json.dumps(inspect), "")
    assert run(probe(name="c", type="container", service="predictor")) == (
        "failed", "container edgeops-predictor-1 is running (unhealthy)")
    runner.responses["docker inspect"] = (0, "not json", "")
    verdict, detail = run(probe(name="c", type="container", service="predictor"))
    assert verdict == "failed" and detail.startswith("container probe error: ")
    assert run(probe(name="s", type="systemd", unit="docker.service")) == ("failed", "unit docker.service is inactive")
    real = h.HealthProbe()
    assert real(probe(name="t", type="command", argv=["true"])) == ("passed", "true exited 0")
    assert real(probe(name="t", type="command", argv=["sh", "-c", "exit 3"], exit_code=3))[0] == "passed"
    assert real(probe(name="t", type="command", argv=["sh", "-c", "echo bad >&2; exit 1"])) == (
        "failed", "sh -c echo bad >&2; exit 1 exited 1: bad")


# ---- the gate on a fake clock --------------------------------------------------------------

def test_retries_then_pass_and_probes_are_interleaved():
    plan = {"a": lambda t: ("passed", "ok") if t >= 4 else ("failed", "not yet"),
            "b": lambda t: ("passed", "ok") if t >= 4 else ("inconclusive", "unreachable")}
    result, script, clock = gate([{"name": "a", "type": "tcp", "port": 1},
                                  {"name": "b", "type": "tcp", "port": 2}], plan)
    assert result["verdict"] == "passed" and result["passed"] is True
    assert [(r["attempts"], r["passed_at"]) for r in result["probes"]] == [(3, 4.0), (3, 4.0)]
    assert result["duration"] == 4.0  # not 8: both probes wait on the same schedule
    assert result["msg"] == "2 probes passed"
    assert clock.sleeps == [2, 2]


def test_last_attempt_gives_the_verdict():
    plan = {"flaky": lambda t: ("inconclusive", "unreachable: no route") if t < 2 else ("failed", "refused"),
            "down": always("inconclusive", "unreachable: connect timed out"),
            "up": always("passed", "ok")}
    probes = [{"name": "flaky", "type": "tcp", "port": 1}, {"name": "down", "type": "tcp", "port": 1},
              {"name": "up", "type": "tcp", "port": 1, "retries": 1}]
    result, _script, _clock = gate(probes, plan)
    assert [r["verdict"] for r in result["probes"]] == ["failed", "inconclusive", "passed"]
    assert result["verdict"] == "failed"
    assert result["msg"] == "probe flaky failed: refused"
    result, _script, _clock = gate(probes[1:], plan)
    assert result["verdict"] == "inconclusive" and result["passed"] is False
    assert result["msg"] == "probe down inconclusive: unreachable: connect timed out"


def test_the_in_process_entry_point_validates_runs_and_says_whether_to_fail():
    """_health.gate: what the health_check module and controller-side code call."""
    clock = Clock()
    plan = {"up": always("passed", "ok"), "down": always("inconclusive", "unreachable: no route")}
    probes = [{"name": "up", "type": "tcp", "port": "22"}, {"name": "down", "type": "tcp", "port": 22, "retries": 1}]
    result = h.gate(probes, "10", ["failed"], probe=Script(clock, plan), clock=clock, sleep=clock.sleep)
    assert (result["verdict"], result["fail"]) == ("inconclusive", False)
    assert [r["samples"] for r in result["probes"]] == [5, 0]  # the soak samples what passed, every 2 s
    result = h.gate(probes, 0, probe=Script(clock, plan), clock=clock, sleep=clock.sleep)
    assert (result["verdict"], result["fail"]) == ("inconclusive", True)
    with pytest.raises(h.HealthError, match=r"^probes\[1\] \(down\)\.port must be"):
        h.gate([probes[0], dict(probes[1], port=0)], 0, probe=Script(clock, plan))


def test_overall_verdict():
    assert h.overall_verdict(["passed", "inconclusive", "failed"]) == "failed"
    assert h.overall_verdict(["passed", "inconclusive"]) == "inconclusive"
    assert h.overall_verdict(["passed", "passed"]) == "passed"


def test_soak_passes_and_counts_samples():
    plan = {"a": always("passed"), "b": always("passed")}
    result, script, clock = gate([{"name": "a", "type": "tcp", "port": 1},
                                  {"name": "b", "type": "tcp", "port": 2, "interval": 5}], plan, soak=30)
    assert result["verdict"] == "passed"
    assert result["msg"] == "2 probes passed (soak 30 s)"
    assert [r["samples"] for r in result["probes"]] == [15, 6]
    assert result["duration"] == 30.0
    # a and b are sampled together whenever both are due (every 10 s), a alone in between
    assert [t for name, t in script.calls if name == "b"] == [0, 5, 10, 15, 20, 25, 30]


def test_soak_fails_in_the_middle():
    plan = {"api": always("passed", "GET /health returned 200"),
            "predict": lambda t: ("failed", "GET /predict returned 500, expected 200") if 11 <= t < 13
            else ("passed", "GET /predict returned 200")}
    probes = [{"name": "api", "type": "http", "url": "http://h/health"},
              {"name": "predict", "type": "http", "url": "http://h/predict"}]
    result, script, clock = gate(probes, plan, soak=30, cost=0.5)
    api, predict = result["probes"]
    assert result["verdict"] == "failed" and result["passed"] is False
    assert predict["verdict"] == "failed"
    # attempts take 0.5 s: both passed at 1.0, soak rounds at 3, 5, 7, 9, 11; predict's 5th sample
    # started at 11.5 and failed at 12.0
    assert predict["failed_at"] == 12.0
    assert predict["detail"] == "GET /predict returned 500, expected 200"
    assert api["verdict"] == "passed" and api["failed_at"] is None
    assert result["msg"] == "probe predict failed during soak at 12 s: GET /predict returned 500, expected 200"
    assert result["duration"] == 12.0  # the gate stops: its verdict cannot change any more
    assert predict["samples"] == 5 and predict["attempts"] == 1 and api["samples"] == 5


def test_soak_unreachable_sample_is_inconclusive_but_a_later_failure_wins():
    plan = {"a": lambda t: ("inconclusive", "unreachable: no route") if 4 <= t < 6 else ("passed", "ok")}
    result, _script, _clock = gate([{"name": "a", "type": "tcp", "port": 1}], plan, soak=10)
    assert result["verdict"] == "inconclusive"
    assert result["probes"][0]["detail"] == "during soak at 4.0 s: unreachable: no route"
    assert result["probes"][0]["samples"] == 5 and result["duration"] == 10.0
    plan = {"a": lambda t: ("inconclusive", "unreachable") if 4 <= t < 6 else ("failed", "refused") if t >= 8
            else ("passed", "ok")}
    result, _script, _clock = gate([{"name": "a", "type": "tcp", "port": 1}], plan, soak=10)
    assert result["verdict"] == "failed" and result["probes"][0]["failed_at"] == 8.0


def test_no_soak_after_a_failure_and_soak_shorter_than_interval():
    plan = {"a": always("failed", "refused"), "b": always("passed")}
    result, script, _clock = gate([{"name": "a", "type": "tcp", "port": 1, "retries": 1},
                                   {"name": "b", "type": "tcp", "port": 1}], plan, soak=30)
    assert result["verdict"] == "failed" and result["duration"] == 0
    assert result["probes"][1]["samples"] == 0 and len(script.calls) == 2
    result, script, _clock = gate([{"name": "b", "type": "tcp", "port": 1, "interval": 10}],
                                  {"b": always("passed")}, soak=3)
    assert result["probes"][0]["samples"] == 1 and result["duration"] == 3.0
    result, script, _clock = gate([{"name": "b", "type": "tcp", "port": 1, "interval": 0}],
                                  {"b": always("passed")}, soak=2)
    assert result["probes"][0]["samples"] == 4  # at least SOAK_MIN_INTERVAL between samples


def test_msg_is_one_line():
    plan = {"a": always("failed", "sh exited 1: line one\nline two"), "b": always("failed", "no")}
    result, _script, _clock = gate([{"name": "a", "type": "command", "argv": ["sh"], "retries": 1},
                                    {"name": "b", "type": "command", "argv": ["sh"], "retries": 1}], plan)
    assert result["msg"] == "probe a failed: sh exited 1: line one line two (also failed: b)"


def test_real_gate_end_to_end(server):
    """No fakes: the default probe, clock and sleep."""
    probes = h.validate_probes([{"name": "health", "type": "http", "url": server + "/health", "interval": 0.5},
                                {"name": "queue", "type": "metric", "url": server + "/metrics", "metric": "queue_depth",
                                 "op": "<", "threshold": 10, "interval": 0.5}])
    result = h.run_gate(probes, soak=1)
    assert result["verdict"] == "passed", result
    assert [r["samples"] for r in result["probes"]] == [2, 2]
    assert 1 <= result["duration"] < 3


# ---- Prometheus exposition -----------------------------------------------------------------

def test_parse_exposition():
    samples = m.parse_exposition(METRICS)
    assert len(samples) == 12
    assert samples[1] == ("predictor_latency_seconds", {"quantile": "0.99"}, 0.2)  # timestamp ignored
    assert ("request_size_bucket", {"le": "+Inf"}, 7.0) in samples
    assert ("http_requests_total", {"path": "/health", "code": "200"}, 42.0) in samples
    assert ("temperature_celsius", {"sensor": "gpu", "note": 'a "quoted", {braced} value'}, 61.5) in samples
    assert samples[-1][0] == "weird_value" and samples[-1][2] != samples[-1][2]  # NaN
    assert m.parse_sample('inf_gauge{a="b",} +Inf') == ("inf_gauge", {"a": "b"}, float("inf"))
    assert m.parse_sample("neg -Inf") == ("neg", {}, float("-inf"))
    assert m.parse_sample('x {a="1"} 2') == ("x", {"a": "1"}, 2.0)
    assert m.parse_sample('req_total{a="1"} 2 # {trace_id="abc"} 1.0') == ("req_total", {"a": "1"}, 2.0)
    assert m.parse_sample('x{a="multi\\nline\\\\"} 1') == ("x", {"a": "multi\nline\\"}, 1.0)


@pytest.mark.parametrize("line", ['x{a="1" 2', "x", "x 1 2 3", "x abc", '{a="1"} 2', 'x{a=1} 2', 'x{a="1"b="2"} 3'])
def test_parse_exposition_refuses_garbage(line):
    with pytest.raises(ValueError, match=r"^line 2 is not a sample"):
        m.parse_exposition("# HELP x\n%s\n" % line)


def metric_probe(**kwargs):
    return probe(name="m", type="metric", url="http://h/metrics", **kwargs)


def test_evaluate_metric_every_matching_sample_must_hold():
    samples = m.parse_exposition(METRICS)
    verdict, detail = m.evaluate_metric(metric_probe(metric="http_requests_total", labels={"path": "/predict"},
                                                     op=">=", threshold=10), samples)
    assert (verdict, detail) == ("passed", '2 samples of http_requests_total{path="/predict"}, all >= 10 (990, 10)')
    verdict, detail = m.evaluate_metric(metric_probe(metric="http_requests_total", labels={"path": "/predict"},
                                                     op=">", threshold=100), samples)
    assert verdict == "failed"
    assert detail == ('http_requests_total{code="500",path="/predict"} = 10, expected > 100 (1 of 2 samples)')
    assert m.evaluate_metric(metric_probe(metric="http_requests_total", labels={"code": "200"}, op="<",
                                          threshold=1000), samples)[0] == "passed"
    assert m.evaluate_metric(metric_probe(metric="http_requests_total", labels={"code": "404"}, op="<",
                                          threshold=1), samples) == (
        "failed", 'metric http_requests_total{code="404"} not found')
    assert m.evaluate_metric(metric_probe(metric="request_size_bucket", labels={"le": "+Inf"}, op="==",
                                          threshold=7), samples) == (
        "passed", 'request_size_bucket{le="+Inf"} = 7 == 7')
    assert m.evaluate_metric(metric_probe(metric="queue_depth", op="!=", threshold=0), samples)[0] == "passed"
    # NaN satisfies no comparison but !=
    assert m.evaluate_metric(metric_probe(metric="weird_value", op="<", threshold=1), samples) == (
        "failed", "weird_value = NaN, expected < 1")
    assert m.evaluate_metric(metric_probe(metric="weird_value", op="!=", threshold=1), samples)[0] == "passed"
    assert m.evaluate_metric(metric_probe(metric="inf", op=">", threshold=1e308),
                             [("inf", {}, float("inf"))]) == ("passed", "inf = +Inf > 1e+308")
