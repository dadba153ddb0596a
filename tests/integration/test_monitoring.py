# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet monitoring on the rollout lab (rollout_lab.py, with Prometheus on the hub): metrics, alerts, pages.

Runs after test_rollout.py and test_rollout_faults.py on the same lab (their session fixture), which leave every
device on the baseline. Node exporter runs on every device (watched by the agent as its monitor), the hub's
Prometheus scrapes them and sends its alerts to the hub's Alertmanager, with the lab's short `for:` durations:
- site.yml's node_exporter and prometheus plays change nothing on a second converge;
- Prometheus shows every device's generation and release as the device itself says (and node exporter serves
  the agent's file);
- every Grafana panel's query returns series from that Prometheus;
- the monitor rule: a release switched onto a device whose node exporter is down rolls back there by itself,
  stops the rollout at the canary, and records the incident; Prometheus raised EdgeopsDeviceDown and, once the
  monitor is back, EdgeopsRollback (both read from Alertmanager); the rollout's report page shows the canary's
  failed gate;
- playbooks/fleet_status.yml writes the JSON and the page: both looked at (the pages in headless Chromium, with
  their screenshots kept as artifacts).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import REPO
from rollout_lab import CANARY, DEVICES, waived

sys.path.insert(0, os.path.join(REPO, "tests", "support"))
import look_at_page  # noqa: E402  (tests/support)
import promql  # noqa: E402  (tests/support)

BASELINE = "demo-1.1.0"
MONITOR = "prometheus-node-exporter.service"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prometheus_caught_up(lab):
    """Start the hub's Prometheus over with an empty database if the wall clock is behind its newest sample.

    Prometheus refuses every sample older than its newest one (out of bounds) until the clock passes it again: this
    machine's clock has been seen stepping back by about an hour during a suite run (../shared/LAB-NOTES.md), after
    which Prometheus showed no series at all. Measured here, storage.tsdb.out_of_order_time_window does not change
    that (Prometheus 2.42). Returns whether it had to."""
    text = OPENER.open("http://127.0.0.1:%d/metrics" % lab.prometheus_port, timeout=10).read().decode()
    newest = float(re.search(r"^prometheus_tsdb_head_max_time (\S+)$", text, re.M).group(1)) / 1000
    if newest <= time.time() + 30:
        return False
    sys.stderr.write("the clock is %d s behind Prometheus' newest sample: starting it over\n" % (newest - time.time()))
    reset = lab.dexec("site01-hub", "sh", "-c", "systemctl stop prometheus && find /var/lib/prometheus/metrics2 "
                      "-mindepth 1 -delete && systemctl start prometheus")
    assert reset.returncode == 0, reset.stderr

    def ready():
        try:
            return OPENER.open("http://127.0.0.1:%d/-/ready" % lab.prometheus_port, timeout=5).status == 200
        except OSError:
            return False
    wait_for("Prometheus ready after starting over", ready, 60)
    return True


@pytest.fixture(scope="module")
def lab(rollout_lab):
    lab = rollout_lab.start_from(BASELINE)
    prometheus_caught_up(lab)
    return lab


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    path = os.environ.get("EDGEOPS_ARTIFACTS_DIR") or str(tmp_path_factory.mktemp("artifacts"))
    path = os.path.join(path, "monitoring")
    os.makedirs(path, exist_ok=True)
    return path


def get_json(url):
    return json.loads(OPENER.open(url, timeout=10).read().decode())


def query(lab, expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (lab.prometheus_port, urllib.parse.urlencode({"query": expr}))
    answer = get_json(url)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def alertmanager_alerts(lab, alertname):
    url = "http://127.0.0.1:%d/api/v2/alerts?%s" % (
        lab.alertmanager_port, urllib.parse.urlencode({"filter": 'alertname="%s"' % alertname}))
    return get_json(url)


def targets(lab):
    """What Prometheus says of its targets (for a failure's message)."""
    answer = get_json("http://127.0.0.1:%d/api/v1/targets" % lab.prometheus_port)
    return [(t["labels"].get("device") or t["labels"].get("job"), t["health"], t.get("lastError"))
            for t in answer["data"]["activeTargets"]]


def wait_for(what, check, timeout, seen=None):
    """check() until it returns something true (returned) or the deadline passes (fails with the last value, or
    with what seen() says then)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(2)
    raise AssertionError("%s: not after %d s; last seen: %r" % (what, timeout, seen() if seen else last))


def test_site_yml_monitoring_plays_change_nothing_on_a_second_converge(lab):
    run = lab.playbook("site.yml", "--tags", "node_exporter,prometheus")
    assert run.rc == 0, run.out[-5000:]
    hosts = run.recap
    assert set(DEVICES) | {"site01-hub"} <= set(hosts), hosts
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in hosts.values()), run.out[-5000:]


def test_prometheus_shows_every_device_generation_as_the_device_says(lab):
    prometheus_caught_up(lab)
    expected = {}
    for device in DEVICES:
        state = lab.listing(device)
        expected[device] = state["current"]
        # The agent's file, as node exporter itself serves it on the device.
        scrape = lab.dexec(device, "python3", "-c", "import urllib.request as u; print(u.urlopen("
                           "'http://127.0.0.1:9100/metrics', timeout=10).read().decode())")
        assert scrape.returncode == 0, scrape.stderr
        assert "edgeops_generation_current %d\n" % state["current"] in scrape.stdout, scrape.stdout[-2000:]

    def observed():
        current = dict((r["metric"]["device"], int(float(r["value"][1])))
                       for r in query(lab, 'edgeops_generation_current{site="site01"}'))
        releases = dict((r["metric"]["device"], r["metric"]["release"])
                        for r in query(lab, 'edgeops_release_info{pointer="current",site="site01"}'))
        return current, releases, targets(lab)

    def as_the_devices_say():
        current, releases, _targets = observed()
        return current == expected and releases == dict.fromkeys(DEVICES, BASELINE)
    wait_for("every device's generation in Prometheus, as %s" % expected, as_the_devices_say, 60, observed)
    assert query(lab, 'up{job="edgeops-devices"} == 0') == []


def test_every_dashboard_panel_query_returns_series(lab):
    prometheus_caught_up(lab)
    results = []

    def every_query_answers():
        results[:] = promql.check_queries("http://127.0.0.1:%d" % lab.prometheus_port)
        return len(results) >= 8 and not [r for r in results if r[4] or not r[3]]
    # (a range of 1m needs two scrapes in it: after a start-over that takes a few seconds)
    wait_for("every dashboard query returns series", every_query_answers, 60,
             lambda: [r for r in results if r[4] or not r[3]] or results)


def test_a_switch_with_the_monitor_down_rolls_back_by_itself_alerts_and_is_reported(lab, artifacts):
    release = "demo-1.1.1-monitor"
    lab.derive(BASELINE, release, lambda manifest: None)  # the same workloads: only the monitor is down
    if prometheus_caught_up(lab):  # the canary's counters at 0 must be in it before its rollback
        wait_for("the canary's rollback counters in Prometheus",
                 lambda: query(lab, 'edgeops_rollbacks_total{device="%s",reason="health-rollback"}' % CANARY), 60)
    assert lab.dexec(CANARY, "systemctl", "stop", MONITOR).returncode == 0
    try:
        run = lab.rollout(release, *waived())
        assert run.rc != 0, run.out[-6000:]
        record = lab.record(release)
        assert record["status"] == "aborted", record
        assert record["reason"].startswith("canary %s failed: " % CANARY), record["reason"]
        assert "monitor %s" % MONITOR in record["reason"], record["reason"]
        lab.assert_all_on(BASELINE, release)
        incident = lab.listing(CANARY)["incidents"][-1]
        assert incident["what"] == "health-rollback" and "monitor %s" % MONITOR in incident["reason"], incident
        # The monitor that died: Prometheus no longer scrapes the device.
        wait_for("EdgeopsDeviceDown for %s in Alertmanager" % CANARY,
                 lambda: [a for a in alertmanager_alerts(lab, "EdgeopsDeviceDown") if a["labels"].get("device") == CANARY],
                 90, lambda: (query(lab, "ALERTS"), targets(lab)))
    finally:
        assert lab.dexec(CANARY, "systemctl", "start", MONITOR).returncode == 0
    # Back up, the device's counters show the rollback it made while nobody could see it.
    alerts = wait_for("EdgeopsRollback (health-rollback) for %s in Alertmanager" % CANARY,
                      lambda: [a for a in alertmanager_alerts(lab, "EdgeopsRollback")
                               if a["labels"].get("device") == CANARY and a["labels"].get("reason") == "health-rollback"],
                      120, lambda: (query(lab, "ALERTS"), query(lab, 'edgeops_rollbacks_total{device="%s"}' % CANARY)))
    assert alerts[0]["labels"]["site"] == "site01", alerts

    page = os.path.join(lab.records, release + ".html")
    assert os.path.exists(page), os.listdir(lab.records)
    dom, console, _png = look_at_page.look_at_page(page, os.path.join(artifacts, "rollout-report.png"))
    assert console == [], console
    text = look_at_page.visible_text(dom)
    for wanted in (release, CANARY, "aborted", "monitor %s" % MONITOR):
        assert wanted in text, wanted


def test_fleet_status_writes_the_json_and_the_page(lab, artifacts):
    out = os.path.join(lab.tmp, "fleet-status")
    run = lab.playbook("playbooks/fleet_status.yml", "-e", "fleet_status_dir=%s" % out)
    assert run.rc == 0, run.out[-5000:]
    with open(os.path.join(out, "fleet-status.json")) as handle:
        status = json.load(handle)
    devices = status["devices"]
    assert set(devices) == set(DEVICES), devices.keys()
    for device in DEVICES:
        assert devices[device]["release"] == BASELINE, devices[device]
    assert any(i["what"] == "health-rollback" for i in devices[CANARY]["incidents"]), devices[CANARY]
    assert devices[CANARY]["since_what"] == "confirmed", devices[CANARY]
    dom, console, _png = look_at_page.look_at_page(os.path.join(out, "fleet-status.html"),
                                                   os.path.join(artifacts, "fleet-status.png"))
    assert console == [], console
    text = look_at_page.visible_text(dom)
    for wanted in DEVICES + [BASELINE, "site01", "health-rollback"]:
        assert wanted in text, wanted
