# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML pages (rollout report, fleet status) and the short rollout summary.

The records here are made by the same functions the rollout_record module calls (``_rollout``), then passed through
JSON as the module writes them; ``rollout_record_fixture`` and ``fleet_status_fixture`` are also what
tests/integration/test_report_pages.py renders in Chromium.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _pages as pages
from ansible_collections.edgeops.fleet.plugins.module_utils import _rollout as ro

HOSTILE = '<script>alert("x")</script>&\'"'
CANARY_REASON = ("health gate on the device: probe predictor-predict failed: HTTP 500 from "
                 "http://127.0.0.1:8080/predict (expected 200)")
GATE_REASON = "health gate from the controller: probe predictor-health failed during soak at 12 s: connection refused"
UNREACHABLE_REASON = "unreachable (last step: confirm): ssh: connect to host 10.1.2.3 port 22: Connection timed out"
POLICY = {"wave_plan": [1, "10%", "50%", "100%"], "soak": 30, "failure_threshold": 10, "min_executed": 20,
          "unreachable": "fail", "rollback_switched": True, "confirm_timeout": 120, "environment": "production",
          "approval_waived": False}


def _at(t0, seconds):
    return (t0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout_record_fixture(devices=12, per_site=12, canary_fails=False, failed=(), unreachable=(), stage_failed=(),
                           batch=20, names=None, release="demo-1.1.0"):
    """A rollout record as rollout_record writes it: start (approved by alice), stage, waves in batches, finish.

    ``failed``/``unreachable``/``stage_failed``: device names with that outcome. With ``canary_fails`` the canary
    fails its health gate on the device and the rollout aborts there.
    """
    t0 = datetime.datetime(2026, 12, 4, 10, 0, 0)
    names = list(names) if names else ["site%03d-dev%02d" % (i // per_site + 1, i % per_site + 1) for i in range(devices)]
    waves = {}
    for i, name in enumerate(names):
        waves[name] = 0 if i == 0 else (1 if i <= max(1, len(names) // 10) else (2 if i <= len(names) // 2 else 3))
    plan = dict((n, {"site": n.split("-dev")[0] if "-dev" in n else "site-x", "wave": waves[n]}) for n in names)
    approval = ro.check_approval(ro.approval_entry(release, "a" * 64, "alice", _at(t0, -3600)), release, "a" * 64,
                                 "production", False, "/approvals/%s.json" % release)
    record = ro.start(None, "start", release, release, "releases/%s.yml" % release, "a" * 64, POLICY, plan, approval,
                      _at(t0, 0))
    ro.record_stage(record, dict((n, {"outcome": "stage-failed" if n in stage_failed else "staged", "previous": 4,
                                      "generation": 5, "reason": "stage: pull of registry.site/predictor failed: "
                                      "no space left on device" if n in stage_failed else ""}) for n in names),
                    _at(t0, 90))
    clock = 120
    for number in sorted(set(waves.values())):
        members = [n for n in names if waves[n] == number and n not in stage_failed]
        chunks = [members[i:i + batch] for i in range(0, len(members), batch)] or [[]]
        for index, chunk in enumerate(chunks):
            results = {}
            for name in chunk:
                if number == 0 and canary_fails:
                    results[name] = {"outcome": "failed", "reason": CANARY_REASON, "switched": True, "rolled_back": True}
                elif name in failed:
                    results[name] = {"outcome": "failed", "reason": GATE_REASON, "switched": True, "rolled_back": True}
                elif name in unreachable:
                    results[name] = {"outcome": "unreachable", "reason": UNREACHABLE_REASON, "switched": True}
                else:
                    results[name] = {"outcome": "confirmed", "switched": True}
            took = 45 + 5 * len(chunk) // 10
            decision, _reason = ro.record_wave(record, number, results, _at(t0, clock), _at(t0, clock + took),
                                               batch="%d/%d" % (index + 1, len(chunks)) if len(chunks) > 1 else None)
            clock += took + 3
            if decision != "continue":
                break
        if record["status"] != "running":
            break
    final = {}
    if record["status"] == "aborted":
        for name in ro.rollback_targets(record, ("confirmed",)):
            final[name] = {"current": 4, "rolled_back": True, "rollback_attempted": True}
    ro.finish(record, final, _at(t0, clock + 30))
    return json.loads(json.dumps(record))


def fleet_status_fixture(devices=12, per_site=12, unreachable=(), unhealthy=(), drift=(), pending=(), names=None):
    """Fleet status data as playbooks/fleet_status.yml builds it, from results shaped like generation_info's and
    ``edgeops-gen health``'s."""
    names = list(names) if names else ["site%03d-dev%02d" % (i // per_site + 1, i % per_site + 1) for i in range(devices)]
    entries = []
    for name in names:
        site = name.split("-dev")[0] if "-dev" in name else "site-x"
        if name in unreachable:
            gens = {"unreachable": True, "changed": False,
                    "msg": "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 22: No route to host"}
            entries.append(pages.fleet_status_device(name, site, gens, None))
            continue
        current = 6 if name in pending else 5
        gens = {"changed": False, "current": current, "confirmed": 5, "pending": 6 if name in pending else None,
                "generations": [
                    {"id": 4, "release": "demo-1.0.0", "created": "2026-11-20T08:00:00Z", "state": "confirmed",
                     "current": False, "confirmed": False, "deadline": None, "intact": True, "images": []},
                    {"id": 5, "release": "demo-1.1.0", "created": "2026-12-04T10:01:00Z", "state": "confirmed",
                     "current": current == 5, "confirmed": True, "deadline": None, "intact": True, "images": []},
                ] + ([{"id": 6, "release": "demo-1.2.0-rc1", "created": "2026-12-04T11:00:00Z", "state": "pending",
                       "current": True, "confirmed": False, "deadline": "2026-12-04T11:02:00Z", "intact": True,
                       "images": []}] if name in pending else []),
                "history": [4, 5], "boot_failures": {},
                "incidents": [{"seq": 1, "time": "2026-11-30T03:00:00Z", "host": name, "what": "deadman-revert",
                               "from": 5, "to": 4, "reason": "not confirmed within 120 s"}],
                "drift": ["container predictor: image differs from the generation"] if name in drift else []}
        checks = [{"name": "predictor-health", "type": "http", "passed": name not in unhealthy, "attempts": 3,
                   "detail": "HTTP 503" if name in unhealthy else "HTTP 200"}]
        health = {"changed": False, "rc": 1 if name in unhealthy else 0, "stdout": json.dumps(checks), "stderr": ""}
        entries.append(pages.fleet_status_device(name, site, gens, health))
    return json.loads(json.dumps(pages.fleet_status_data(entries, targets="edge_devices",
                                                         generated="2026-12-04T12:00:00Z")))


def _text(page):
    """The page's visible text, roughly (tags out, entities in): what a person reads."""
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))).split())


# ---- escaping ------------------------------------------------------------------------------------------

def test_hostile_names_and_reasons_are_escaped_everywhere():
    names = ["site001-dev01", HOSTILE, "site001-dev03"]
    record = rollout_record_fixture(names=names, failed=[HOSTILE])
    record["devices"][HOSTILE]["site"] = HOSTILE
    record["reason"] = HOSTILE
    record["approval"]["approver"] = HOSTILE
    record["incidents"].append({"time": "2026-12-04T10:10:00Z", "device": HOSTILE, "site": HOSTILE, "release": HOSTILE,
                                "kind": HOSTILE, "reason": HOSTILE, "generation": HOSTILE})
    page = pages.rollout_report_html(record, "/records/%s.json" % HOSTILE)
    assert "<script" not in page and "alert(\"x\")</script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;&quot;" in page
    assert HOSTILE in _text(page)
    status = fleet_status_fixture(names=[HOSTILE, "site001-dev02"], unhealthy=[HOSTILE])
    page = pages.fleet_status_html(status)
    assert "<script" not in page and HOSTILE in _text(page)
    # A hostile site name cannot break out of an attribute either (the site's anchor id).
    assert 'id="site-site-x"' in page


def test_pages_are_self_contained():
    for page in (pages.rollout_report_html(rollout_record_fixture(canary_fails=True)),
                 pages.fleet_status_html(fleet_status_fixture())):
        assert page.startswith("<!DOCTYPE html>")
        assert "<script" not in page and "<link" not in page and "<img" not in page and "@import" not in page
        assert not re.search(r"""(src|href)\s*=|url\(""", page)
        assert "default-src 'none'" in page


# ---- the rollout report --------------------------------------------------------------------------------

def test_the_canary_failure_says_which_gate_and_probe():
    record = rollout_record_fixture(canary_fails=True)
    assert record["status"] == "aborted"
    page = pages.rollout_report_html(record, "/records/demo-1.1.0.json")
    text = _text(page)
    assert "canary site001-dev01 failed: health gate on the device: probe predictor-predict failed" in text
    row = text[text.index("Failed, rolled back, unreachable (1)"):text.index("Per site")]
    assert "site001-dev01" in row and "health gate on the device" in row and "predictor-predict" in row
    assert "alice at 2026-12-04T09:00:00Z (environment production)" in text
    assert pages.gate_of(CANARY_REASON) == ("health gate on the device", "predictor-predict")
    assert pages.gate_of(UNREACHABLE_REASON) == ("unreachable at confirm", "")
    assert pages.gate_of("") == ("", "")


def test_1000_devices_stay_small_and_list_failures_first():
    failed = ["site%03d-dev%02d" % (s, 5) for s in range(10, 40)]
    lost = ["site%03d-dev%02d" % (s, 7) for s in range(50, 52)]
    record = rollout_record_fixture(devices=1000, failed=failed, unreachable=lost, stage_failed=["site080-dev01"])
    counts = ro.counts(record)
    assert counts["failed"] > 20 and counts["confirmed"] > 900
    page = pages.rollout_report_html(record, "/records/demo-1.1.0.json")
    assert len(page) < 400 * 1024, len(page)
    problems, confirmed = page.index('id="problems"'), page.index('id="confirmed"')
    assert problems < confirmed
    section = page[problems:page.index('id="sites"')]
    for name in failed[:counts["failed"]] + lost:
        if record["devices"][name]["outcome"] in pages.PROBLEMS:
            assert name in section
    # The confirmed devices are not one row each: counted per site, their names in collapsed lists.
    assert page.count("<tr>") < counts["failed"] + counts.get("unreachable", 0) + 200
    assert "<details><summary>site001: " in page


def test_the_timeline_scales_bars_to_the_rollout():
    record = rollout_record_fixture(devices=100, batch=20)
    line = pages.timeline(record)
    assert line["start"] == "2026-12-04T10:00:00Z" and line["seconds"] > 0
    labels = [row["label"] for row in line["rows"]]
    assert labels[0] == "attempt 1: start, stage" and labels[1] == "wave 0 (canary)"
    assert "wave 3, 3 batches" in labels
    stage = line["rows"][0]["bars"][0]
    assert stage["left"] == 0 and 0 < stage["width"] < 100
    bars = [seg for row in line["rows"][1:] for seg in row["bars"]]
    assert len(bars) == len(record["waves"])
    lefts = [seg["left"] for seg in bars]
    assert lefts == sorted(lefts) and all(0 <= b["left"] and b["left"] + b["width"] <= 100.001 for b in bars)
    # The last batch ends where the rollout's span ends (the finish comes 30 s later).
    last = bars[-1]
    assert 90 < last["left"] + last["width"] < 100
    page = pages.rollout_report_html(record)
    assert page.count('class="bar ') == len(bars) + 1
    # A batch that stopped the rollout is marked.
    aborted = rollout_record_fixture(canary_fails=True)
    assert pages.timeline(aborted)["rows"][1]["bars"][0]["tone"] == "bad stop"


def test_a_record_without_waves_or_devices_still_makes_a_page():
    record = ro.start(None, "start", "r0", "r0", "r0.yml", "a" * 64, POLICY, {}, None, "2026-12-04T10:00:00Z")
    ro.finish(record, {}, "2026-12-04T10:00:05Z")
    page = pages.rollout_report_html(json.loads(json.dumps(record)))
    assert "Confirmed (0)" in _text(page) and "Failed, rolled back, unreachable (0)" in _text(page)
    with pytest.raises(pages.PageError):
        pages.rollout_report_html({"id": "x"})


# ---- the short summary ---------------------------------------------------------------------------------

def test_the_summary_at_1000_devices_is_short():
    failed = ["site%03d-dev%02d" % (s, 5) for s in range(10, 40)]
    record = rollout_record_fixture(devices=1000, failed=failed, unreachable=["site050-dev07"])
    lines = ro.summary(record, "/records/demo-1.1.0.json", "/records/demo-1.1.0.html")
    assert len(lines) < 40, "\n".join(lines)
    assert lines[0].startswith("rollout demo-1.1.0 of release demo-1.1.0: ")
    assert [l for l in lines if l.startswith("  devices: 1000 - ")]
    table = lines.index([l for l in lines if l.lstrip().startswith("DEVICE")][0])
    first = lines[table + 1].split()
    assert first[3] == "failed" and first[0] in failed
    assert re.match(r"  \.\.\. and \d+ more \(failed \d+\), see the report$", lines[-3]), lines[-3]
    assert [l for l in lines if l.split()[3:4] == ["unreachable"]]
    assert lines[-2:] == ["record (JSON report): /records/demo-1.1.0.json",
                          "report (HTML page): /records/demo-1.1.0.html"]
    # One line per wave, its batches summed.
    assert [l for l in lines if re.match(r"  wave 3: \d+ device\(s\) in \d+ batches in \d+ s, confirmed \d+", l)]


def test_a_small_rollout_lists_every_device_in_the_summary():
    lines = ro.summary(rollout_record_fixture(devices=6))
    assert sum(1 for l in lines if l.startswith("  site001-dev0")) == 6
    assert not [l for l in lines if "see the report" in l]


# ---- the fleet status ----------------------------------------------------------------------------------

def test_fleet_status_of_an_empty_fleet():
    data = pages.fleet_status_data([], targets="edge_devices", generated="2026-12-04T12:00:00Z")
    assert data["counts"]["devices"] == 0 and data["sites"] == {}
    page = pages.fleet_status_html(data)
    assert "No devices: the targets matched none." in _text(page)
    with pytest.raises(pages.PageError):
        pages.fleet_status_html([])


def test_unreachable_devices_are_reported_as_such_not_dropped():
    data = fleet_status_fixture(devices=24, unreachable=["site002-dev03"], unhealthy=["site001-dev02"],
                                drift=["site001-dev04"], pending=["site002-dev09"])
    lost = data["devices"]["site002-dev03"]
    assert lost["reachable"] is False and "No route to host" in lost["error"]
    assert data["counts"] == {"devices": 24, "unreachable": 1, "unhealthy": 1, "healthy": 22, "drift": 1, "pending": 1,
                              "errors": 0}
    assert data["releases"] == {"demo-1.1.0": 22, "demo-1.2.0-rc1": 1}
    ok = data["devices"]["site001-dev01"]
    assert (ok["release"], ok["current"], ok["confirmed"], ok["since"], ok["since_what"]) == (
        "demo-1.1.0", 5, 5, "2026-12-04T10:01:00Z", "staged")
    page = pages.fleet_status_html(data)
    text = _text(page)
    attention = text[text.index("Needs a look (4)"):text.index("Sites (2)")]
    for name in ("site002-dev03", "site001-dev02", "site001-dev04", "site002-dev09"):
        assert name in attention
    assert "unreachable" in attention and "predictor-health" in attention and "HTTP 503" in attention
    # A site with a problem is open; a site without one is collapsed in a large fleet, open in a small one.
    assert '<details open id="site-site001">' in page
    assert '<details open id="site-site001">' in pages.fleet_status_html(fleet_status_fixture(devices=12))
    large = fleet_status_fixture(devices=pages.OPEN_SITES_UP_TO + 1, unhealthy=["site001-dev02"])
    page = pages.fleet_status_html(large)
    assert '<details open id="site-site001">' in page and '<details id="site-site002">' in page


def test_since_uses_the_confirm_time_when_the_listing_has_it():
    gens = {"current": 5, "confirmed": 5, "pending": None, "incidents": [], "drift": [],
            "generations": [{"id": 5, "release": "r", "created": "2026-12-01T00:00:00Z",
                             "confirmed_at": "2026-12-02T00:00:00Z"}]}
    entry = pages.fleet_status_device("d", "s", gens, {"skipped": True})
    assert (entry["since"], entry["since_what"], entry["health"]["state"]) == (
        "2026-12-02T00:00:00Z", "confirmed", "not-checked")
    failed = pages.fleet_status_device("d", "s", {"failed": True, "msg": "no /var/lib/edgeops"}, None)
    assert failed["reachable"] and failed["error"] == "no /var/lib/edgeops" and "error" in pages.device_problems(failed)
    missing = pages.fleet_status_device("d", "s", None, None)
    assert missing["reachable"] is False and missing["error"] == "not gathered"
    unknown = pages.fleet_status_device("d", "s", gens, {"rc": 127, "stdout": "", "stderr": "edgeops-gen: not found"})
    assert unknown["health"]["state"] == "unknown" and "rc 127" in unknown["health"]["detail"]


def test_1000_devices_fleet_status_stays_readable():
    bad = ["site%03d-dev%02d" % (s, 3) for s in range(1, 84)]
    data = fleet_status_fixture(devices=1000, unreachable=bad[:40], unhealthy=bad[40:])
    page = pages.fleet_status_html(data)
    assert len(page) < 1500 * 1024, len(page)
    assert page.index('id="attention"') < page.index('id="sites"')
    assert "Needs a look (83)" in _text(page)


# ---- the rollout_record module writes the page beside the record ---------------------------------------

def _module(capsys, tmp_path, check_mode=False, **args):
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.edgeops.fleet.plugins.modules import rollout_record

    manifest = tmp_path / "r2.yml"
    manifest.write_text("release: r2\n")
    args = dict({"manifest": str(manifest), "release": "r2", "record_dir": str(tmp_path / "records"),
                 "approvals_dir": str(tmp_path / "approvals"), "_ansible_check_mode": check_mode}, **args)
    with patch_module_args(args), pytest.raises(SystemExit):
        rollout_record.main()
    return json.loads(capsys.readouterr().out)


def test_finish_writes_the_report_beside_the_record_and_names_both_in_the_summary(capsys, tmp_path):
    devices = {"dev01": {"site": "site01", "wave": 0}, HOSTILE: {"site": "site01", "wave": 1}}
    policy = dict(POLICY, environment="lab", approval_waived=True, min_executed=1)
    start = _module(capsys, tmp_path, step="start", policy=policy, devices=devices, approval_waived=True,
                    environment="lab")
    token = start["lock_token"]
    _module(capsys, tmp_path, step="stage", lock_token=token, results=dict(
        (n, {"outcome": "staged", "previous": 1, "generation": 2}) for n in devices))
    _module(capsys, tmp_path, step="wave", wave=0, lock_token=token, results={
        "dev01": {"outcome": "failed", "reason": CANARY_REASON, "switched": True, "rolled_back": True}})
    # Check mode writes no page.
    dry = _module(capsys, tmp_path, check_mode=True, step="finish", lock_token=token, results={})
    assert dry["report"] == "" and not (tmp_path / "records" / "r2.html").exists()
    done = _module(capsys, tmp_path, step="finish", lock_token=token, results={})
    record_path, report = str(tmp_path / "records" / "r2.json"), str(tmp_path / "records" / "r2.html")
    assert done["status"] == "aborted" and done["report"] == report
    assert done["summary"][-2:] == ["record (JSON report): " + record_path, "report (HTML page): " + report]
    page = (tmp_path / "records" / "r2.html").read_text()
    assert "<script" not in page and "predictor-predict" in page and "&lt;script&gt;" in page
    with open(record_path) as handle:
        assert page == pages.rollout_report_html(json.load(handle), record_path, generated=re.search(
            r"Written by edgeops.fleet at ([0-9TZ:-]+)", page).group(1))


def test_a_report_that_cannot_be_written_warns_and_the_record_still_closes(capsys, tmp_path, monkeypatch):
    from ansible.module_utils.basic import AnsibleModule

    warned = []
    # (a warning reaches the result or, once controller code was imported in this process, the display: caught here)
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    devices = {"dev01": {"site": "site01", "wave": 0}}
    policy = dict(POLICY, environment="lab", approval_waived=True, min_executed=1)
    token = _module(capsys, tmp_path, step="start", policy=policy, devices=devices, approval_waived=True,
                    environment="lab")["lock_token"]
    (tmp_path / "records" / "r2.html").mkdir()  # in the way: os.rename onto a directory fails
    done = _module(capsys, tmp_path, step="finish", lock_token=token, results={})
    assert not done.get("failed") and done["report"] == ""
    assert [w for w in warned if "r2.html could not be written" in w], warned
    assert [p.name for p in (tmp_path / "records").iterdir() if p.name.startswith(".rollout-")] == []
    assert not [line for line in done["summary"] if line.startswith("report (HTML page)")]


def test_a_paused_resumed_and_rolled_back_rollout_has_a_row_per_attempt():
    record = rollout_record_fixture(devices=24, canary_fails=True)
    assert record["status"] == "aborted"
    policy = dict(POLICY, unreachable="pause")
    plan = dict((n, {"site": d["site"], "wave": d["wave"]}) for n, d in record["devices"].items())
    record = ro.start(record, "resume", "demo-1.1.0", "demo-1.1.0", "releases/demo-1.1.0.yml", "a" * 64, policy, plan,
                      None, "2026-12-04T11:00:00Z")
    ro.record_wave(record, 0, {"site001-dev01": {"outcome": "confirmed", "switched": True}}, "2026-12-04T11:01:00Z",
                   "2026-12-04T11:02:00Z")
    ro.record_wave(record, 1, {"site001-dev02": {"outcome": "confirmed", "switched": True},
                               "site001-dev03": {"outcome": "unreachable", "switched": True}},
                   "2026-12-04T11:02:00Z", "2026-12-04T11:02:40Z")
    ro.finish(record, {}, "2026-12-04T11:03:00Z")
    assert record["status"] == "paused"
    record = ro.start(record, "rollback", "demo-1.1.0", "demo-1.1.0", "releases/demo-1.1.0.yml", "a" * 64, policy, plan,
                      None, "2026-12-04T12:00:00Z")
    ro.finish_rollback(record, dict((n, {"ok": True}) for n in ro.rollback_targets(record)), "2026-12-04T12:05:00Z")
    record = json.loads(json.dumps(record))
    labels = [row["label"] for row in pages.timeline(record)["rows"]]
    assert labels[0] == "attempt 1: start, stage" and "attempt 2: resume, stage" in labels
    assert labels[-1] == "attempt 3: rollback"
    text = _text(pages.rollout_report_html(record))
    assert "Rollout demo-1.1.0 of release demo-1.1.0 rolled-back" in text
    assert "none recorded (a rollback needs none)" in text
    lines = ro.summary(record)
    assert lines[0].startswith("rollout demo-1.1.0 of release demo-1.1.0: rolled-back")
    # The canary's reason was cleared by the resume: its failed gate comes from its incidents.
    row = text[text.index("Failed, rolled back, unreachable (3)"):text.index("Per site")]
    assert "site001-dev01 site001 0 rolled-back health gate on the device predictor-predict" in row
