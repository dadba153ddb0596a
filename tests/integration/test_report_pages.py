# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pages a person reads, looked at in headless Chromium (no lab needed).

- the rollout report of a rollout whose canary failed its health gate, and of a 1,000-device rollout, from records
  made by the functions the rollout_record module calls (tests/unit/plugins/module_utils/test_pages.py);
- the fleet status page, from the same unit fixture and from a real run of playbooks/fleet_status.yml against an
  inventory of this machine (``ansible_connection: local``) and one device that cannot be reached (127.0.0.1, a
  closed port).

Each page must load without a console message (the pages run no script; a blocked fetch or a CSP violation would
be one), show the device names, releases, outcomes and the canary's failed gate in its DOM, and give a non-empty
PNG screenshot. Pages and screenshots are kept in $EDGEOPS_ARTIFACTS_DIR/report-pages/ (else the test's tmp dir).
Without Chromium the tests skip, or fail when CI=true.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import json
import os
import shutil
import sys

import pytest

from conftest import REPO, ansible

sys.path.insert(0, os.path.join(REPO, "tests", "support"))
import look_at_page as look  # noqa: E402  (tests/support is not a package)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixtures = _load("edgeops_test_pages", os.path.join(REPO, "tests", "unit", "plugins", "module_utils", "test_pages.py"))
pages = fixtures.pages


@pytest.fixture(scope="module")
def chromium():
    binary = look.find_chromium()
    if not binary:
        message = "Chromium is not installed (apt-get install chromium): the report pages cannot be looked at"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def artifacts(request, tmp_path):
    root = os.environ.get("EDGEOPS_ARTIFACTS_DIR")
    where = os.path.join(root, "report-pages", request.node.name) if root else str(tmp_path / "artifacts")
    os.makedirs(where, exist_ok=True)
    return where


def _look(chromium, artifacts, name, page):
    path = os.path.join(artifacts, name + ".html")
    with open(path, "w") as handle:
        handle.write(page)
    dom, console, png = look.look_at_page(path, os.path.join(artifacts, name + ".png"), chromium=chromium)
    with open(os.path.join(artifacts, name + ".dom.html"), "w") as handle:
        handle.write(dom)
    assert console == [], "console messages on %s: %s" % (path, console)
    assert os.path.getsize(png) > 1000 and look.is_png(png), png
    assert look.png_size(png) == (1280, 2000)
    return dom, look.visible_text(dom)


def test_a_console_error_is_seen(chromium, artifacts):
    """The check itself: a throwaway page with a deliberate console.error and a script error."""
    path = os.path.join(artifacts, "console-error.html")
    with open(path, "w") as handle:
        handle.write('<!DOCTYPE html><html><body><p>x</p><script>console.error("deliberate-error-123");'
                     'nosuchfunction();</script></body></html>')
    _dom, console, png = look.look_at_page(path, chromium=chromium)
    assert [m for m in console if "deliberate-error-123" in m], console
    assert [m for m in console if "nosuchfunction is not defined" in m], console
    assert look.is_png(png)


def test_the_rollout_report_shows_the_canarys_failed_gate(chromium, artifacts):
    record = fixtures.rollout_record_fixture(devices=12, canary_fails=True)
    with open(os.path.join(artifacts, "rollout-canary.json"), "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    dom, text = _look(chromium, artifacts, "rollout-canary", pages.rollout_report_html(
        record, os.path.join(artifacts, "rollout-canary.json"), generated="2026-12-04T10:05:00Z"))
    assert "Rollout demo-1.1.0 of release demo-1.1.0 aborted" in text
    assert "canary site001-dev01 failed: health gate on the device: probe predictor-predict failed" in text
    problems = text[text.index("Failed, rolled back, unreachable (1)"):text.index("Per site")]
    assert "site001-dev01" in problems and "failed" in problems
    assert "health gate on the device" in problems and "predictor-predict" in problems
    assert "alice at 2026-12-04T09:00:00Z" in text
    for n in range(2, 13):
        assert "site001-dev%02d" % n in text  # not switched: staged
    assert "Not switched (11)" in text and 'class="bar bad stop"' in dom


def test_the_report_of_1000_devices_puts_failures_first_and_stays_small(chromium, artifacts):
    failed = ["site%03d-dev05" % s for s in range(10, 40)]
    record = fixtures.rollout_record_fixture(devices=1000, failed=failed, unreachable=["site050-dev07"],
                                             stage_failed=["site080-dev01"])
    page = pages.rollout_report_html(record, "/var/lib/edgeops/rollouts/demo-1.1.0.json")
    assert len(page) < 400 * 1024
    dom, text = _look(chromium, artifacts, "rollout-1000", page)
    problems = text[text.index("Failed, rolled back, unreachable (32)"):text.index("Per site (84)")]
    for name in failed + ["site050-dev07", "site080-dev01"]:
        assert name in problems
    assert "unreachable at confirm" in problems and "stage-failed" in problems
    assert text.index("Failed, rolled back, unreachable") < text.index("Confirmed (968)")
    assert "site001: 12 confirmed" in text and "wave 3, 25 batches" in text


def test_the_fleet_status_page_from_the_unit_fixture(chromium, artifacts):
    data = fixtures.fleet_status_fixture(devices=36, unreachable=["site002-dev03"], unhealthy=["site001-dev02"],
                                         drift=["site001-dev04"], pending=["site003-dev09"])
    dom, text = _look(chromium, artifacts, "fleet-status", pages.fleet_status_html(data))
    attention = text[text.index("Needs a look (4)"):text.index("Sites (3)")]
    assert "site002-dev03" in attention and "unreachable" in attention and "No route to host" in attention
    assert "site001-dev02" in attention and "predictor-health" in attention and "HTTP 503" in attention
    assert "site003-dev09" in attention and "demo-1.2.0-rc1" in attention and "pending 6" in attention
    assert "site001-dev04" in attention and "image differs" in attention
    assert "demo-1.1.0 34" in text.replace(":", "")
    for n in range(1, 13):
        assert "site003-dev%02d" % n in text
    assert "<details open" in dom and "site003: 12 device(s), 11 on demo-1.1.0, 1 on demo-1.2.0-rc1, 1 need a look" in text


def test_the_fleet_status_playbook_reports_an_unreachable_device_and_writes_both_files(chromium, artifacts, tmp_path):
    python = sys.executable
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"edge_devices": {"hosts": {
        "site01-dev01": {"ansible_connection": "local", "ansible_python_interpreter": python, "edgeops_site": "site01"},
        # A closed port on this machine: unreachable at once (never another address).
        "site01-dev02": {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_connection": "ssh",
                         "ansible_ssh_common_args": "-o ConnectTimeout=5 -o StrictHostKeyChecking=no",
                         "edgeops_site": "site01"},
        "site02-<b>x": {"ansible_connection": "local", "ansible_python_interpreter": python, "edgeops_site": "site02"},
    }}}}}))
    out = os.path.join(artifacts, "fleet-status-playbook")
    shutil.rmtree(out, ignore_errors=True)  # an artifacts directory kept from an earlier run
    check = ansible("ansible-playbook", "-i", str(inventory), "playbooks/fleet_status.yml", "--check",
                    "-e", "fleet_status_dir=" + out)
    assert check.rc == 0, check.out[-3000:]
    assert "check mode: nothing written" in check.out and not os.path.exists(out)
    run = ansible("ansible-playbook", "-i", str(inventory), "playbooks/fleet_status.yml", "-e", "fleet_status_dir=" + out)
    assert run.rc == 0, run.out[-3000:]
    assert run.recap["site01-dev02"]["failed"] == 0
    assert "site01-dev02: unreachable" in run.out
    with open(os.path.join(out, "fleet-status.json")) as handle:
        data = json.load(handle)
    assert sorted(data["devices"]) == ["site01-dev01", "site01-dev02", "site02-<b>x"]
    assert data["devices"]["site01-dev02"]["reachable"] is False and data["counts"]["unreachable"] == 1
    assert data["sites"] == {"site01": ["site01-dev01", "site01-dev02"], "site02": ["site02-<b>x"]}
    path = os.path.join(out, "fleet-status.html")
    dom, console, png = look.look_at_page(path, os.path.join(out, "fleet-status.png"), chromium=chromium)
    assert console == [], console
    assert look.is_png(png) and os.path.getsize(png) > 1000
    text = look.visible_text(dom)
    assert "site02-<b>x" in text and "<b>x" not in dom  # escaped: text, not an element
    attention = text[text.index("Needs a look"):text.index("Sites (2)")]
    assert "site01-dev02" in attention and "unreachable" in attention and "Connection refused" in attention
