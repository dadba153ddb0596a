# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged rollouts on a real lab (rollout_lab.py: a hub with registry and Alertmanager, four devices): bad releases.

Fault injection: four bad releases (crash, unhealthy after start, /predict 500, a firewall that blocks new SSH
logins) each stop at the canary; a release that passes the canary but fails on part of a later wave is stopped by
the fleet-wide failure budget after that wave's first batch. Every time, every device this rollout switched goes back to the release it ran
before, the incident is in the record and the alert in Alertmanager. The good path: test_rollout.py, which runs first
on the same lab and leaves every device on the baseline; run alone, this module rolls the baseline out itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

from rollout_lab import CANARY, DEVICES, waived

BASELINE = "demo-1.1.0"
# Devices whose (simulated) line sensor is missing: the partial release's probe fails there, and only there.
NO_SENSOR_TAG = "no-sensor"
NO_SENSOR_MARKER = "/etc/edgeops-test/no-sensor"


@pytest.fixture(scope="module")
def lab(rollout_lab):
    return rollout_lab.start_from(BASELINE, "demo-1.1.0-bad-crash", "demo-1.1.0-bad-unhealthy", "demo-1.1.0-bad-500",
                                  "demo-1.1.0-bad-firewall")


def wait_for_alert(lab, release, device, reason, timeout=60):
    """The alert Alertmanager holds for the device (polled: it is posted at the end of the run)."""
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        got = lab.alerts(release)
        if any(a["labels"]["device"] == device and a["labels"]["reason"] == reason and a["labels"]["site"] == "site01"
               for a in got):
            return got
        time.sleep(1)
    raise AssertionError("no %s alert for %s of %s in Alertmanager after %d s: %s" % (reason, device, release, timeout,
                                                                                      got))


@pytest.mark.parametrize("release, reason", [
    ("demo-1.1.0-bad-crash", "switch: "),
    ("demo-1.1.0-bad-unhealthy", "health gate on the device: "),
    ("demo-1.1.0-bad-500", "predict"),
    ("demo-1.1.0-bad-firewall", "confirm: "),
])
def test_a_bad_release_stops_at_the_canary_and_everything_goes_back(lab, release, reason):
    # The unhealthy predictor fails its health check ~20 s after start: a 30 s soak catches it. The firewall release
    # cannot be confirmed: the canary reverts by itself after its confirm timeout, which the rollout waits for (so a
    # short one, >= soak + 30 s as the policy requires).
    policy = {"soak": 30} if "unhealthy" in release else {"confirm_timeout": 45} if "firewall" in release else {}
    run = lab.rollout(release, *waived(**policy))
    assert run.rc != 0, run.out[-6000:]
    record = lab.record(release)
    assert record["status"] == "aborted", record
    assert record["reason"].startswith("canary %s failed: " % CANARY), record["reason"]
    assert reason in record["reason"], record["reason"]
    assert "rollout %s aborted: canary %s failed" % (release, CANARY) in run.out
    assert [w["wave"] for w in record["waves"]] == [0]
    for device in DEVICES:
        if device != CANARY:
            assert not lab.ever_switched(device, release), (device, lab.listing(device))
    lab.assert_all_on(BASELINE, release)
    kinds = set(i["kind"] for i in record["incidents"] if i["device"] == CANARY)
    assert "gate-failed" in kinds, record["incidents"]
    if "firewall" in release:
        # New SSH logins were refused: the device reverted by itself (dead-man), as its own incident says.
        assert "deadman-revert" in kinds, record["incidents"]
    wait_for_alert(lab, release, CANARY, "gate-failed")


def test_a_release_failing_on_part_of_a_later_wave_is_stopped_by_the_failure_budget(lab):
    # The fleet file tags one device of wave 1 (never the canary) "no-sensor"; the release probes the sensor.
    wave1 = sorted(d for d, wave in lab.wave_of().items() if wave == 1)
    broken = wave1[0]
    lab.tags = {broken: [NO_SENSOR_TAG]}
    lab.write_fleet("lab")
    for device in DEVICES:  # the fault is in the device, as its tag says; the release is the same everywhere
        marker = ["sh", "-c", "mkdir -p /etc/edgeops-test && touch %s" % NO_SENSOR_MARKER]
        rm = ["rm", "-f", NO_SENSOR_MARKER]
        assert lab.dexec(device, *(marker if device == broken else rm)).returncode == 0, device

    def needs_the_sensor(manifest):
        manifest["workloads"]["predictor"].setdefault("probes", []).append(
            {"name": "line-sensor", "type": "command", "argv": ["sh", "-c", "test ! -e %s" % NO_SENSOR_MARKER],
             "retries": 2, "interval": 1})
    release = "demo-1.1.1-sensor"
    lab.derive(BASELINE, release, needs_the_sensor)
    # The fleet file's budget: more than 10 % of the executed devices failed (after at least 1) aborts. Wave 1 (two
    # devices) switches in batches of one, the broken device first (by name): the budget decides after that batch.
    run = lab.rollout(release, "-e", "rollout_batch_size=1", *waived())
    assert run.rc != 0, run.out[-6000:]
    record = lab.record(release)
    assert record["status"] == "aborted", record
    # The canary passed; wave 1's first batch failed on the device without the sensor: 1 of 2 executed devices.
    assert [(w["wave"], w.get("batch")) for w in record["waves"]] == [(0, "1/1"), (1, "1/2")], record["waves"]
    assert record["reason"] == "failure budget exceeded: 1 of 2 executed devices failed (50.0% > 10%)", record["reason"]
    assert record["devices"][broken]["outcome"] == "failed", record["devices"][broken]
    switched = [CANARY, broken]  # the second batch of wave 1 and the last wave never started
    for device in DEVICES:
        if device in switched:  # ran it, then went back: the canary by the rollback, the broken one by its gate
            assert lab.ever_switched(device, release), (device, lab.listing(device))
            if device != broken:
                assert record["devices"][device]["outcome"] == "rolled-back", (device, record["devices"][device])
        else:
            assert not lab.ever_switched(device, release), (device, lab.listing(device))
    lab.assert_all_on(BASELINE, release)
    kinds = set(i["kind"] for i in record["incidents"] if i["device"] == broken)
    assert "gate-failed" in kinds, record["incidents"]
    assert not [i for i in record["incidents"] if i["device"] == CANARY and i["kind"] == "gate-failed"], \
        record["incidents"]
    wait_for_alert(lab, release, broken, "gate-failed")


def test_no_secret_in_any_output_or_record(lab):
    lab.assert_no_secret_anywhere()
