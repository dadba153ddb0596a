# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ten devices, waves [1, 10%, 50%, 100%] and a light workload: the suite's version of benchmarks/rollout.py.

The light workload (tests/support/light: busybox httpd, a few MB, no CPU at rest) lets ten lab devices roll out on
a 2-CPU machine beside the suite's other labs; the AI samples' rollouts are test_rollout.py's, on four devices.
The run uses forks 4, so the last wave (five devices) switches in two batches, the second after the first was judged.
A good release reaches every device; a bad one (its /health answers 404) stops at the canary and every device
ends on the good one, the nine others without having run the bad one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from rollout_lab import LIGHT_BAD, LIGHT_GOOD, SCALE_CANARY, SCALE_DEVICES, waived

# The lab (rollout_lab.py's SCALE_*): waves [1, 10%, 50%, 100%] of 1, 1, 3 and 5 devices with its salt; the last one
# switches in two batches (4, then 1).
DEVICES = SCALE_DEVICES
CANARY = SCALE_CANARY
GOOD, BAD = LIGHT_GOOD, LIGHT_BAD
FORKS = 4


@pytest.fixture(scope="module")
def lab(rollout_scale_lab):
    """The session's ten-device light lab (conftest.py), which test_awx_jobs.py uses next."""
    return rollout_scale_lab


def served_version(lab, device):
    out = lab.dexec(device, "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/version")
    return out.stdout.strip() if out.returncode == 0 else "(no answer: %s)" % out.stderr.strip()


def test_ten_devices_take_a_light_release_wave_by_wave_in_batches_of_forks(lab):
    run = lab.rollout(GOOD, "-f", str(FORKS), *waived())
    assert run.rc == 0, run.out[-6000:]
    lab.assert_all_on(GOOD)
    assert dict((d, served_version(lab, d)) for d in DEVICES) == dict((d, "1.1.0") for d in DEVICES)
    record = lab.record(GOOD)
    assert record["status"] == "completed", record.get("reason")
    assert all(record["devices"][d]["outcome"] == "confirmed" for d in DEVICES), record["devices"]
    assert record["waves"][0]["devices"] == [CANARY], record["waves"][0]
    assert sorted(d for w in record["waves"] for d in w["devices"]) == DEVICES
    # Every batch holds at most forks devices, and a wave of more is cut into batches "i/n" one after the other.
    planned = lab.wave_of()
    assert [sum(1 for w in planned.values() if w == n) for n in range(4)] == [1, 1, 3, 5], planned
    for entry in record["waves"]:
        assert 1 <= len(entry["devices"]) <= FORKS, entry
        assert all(planned[d] == entry["wave"] for d in entry["devices"]), (entry, planned)
    for wave in set(planned.values()):
        size = sum(1 for w in planned.values() if w == wave)
        batches = [e["batch"] for e in record["waves"] if e["wave"] == wave]
        count = -(-size // FORKS)
        assert batches == ["%d/%d" % (i, count) for i in range(1, count + 1)], (wave, size, record["waves"])
    for before, after in zip(record["waves"], record["waves"][1:]):
        assert before["finished"] <= after["started"], record["waves"]
    assert any(e["batch"] != "1/1" for e in record["waves"]), ("no wave was larger than forks", planned)


def test_a_bad_light_release_stops_at_the_canary_and_the_nine_others_never_run_it(lab):
    run = lab.rollout(BAD, "-f", str(FORKS), *waived())
    assert run.rc != 0, run.out[-6000:]
    record = lab.record(BAD)
    assert record["status"] == "aborted", record
    assert record["reason"].startswith("canary %s failed: " % CANARY), record["reason"]
    assert [e["wave"] for e in record["waves"]] == [0], record["waves"]
    assert lab.ever_switched(CANARY, BAD), lab.listing(CANARY)
    for device in DEVICES[1:]:
        assert not lab.ever_switched(device, BAD), (device, lab.listing(device))
    lab.assert_all_on(GOOD, BAD)
    assert served_version(lab, CANARY) == "1.1.0"
    assert "gate-failed" in set(i["kind"] for i in record["incidents"] if i["device"] == CANARY), record["incidents"]


def test_no_secret_in_any_output_or_record(lab):
    lab.assert_no_secret_anywhere()
