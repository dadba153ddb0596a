# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifest, pointer and state-machine logic of generations.

The Store tests run the real code on a temporary state directory with release files under
tmp_path; only the external programs (systemd-run, systemctl, docker, nft) are replaced by a
recorder, because a unit test has no systemd. The same code runs against real devices in
molecule/generations and tests/integration/test_generations_power_loss.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils._generations import (
    cli, config, confirm, errors, nft, plans, probes, sysio)
from ansible_collections.edgeops.fleet.plugins.module_utils._generations import release as releases
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.store import Store


def release(rel, path, extra=None, checks=None):
    data = {"id": rel, "files": [{"path": str(path), "content": "release=%s\n" % rel, "mode": "0640"}],
            "health_checks": checks if checks is not None else
            [{"name": "conf", "type": "command", "argv": ["grep", "-q", "release=%s" % rel, str(path)]}]}
    data.update(extra or {})
    return data


class Recorder:
    """Stands in for systemd-run/systemctl (no systemd here); runs `grep` for real."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, input_data=None, timeout=None, env=None):
        self.calls.append(list(argv))
        if argv[0] == "grep":
            return sysio.run(argv, timeout=timeout)
        return 0, "", ""

    def armed(self):
        return [c for c in self.calls if c[0] == "systemd-run"]


@pytest.fixture
def store(tmp_path):
    # No docker, nft or virsh in a unit test: activation then manages files only.
    rec = Recorder()
    st = Store({"state_dir": str(tmp_path / "state")}, runner=rec, sleep=lambda s: None, which=lambda program: None)
    st.recorder = rec
    return st


# ---- pure functions --------------------------------------------------------------------

def test_validate_release_names_the_bad_key():
    with pytest.raises(errors.GenerationError, match=r"unknown key\(s\) firewal"):
        releases.validate_release({"id": "r1", "firewal": ""})
    with pytest.raises(errors.GenerationError, match=r"release.health_checks\[0\].url is required"):
        releases.validate_release({"id": "r1", "health_checks": [{"type": "http"}]})
    with pytest.raises(errors.GenerationError, match=r"release.files\[0\].path must be an absolute"):
        releases.validate_release({"id": "r1", "files": [{"path": "etc/x", "content": ""}]})
    with pytest.raises(errors.GenerationError, match=r"release.id"):
        releases.validate_release({"id": "../x"})
    with pytest.raises(errors.GenerationError, match=r"health_checks\[0\]: unknown key\(s\) body for type tcp"):
        releases.validate_release({"id": "r", "health_checks": [{"type": "tcp", "port": 1, "body": "x"}]})


def test_nft_ruleset_only_our_table():
    nft.check_nft_ruleset("table inet edgeops {\n}\n")
    for bad in ("flush ruleset\ntable inet edgeops {}", "table ip filter {}", "table inet edgeops {}\ntable inet docker {}"):
        with pytest.raises(errors.GenerationError) as err:
            nft.check_nft_ruleset(bad)
        assert err.value.artifact == "nftables.nft"
    script = nft.nft_replace_script("table inet edgeops { }")
    assert script.splitlines()[:2] == ["table inet edgeops {}", "delete table inet edgeops"]


def test_a_release_ruleset_is_checked_like_the_nftables_module_content():
    # A rule added to another table is no definition of ours (the regex check of old let it through).
    with pytest.raises(errors.GenerationError, match=r"^release.nftables: content may only hold 'define' and "
                                                     r"'table inet edgeops \{ ... \}' at the top level; line 3") as err:
        nft.check_nft_ruleset("table inet edgeops {\n}\nadd rule ip filter input drop\n")
    assert err.value.artifact == "nftables.nft"


def test_one_minimum_confirm_timeout_for_generations_and_nftables(store, tmp_path):
    assert confirm.MIN_CONFIRM_TIMEOUT == 10
    assert confirm.timeout_problem(10) is None and confirm.timeout_problem(0, zero_disables=True) is None
    store.stage(release("r1", tmp_path / "app.conf"))
    with pytest.raises(errors.GenerationError, match=r"^confirm_timeout must be an integer of at least 10 s, got 9$"):
        store.switch(1, 9)
    assert store.switch(1, 10)["changed"]


def test_manifest_and_digest_are_stable():
    rel = releases.validate_release({"id": "r1", "compose": {"services": {"b": {"image": "x"}, "a": {"image": "y"}}}})
    arts = releases.render_artifacts(rel)
    one = releases.build_manifest(1, rel, arts, "t0")
    two = releases.build_manifest(1, releases.validate_release({"id": "r1", "compose": {"services": {"a": {"image": "y"}, "b": {"image": "x"}}}}),
                                  releases.render_artifacts(rel), "t1")
    assert one["content_digest"] == two["content_digest"]
    assert one["artifacts"]["compose.yaml"]["sha256"] == sysio.sha256_bytes(arts["compose.yaml"])
    other = releases.validate_release({"id": "r2", "compose": {"services": {"a": {"image": "y"}, "b": {"image": "x"}}}})
    assert releases.build_manifest(1, other, releases.render_artifacts(other), "t0")["content_digest"] != one["content_digest"]


def test_gc_plan_keeps_newest_and_protected():
    assert plans.gc_plan([1, 2, 3, 4, 5, 6], 2, [1, None]) == ([1, 5, 6], [2, 3, 4])
    assert plans.gc_plan([1], 5, []) == ([1], [])
    with pytest.raises(errors.GenerationError):
        plans.gc_plan([1], 0, [])


def test_images_only_in_removed():
    assert plans.images_only_in([{"images": ["a", "b"]}], [{"images": ["b", "c"]}]) == ["a"]


def test_boot_plan_and_greenboot_rule():
    assert plans.boot_plan(3, 3)["action"] == "reassert"
    plan = plans.boot_plan(4, 3)
    assert plan == dict(plan, action="revert", target=3)
    assert plans.boot_plan(None, 2)["action"] == "revert"
    assert plans.after_boot_health(True, 2, 3, [1, 2], 2) == {"action": "healthy", "failures": 0}
    assert plans.after_boot_health(False, 0, 3, [1, 2], 2) == {"action": "record", "failures": 1}
    assert plans.after_boot_health(False, 2, 3, [1, 2], 2) == {"action": "rollback", "failures": 3, "target": 1}
    assert plans.previous_confirmed([1, 2, 5], 5) == 2


def test_health_check_retries_then_reports(monkeypatch):
    results = iter([("failed", "no"), ("inconclusive", "no"), ("passed", "yes")])
    ok, out = probes.run_health_checks([dict(releases.validate_health_check({"type": "tcp", "port": 1, "retries": 3}, 0))],
                                       lambda check: next(results), sleep=lambda s: None)
    assert ok and out[0]["attempts"] == 3


# ---- the state machine on a real directory -----------------------------------------------

def test_stage_is_atomic_immutable_and_idempotent(store, tmp_path):
    first = store.stage(release("r1", tmp_path / "app.conf"))
    again = store.stage(release("r1", tmp_path / "app.conf"))
    assert first == {"changed": True, "generation": 1}
    assert again == {"changed": False, "generation": 1}
    gdir = store.gen_dir(1)
    assert oct(os.stat(os.path.join(gdir, "files/0")).st_mode & 0o777) == "0o444"
    assert not [n for n in os.listdir(store.gen_root) if n.startswith(".")]
    assert store.pointer("current") is None
    assert not (tmp_path / "app.conf").exists()  # staging changes nothing that runs
    with open(os.path.join(gdir, "manifest.json")) as handle:
        assert json.load(handle)["release"] == "r1"


def tampered(store, tmp_path):
    """Generation 1 of release r1, one of its artifacts altered after staging."""
    store.stage(release("r1", tmp_path / "app.conf"))
    path = os.path.join(store.gen_dir(1), "files/0")
    os.chmod(path, 0o644)
    with open(path, "w") as handle:
        handle.write("evil")
    store.unlock()
    return store


def test_tampered_generation_is_refused(store, tmp_path):
    with pytest.raises(errors.GenerationError, match="damaged"):
        tampered(store, tmp_path).switch(1, 15)


def test_a_damaged_copy_of_a_release_is_planned_as_the_real_run_stages_it(store, tmp_path):
    _norm, _arts, existing = tampered(store, tmp_path).plan_stage(release("r1", tmp_path / "app.conf"))
    assert existing is None  # check mode said "unchanged, generation 1"
    assert store.stage(release("r1", tmp_path / "app.conf")) == {"changed": True, "generation": 2}


def test_switch_confirm_and_deadman(store, tmp_path):
    conf = tmp_path / "app.conf"
    store.stage(release("r1", conf))
    store.stage(release("r2", conf))
    out = store.switch(1, 15)
    assert out["changed"] and not out["rolled_back"]
    assert store.recorder.armed()[-1][1:3] == ["--unit=edgeops-deadman@1.service", "--on-active=15s"]
    assert store.pointer("current") == 1 and store.pointer("confirmed") is None
    assert store.confirm(1)["changed"] and store.pointer("confirmed") == 1
    assert store.switch(2, 15)["changed"]
    assert conf.read_text() == "release=r2\n"
    # The controller never confirms: the dead-man timer fires.
    assert store.deadman(2) == {"changed": True, "reverted_to": 1}
    assert conf.read_text() == "release=r1\n"
    assert store.pointer("current") == 1
    with pytest.raises(errors.GenerationError, match="was rolled back") as err:
        store.confirm(2)
    assert err.value.details["reverted"]
    assert [i["what"] for i in store.incidents()] == ["deadman-revert"]
    assert store.deadman(1) == {"changed": False}  # a late timer of a confirmed generation does nothing


def test_failing_health_rolls_back_at_once(store, tmp_path):
    conf = tmp_path / "app.conf"
    store.stage(release("r1", conf))
    store.switch(1, 15)
    store.confirm(1)
    bad = release("r2", conf, checks=[{"name": "never", "type": "command", "argv": ["grep", "-q", "nope", str(conf)],
                                       "retries": 2}])
    store.stage(bad)
    out = store.switch(2, 15)
    assert out["rolled_back"] and out["rolled_back_to"] == 1 and "never" in out["reason"]
    assert conf.read_text() == "release=r1\n"
    assert store.read_state()["generations"]["2"]["state"] == "failed"
    assert store.incidents()[-1]["what"] == "health-rollback"


def test_first_switch_reverts_to_nothing(store, tmp_path):
    conf = tmp_path / "app.conf"
    store.stage(release("r1", conf))
    store.switch(1, 15)
    assert conf.exists()
    store.deadman(1)
    assert store.pointer("current") is None and not conf.exists()


def test_rollback_to_any_kept_id(store, tmp_path):
    conf = tmp_path / "app.conf"
    for rel in ("r1", "r2", "r3"):
        gen = store.stage(release(rel, conf))["generation"]
        store.switch(gen, 15)
        store.confirm(gen)
    out = store.rollback(1)
    assert out["changed"] and out["rolled_back_from"] == 3
    assert store.pointer("current") == store.pointer("confirmed") == 1
    assert conf.read_text() == "release=r1\n"
    assert store.rollback(1)["changed"] is False
    with pytest.raises(errors.GenerationError, match="not kept"):
        store.rollback(9)


def test_boot_reverts_an_unconfirmed_switch_and_counts_failures(store, tmp_path):
    conf = tmp_path / "app.conf"
    flag = tmp_path / "healthy"
    checks = [{"name": "flag", "type": "command", "argv": ["grep", "-q", "yes", str(flag)], "retries": 1}]
    flag.write_text("yes")
    for rel in ("r1", "r2"):
        gen = store.stage(release(rel, conf, checks=checks))["generation"]
        store.switch(gen, 15)
        store.confirm(gen)
    gen3 = store.stage(release("r3", conf, checks=checks))["generation"]
    store.switch(gen3, 15)
    # Power loss before the confirm: boot goes back to the confirmed generation.
    assert store.boot() == {"action": "revert", "generation": 2}
    assert conf.read_text() == "release=r2\n"
    # Generation 2 starts failing its checks at boot: rolled back at the 3rd boot in a row.
    flag.write_text("no")
    assert store.boot()["action"] == "unhealthy"
    assert store.boot()["action"] == "unhealthy"
    assert store.boot() == {"action": "rollback", "generation": 1}
    assert conf.read_text() == "release=r1\n"
    whats = [i["what"] for i in store.incidents()]
    assert whats == ["boot-revert", "boot-health-failed", "boot-health-failed", "boot-rollback"]


def test_boot_removes_partial_stage(store, tmp_path):
    store.stage(release("r1", tmp_path / "app.conf"))
    os.makedirs(os.path.join(store.gen_root, ".stage-abc"))
    store.boot()
    assert not os.path.exists(os.path.join(store.gen_root, ".stage-abc"))


def test_gc_keeps_k_and_the_running_one(store, tmp_path):
    conf = tmp_path / "app.conf"
    for rel in ("r1", "r2", "r3", "r4"):
        store.stage(release(rel, conf))
    store.switch(1, 15)
    store.confirm(1)
    out = store.gc(2)
    assert out["removed"] == [2] and out["kept"] == [1, 3, 4]
    assert store.generation_ids() == [1, 3, 4]
    assert store.gc(2)["changed"] is False


def test_cli_version_and_usage(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.strip() == config.AGENT_VERSION
    assert cli.main(["nonsense"], config_path="/nonexistent") == 2
    capsys.readouterr()
    assert cli.main(["switch", "latest"], config_path="/nonexistent") == 2  # was a ValueError traceback
    assert capsys.readouterr().err.startswith("edgeops-gen: switch: arguments must be whole numbers, got latest")


def test_image_report_groups_references_and_sizes_by_kept_generation():
    digest = "sha256:" + "cd" * 32
    rows = [
        {"ID": "sha256:aaa", "Repository": "hub:5000/edgeops/predictor", "Tag": "<none>", "Digest": digest},
        {"ID": "sha256:aaa", "Repository": "edgeops/predictor", "Tag": "1.0.0", "Digest": "<none>"},
        {"ID": "sha256:bbb", "Repository": "edgeops/old", "Tag": "1", "Digest": "<none>"},
        {"ID": "sha256:ccc", "Repository": "<none>", "Tag": "<none>", "Digest": "<none>"},
    ]
    report = plans.summarize_images(rows, {"sha256:aaa": 300, "sha256:bbb": 200, "sha256:ccc": 50},
                                    {"hub:5000/edgeops/predictor@" + digest: [3, 4]})
    assert [i["id"] for i in report["images"]] == ["sha256:aaa", "sha256:bbb", "sha256:ccc"]
    assert report["images"][0]["generations"] == [3, 4]
    assert report["images"][0]["references"] == ["hub:5000/edgeops/predictor@" + digest, "edgeops/predictor:1.0.0"]
    assert (report["images_total_bytes"], report["images_used_bytes"], report["images_unused_bytes"]) == (550, 300, 250)
