# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Refusals of generations: everything that can be refused is refused before the state directory is touched, and
check mode answers what the real run would (it fails where the real run fails).

The real Store on a temporary state directory, as in test_generations.py; the external programs (systemd-run,
systemctl, docker, nft) are a recorder. The module runs in-process with that Store.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.edgeops.fleet.plugins.module_utils._generations import config, errors, sysio
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.store import Store
from ansible_collections.edgeops.fleet.plugins.modules import generation as module


def release(rel, path, extra=None):
    data = {"id": rel, "files": [{"path": str(path), "content": "release=%s\n" % rel, "mode": "0640"}],
            "health_checks": [{"name": "conf", "type": "command", "argv": ["grep", "-q", "release=%s" % rel, str(path)]}]}
    data.update(extra or {})
    return data


class Recorder:
    """Stands in for systemd-run, systemctl and nft (``nft_rc`` is what ``nft -c`` returns); runs `grep` for real."""

    def __init__(self, nft_rc=0):
        self.calls = []
        self.nft_rc = nft_rc

    def __call__(self, argv, input_data=None, timeout=None, env=None):
        self.calls.append(list(argv))
        if argv[0] == "grep":
            return sysio.run(argv, timeout=timeout)
        if argv[:2] == ["/usr/sbin/nft", "-c"]:
            return self.nft_rc, "", "Error: syntax error, unexpected junk" if self.nft_rc else ""
        return 0, "", ""


def new_store(state_dir, runner=None, which=lambda program: None):
    return Store({"state_dir": str(state_dir)}, runner=runner or Recorder(), sleep=lambda s: None, which=which)


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def store(state_dir):
    return new_store(state_dir)


def staged_and_confirmed(store, conf, *rels, **staged_only):
    """Each of ``rels`` staged, switched to and confirmed, then ``staged_only["then"]`` staged; the lock released."""
    for rel in rels:
        gen = store.stage(release(rel, conf))["generation"]
        store.switch(gen, 15)
        store.confirm(gen)
    for rel in staged_only.get("then", ()):
        store.stage(release(rel, conf))
    store.unlock()


# ---- the Store: refused before the lock, which creates the state directory --------------------------------

@pytest.mark.parametrize("operation, message", [
    (lambda st: st.switch(7, 15), r"^generation 7 is not kept on this device \(kept: none\)$"),
    (lambda st: st.switch(None, 15), r"^no generation is staged on this device: stage a release first"),
    (lambda st: st.switch(1, 9), r"^confirm_timeout must be an integer of at least 10 s, got 9$"),
    (lambda st: st.confirm(7), r"^generation 7 is not the current generation \(current: None\)$"),
    (lambda st: st.rollback(), r"^there is no earlier confirmed generation to roll back to$"),
    (lambda st: st.rollback(7), r"^generation 7 is not kept on this device"),
    (lambda st: st.gc(0), r"^keep must be an integer >= 1, got 0$"),
    (lambda st: st.stage({"id": "r1", "firewal": ""}), r"unknown key\(s\) firewal"),
])
def test_a_refused_operation_leaves_a_fresh_device_untouched(store, state_dir, operation, message):
    with pytest.raises(errors.GenerationError, match=message):
        operation(store)
    assert not state_dir.exists()


def test_a_release_the_device_tools_refuse_leaves_no_trace_in_the_state_directory(state_dir, tmp_path):
    # Validated with nft -c in a scratch directory, not in generations/ under the lock.
    st = new_store(state_dir, Recorder(nft_rc=1), which=lambda program: "/usr/sbin/" + program)
    bad = release("r1", tmp_path / "app.conf", {"nftables": "table inet edgeops {\n  chain input { junk }\n}\n"})
    with pytest.raises(errors.GenerationError, match=r"^nftables.nft does not validate \(nft -c\): Error: syntax"):
        st.stage(bad)
    assert not state_dir.exists()
    assert [c for c in st.run.calls if c[:2] == ["/usr/sbin/nft", "-c"]]


def test_operations_with_nothing_to_do_leave_a_fresh_device_untouched(store, state_dir):
    assert store.gc(5) == {"changed": False, "kept": [], "removed": [], "images_removed": [], "images_not_removed": []}
    assert store.confirm() == {"changed": False, "generation": None}
    assert store.listing()["generations"] == []
    assert not state_dir.exists()


def test_a_reader_takes_no_lock_where_no_writer_ran(state_dir):
    # The agent role makes the state directory; generation_info then found it and created generations/ and lock.
    state_dir.mkdir()
    new_store(state_dir).listing()
    assert os.listdir(str(state_dir)) == []


def test_the_plans_are_what_the_operations_do(store, tmp_path):
    conf = tmp_path / "app.conf"
    staged_and_confirmed(store, conf, "r1", "r2", then=["r3"])
    assert store.plan_switch(None, 15) == {"changed": True, "generation": 3}
    assert store.plan_switch(2, 15) == {"changed": False, "generation": 2}
    assert store.plan_rollback() == {"changed": True, "generation": 1}
    assert store.plan_confirm() == {"changed": False, "generation": 2}
    assert store.switch(None, 15)["generation"] == 3
    store.unlock()
    assert store.plan_confirm() == {"changed": True, "generation": 3}
    assert store.plan_rollback() == {"changed": True, "generation": 2}
    assert store.rollback()["generation"] == 2


# ---- the module: the same refusals, in check mode too -------------------------------------------------------

def run_module(monkeypatch, capsys, state_dir, agent=config.AGENT_VERSION, **args):
    stores = []
    monkeypatch.setattr(module, "load_config", lambda: {"state_dir": str(state_dir)})
    monkeypatch.setattr(module, "Store", lambda conf: stores.append(new_store(conf["state_dir"])) or stores[-1])
    monkeypatch.setattr(module, "installed_agent_version", lambda: agent)
    try:
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
    finally:
        for store in stores:
            store.unlock()  # the module's process would end here, and its lock with it
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_switch_to_an_unknown_generation_is_refused_and_creates_nothing(monkeypatch, capsys, state_dir,
                                                                          check_mode):
    result = run_module(monkeypatch, capsys, state_dir, state="switched", generation=7,
                        _ansible_check_mode=check_mode)
    assert result["failed"] and not result["changed"]
    assert result["msg"] == "generation 7 is not kept on this device (kept: none)"
    assert not state_dir.exists()


@pytest.mark.parametrize("check_mode", [False, True])
def test_generation_0_is_refused_not_read_as_the_newest(monkeypatch, capsys, state_dir, tmp_path, check_mode):
    staged_and_confirmed(new_store(state_dir), tmp_path / "app.conf", "r1", then=["r2"])
    result = run_module(monkeypatch, capsys, state_dir, state="switched", generation=0,
                        _ansible_check_mode=check_mode)
    assert result["failed"] and result["msg"] == "generation 0 is not kept on this device (kept: 1, 2)"
    assert result["current"] == 1 and (tmp_path / "app.conf").read_text() == "release=r1\n"


def run_both(monkeypatch, capsys, state_dir, **args):
    """The module's answers in check mode, then in a real run (which changes the device when it succeeds)."""
    return [run_module(monkeypatch, capsys, state_dir, _ansible_check_mode=check, **args) for check in (True, False)]


def test_a_switch_without_the_agent_fails_in_check_mode_as_in_the_real_run(monkeypatch, capsys, state_dir, tmp_path):
    staged_and_confirmed(new_store(state_dir), tmp_path / "app.conf", then=["r1"])
    checked, real = run_both(monkeypatch, capsys, state_dir, agent=None, state="switched", generation=1)
    assert real["failed"] and real["msg"].startswith("the device agent is not installed but this module needs")
    assert checked.get("failed") and checked["msg"] == real["msg"]  # check mode said changed
    assert not (tmp_path / "app.conf").exists()


def test_a_switch_that_changes_nothing_needs_no_agent(monkeypatch, capsys, state_dir, tmp_path):
    # A converge whose agent play upgrades the agent first: its check run must not fail on the no-op switch, and the
    # real run needs no agent for what changes nothing (it was refused).
    staged_and_confirmed(new_store(state_dir), tmp_path / "app.conf", "r1")
    for result in run_both(monkeypatch, capsys, state_dir, agent="1", state="switched", generation=1):
        assert not result.get("failed") and not result["changed"] and result["generation"] == 1


def test_a_rollback_with_nothing_to_roll_back_to_fails_in_check_mode_as_in_the_real_run(
        monkeypatch, capsys, state_dir, tmp_path):
    staged_and_confirmed(new_store(state_dir), tmp_path / "app.conf", "r1")
    checked, real = run_both(monkeypatch, capsys, state_dir, state="rolled_back")
    assert real["failed"] and real["msg"] == "there is no earlier confirmed generation to roll back to"
    assert checked.get("failed") and checked["msg"] == real["msg"]  # check mode said ok


@pytest.mark.parametrize("args, message", [
    ({"state": "switched", "generation": 1, "release": {"id": "r1"}},
     "release is used only with state=staged (state=switched)"),
    ({"state": "gc", "generation": 1}, "generation is not used with state=gc"),
    ({"state": "staged", "generation": 1, "release": {"id": "r1"}}, "generation is not used with state=staged"),
])
def test_an_option_the_state_does_not_use_is_refused(monkeypatch, capsys, state_dir, args, message):
    result = run_module(monkeypatch, capsys, state_dir, **args)
    assert result["failed"] and result["msg"].startswith(message)
    assert not state_dir.exists()
