# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables module's pure code, its device-side scripts and the confirm-or-revert protocol.

The apply/revert shell scripts run for real, with a stand-in ``nft`` program on PATH (changing a ruleset needs
CAP_NET_ADMIN; the stand-in records its arguments and fails when told to). systemd-run/systemctl are replaced by a
recorder (no systemd in a unit test). Where ``unshare --net`` works (root), the real nft runs in a throwaway
network namespace. The lab runs it all for real: molecule/firewall and tests/integration/test_firewall_lockout.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _nftables as n
from ansible_collections.edgeops.fleet.plugins.module_utils._generations import nft

TABLE = """\
define MGMT = { 10.0.0.0/8 }
# a comment that says flush ruleset is harmless
table inet edgeops_firewall {
    set peers { type ipv4_addr; flags interval; elements = { 10.1.0.0/16 } }
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        ip saddr $MGMT tcp dport 22 accept comment "braces { in a string"
    }
}
"""

# As nft prints it, with tabs.
LISTING = """\
table inet edgeops_firewall {
\tset peers {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.1.0.0/16 }
\t}

\tset ssh_rate_v4 {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 5m
\t\telements = { 10.1.1.1 limit rate over 10/minute, 10.1.1.2 limit rate over 10/minute,
\t\t\t     10.1.1.3 limit rate over 10/minute }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t}
}
"""


# ---- content checks ------------------------------------------------------------------------

def test_content_with_defines_and_the_table_is_accepted():
    assert n.check_content(TABLE, "inet", "edgeops_firewall") == TABLE


def test_statements_split_at_top_level_only():
    statements = nft.top_level_statements(TABLE)
    assert [line for line, _stmt in statements] == [1, 3]
    assert statements[1][1].startswith("table inet edgeops_firewall {") and statements[1][1].endswith("}")


@pytest.mark.parametrize("text, message", [
    ("flush ruleset\n" + TABLE, "must not contain 'flush ruleset'"),
    ('include "/etc/nftables.d/*.nft"\n' + TABLE, "must not contain 'include'"),
    (TABLE.replace("    chain input {", '    include "x.nft"\n    chain input {'), "must not contain 'include'"),
    (TABLE + "table ip filter { }\n", "may only define table inet edgeops_firewall, found table ip filter"),
    (TABLE.replace("table inet edgeops_firewall", "table inet edgeops"), "found table inet edgeops \\(line 3\\)"),
    (TABLE + "add rule ip filter FORWARD accept\n", "line 11 starts with 'add rule ip filter FORWARD accept'"),
    (TABLE + "delete table ip nat\n", "starts with 'delete table ip nat'"),
    ("table edgeops_firewall { chain c { } }\n", "give the table's family"),
    ("define X = 1\n", "does not define table inet edgeops_firewall"),
    ("   \n", "content is empty"),
    (TABLE + "}\n", "unbalanced '}' on line 11"),
    (TABLE.replace("}\n}\n", "}\n"), "'{' not closed"),
    ('table inet edgeops_firewall { comment "open\n }', "runs past the end of a line"),
])
def test_anything_but_the_one_table_is_refused(text, message):
    with pytest.raises(n.NftError, match=message):
        n.check_content(text, "inet", "edgeops_firewall")


@pytest.mark.parametrize("table, family", [("edgeops firewall", "inet"), ("x;flush", "inet"), ("1abc", "inet"),
                                           ("", "inet"), ("ok", "inet6"), ("a" * 64, "inet")])
def test_names_that_cannot_go_on_a_command_line_are_refused(table, family):
    with pytest.raises(n.NftError):
        n.check_name(table, family)


# ---- scripts and listings ----------------------------------------------------------------

def test_replace_is_one_transaction_create_delete_define():
    assert n.replace_script("inet", "t", "table inet t { }\n\n") == \
        "table inet t {}\ndelete table inet t\ntable inet t { }\n"
    assert n.absent_script("ip6", "x") == "table ip6 x {}\ndelete table ip6 x\n"


def test_dynamic_set_elements_are_dropped_static_ones_kept():
    stripped = n.strip_dynamic_elements(LISTING)
    assert "10.1.1.1" not in stripped and "10.1.1.3" not in stripped
    assert "elements = { 10.1.0.0/16 }" in stripped
    assert "flags dynamic,timeout" in stripped and stripped.count("{") == stripped.count("}")


def test_normalised_listings_ignore_layout_comments_and_kernel_state():
    relaid = "# live\n" + "\n\n".join(line.strip() for line in LISTING.splitlines()) + "\n"
    without_state = LISTING.replace(
        "\t\telements = { 10.1.1.1 limit rate over 10/minute, 10.1.1.2 limit rate over 10/minute,\n"
        "\t\t\t     10.1.1.3 limit rate over 10/minute }\n", "")
    assert n.normalise_listing(relaid) == n.normalise_listing(LISTING) == n.normalise_listing(without_state)
    assert n.normalise_listing(LISTING.replace("10.1.0.0/16", "10.2.0.0/16")) != n.normalise_listing(LISTING)
    assert n.normalise_listing(None) is None


def test_markers_parse():
    assert n.parse_marker("restored 1700000000.25\n") == ("restored", 1700000000.25)
    assert n.parse_marker(None) == (None, None)
    assert n.parse_marker("garbage") == (None, None)


# ---- the device-side scripts, run for real with a stand-in nft ------------------------------

STAND_IN_NFT = """\
#!/bin/sh
# Stand-in for nft (changing a ruleset needs CAP_NET_ADMIN): records its arguments; fails on request.
echo "$*" >> "$NFT_LOG"
if [ -e "$NFT_FAIL" ] && [ "$1" = "-f" ]; then echo "Error: stand-in told to fail" >&2; exit 1; fi
exit 0
"""


@pytest.fixture
def device(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    nft = bindir / "nft"
    nft.write_text(STAND_IN_NFT)
    nft.chmod(0o755)
    for program in ("logger",):
        stub = bindir / program
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    monkeypatch.setenv("NFT_LOG", str(tmp_path / "nft.log"))
    monkeypatch.setenv("NFT_FAIL", str(tmp_path / "nft.fail"))
    return tmp_path


class Recorder:
    """Stands in for systemd-run and systemctl (no systemd in a unit test); runs everything else for real."""

    def __init__(self, listing=None):
        self.calls = []
        self.listing = listing

    def __call__(self, argv, data=None, timeout=60):
        self.calls.append(list(argv))
        if argv[0] in ("systemd-run", "systemctl"):
            return 0, "", ""
        return n.run(argv, data, timeout)

    def units(self):
        return [c[1] for c in self.calls if c[0] == "systemd-run"]


def run_script(path):
    return subprocess.run(["/bin/sh", path], capture_output=True, text=True, check=False)


def nft_log(device):
    log = device / "nft.log"
    return log.read_text().splitlines() if log.exists() else []


def arm(device, content="table inet t { }\n", current="table inet t {\n}\n", timeout=20):
    rec = Recorder()
    table = n.Table("inet", "t", nft="nft", run=rec, state_dir=str(device / "state"))
    record = table.arm(content, current, timeout, now=1000.0)
    return table, rec, record, n.change_paths(str(device / "state"), "inet", "t", record["token"])


def test_arm_saves_the_table_and_schedules_apply_then_revert(device):
    _table, rec, record, paths = arm(device)
    # The revert comes confirm_timeout s after the apply, which comes APPLY_DELAY s after arming.
    assert record["apply_at"] == 1000.0 + n.APPLY_DELAY and record["revert_at"] == 1000.0 + n.APPLY_DELAY + 20
    assert rec.units() == ["--unit=edgeops-nft-revert-%s" % record["token"], "--unit=edgeops-nft-apply-%s" % record["token"]]
    revert_call = [c for c in rec.calls if c[0] == "systemd-run"][0]
    assert "--on-active=%ds" % (n.APPLY_DELAY + 20) in revert_call and revert_call[-2:] == ["/bin/sh", paths["revert_sh"]]
    with open(paths["backup"]) as handle:
        assert handle.read() == "table inet t {}\ndelete table inet t\ntable inet t {\n}\n"
    with open(paths["new"]) as handle:
        assert handle.read() == "table inet t {}\ndelete table inet t\ntable inet t { }\n"
    with open(paths["pending"]) as handle:
        assert json.load(handle)["token"] == record["token"]
    log = nft_log(device)
    assert len(log) == 1 and log[0].startswith("-c -f ")  # the backup was checked to load back


def test_a_backup_that_does_not_load_back_becomes_a_table_delete(device):
    (device / "nft.fail").write_text("")
    # nft -c fails for the backup: the revert must then remove the table rather than load something broken.
    rec = Recorder()
    table = n.Table("inet", "t", nft="nft", run=lambda argv, data=None, timeout=60: (
        (1, "", "syntax error") if argv[:2] == ["nft", "-c"] else rec(argv, data, timeout)), state_dir=str(device / "state"))
    record = table.arm("table inet t { }\n", "table inet t {\n}\n", 20, now=1000.0)
    assert "does not load back" in record["warning"]
    with open(n.change_paths(str(device / "state"), "inet", "t", record["token"])["backup"]) as handle:
        assert handle.read() == n.absent_script("inet", "t")


def test_confirm_after_apply_cancels_the_revert(device):
    table, rec, record, paths = arm(device)
    assert run_script(paths["apply_sh"]).returncode == 0
    assert nft_log(device)[-1] == "-f " + paths["new"]
    # A revert the timer started just before the confirm: its shell already holds the script.
    late_revert = str(device / "late-revert.sh")
    with open(paths["revert_sh"]) as src, open(late_revert, "w") as dst:
        dst.write(src.read())
    outcome = table.confirm(record["token"])
    assert outcome["confirmed"] and outcome["revert_at"] == record["revert_at"]
    assert ["systemctl", "stop", "edgeops-nft-revert-%s.timer" % record["token"]] in rec.calls
    # Only the confirm's answer is kept, for a retry (see the next test).
    assert sorted(os.listdir(str(device / "state"))) == ["inet-t.%s.confirmed" % record["token"], "inet-t.lock"]
    # It gets the lock after the confirm, finds nothing pending and does nothing.
    before = list(nft_log(device))
    assert run_script(late_revert).returncode == 0
    assert nft_log(device) == before


def test_a_confirm_whose_answer_was_lost_is_answered_again_when_retried(device):
    table, _rec, record, paths = arm(device)
    run_script(paths["apply_sh"])
    first = table.confirm(record["token"])
    # The answer never reached the controller, which retries over another new connection.
    expected = {"confirmed": True, "applied_at": first["applied_at"], "revert_at": record["revert_at"]}
    assert table.confirm(record["token"]) == first == expected
    # The next change forgets the answer (this table's only).
    other = device / "state" / ("inet-t2.%s.confirmed" % record["token"])
    other.write_text("{}")
    table.arm("table inet t { }\n", None, 20)
    assert not os.path.exists(paths["confirmed"]) and other.exists()
    with pytest.raises(n.NftError, match="no pending change"):
        table.confirm(record["token"])


def test_revert_restores_the_backup_and_a_late_confirm_reports_it(device):
    table, _rec, record, paths = arm(device)
    run_script(paths["apply_sh"])
    assert run_script(paths["revert_sh"]).returncode == 0
    assert nft_log(device)[-1] == "-f " + paths["backup"]
    assert not os.path.exists(paths["pending"])
    outcome = table.confirm(record["token"])
    assert outcome["reverted"] and outcome["outcome"] == "restored" and outcome["applied"] == "applied"
    assert outcome["reverted_at"] >= outcome["applied_at"]
    # Reported once; the token is forgotten afterwards.
    with pytest.raises(n.NftError, match="no pending change"):
        table.confirm(record["token"])


def test_revert_deletes_the_table_when_the_backup_does_not_load(device):
    _table, _rec, _record, paths = arm(device)
    (device / "nft.fail").write_text("")
    run_script(paths["revert_sh"])
    assert nft_log(device)[-2:] == ["-f " + paths["backup"], "delete table inet t"]
    with open(paths["reverted"]) as handle:
        assert handle.read().startswith("deleted ")


def test_a_failed_apply_is_reported_and_cancels_the_change(device):
    table, rec, record, paths = arm(device)
    (device / "nft.fail").write_text("")
    run_script(paths["apply_sh"])
    with pytest.raises(n.NftError, match="nft -f failed when the change was applied .*stand-in told to fail"):
        table.confirm(record["token"])
    assert not os.path.exists(paths["pending"])
    assert ["systemctl", "stop", "edgeops-nft-revert-%s.timer" % record["token"]] in rec.calls


def test_an_apply_that_never_ran_is_reported(device):
    table, _rec, record, _paths = arm(device)
    with pytest.raises(n.NftError, match="did not run"):
        table.confirm(record["token"], wait_apply=0)


def test_a_second_change_waits_for_the_first(device):
    table, _rec, _record, _paths = arm(device)
    with pytest.raises(n.NftError, match="table inet t: a commit-confirmed change .* is pending until"):
        table.arm("table inet t { }\n", None, 20)


def test_apply_takes_the_lock_and_is_refused_while_a_change_is_pending(device):
    state = device / "state"
    lock_path = str(state / "inet-t.lock")

    def run(argv, data=None, timeout=60):
        with open(lock_path) as other:  # another open file: flock conflicts with the module's
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return Recorder()(argv, data, timeout)
    n.Table("inet", "t", nft="nft", run=run, state_dir=str(state)).apply("table inet t { }\n")
    assert nft_log(device)[-1].startswith("-f ")

    table, _rec, record, _paths = arm(device)
    before = list(nft_log(device))
    message = ("table inet t: a commit-confirmed change (token %s, systemd timer edgeops-nft-revert-%s) is pending "
               "until 1970-01-01 00:17:02 UTC (it reverts by itself unless confirmed); re-run after it has reverted or "
               "been confirmed") % (record["token"], record["token"])
    assert table.pending_message() == message  # revert_at: 1000 + APPLY_DELAY + 20
    with pytest.raises(n.NftError, match="is pending until"):
        table.apply("table inet t { }\n")
    assert nft_log(device) == before


def test_confirm_timeout_below_the_minimum_is_refused(device):
    table = n.Table("inet", "t", run=Recorder(), state_dir=str(device / "state"))
    with pytest.raises(n.NftError, match="at least 10 s"):
        table.arm("table inet t { }\n", None, 5)


def test_a_malformed_token_is_refused(device):
    table = n.Table("inet", "t", run=Recorder(), state_dir=str(device / "state"))
    with pytest.raises(n.NftError, match="malformed confirm token"):
        table.confirm("../../etc/passwd")


# ---- the module, with a change still pending on the device ----------------------------------

NEW_LISTING = "table inet t {\n\tchain input {\n\t}\n}\n"


class FakeDevice(object):
    """nft, unshare and systemd as the module sees them (nothing runs): the live table is ``live``, the content
    loads as ``NEW_LISTING`` and ``nft -f`` is recorded."""

    def __init__(self, live):
        self.live = live
        self.loaded = []

    def __call__(self, argv, data=None, timeout=60):
        if argv[0] == "unshare":
            return 0, NEW_LISTING, ""
        if argv[1:3] == ["-s", "list"]:
            return (0, self.live, "") if self.live is not None else (1, "", "Error: No such file or directory")
        if argv[1:2] == ["-f"]:
            self.loaded.append(argv[2])
        return 0, "", ""


def run_module(monkeypatch, capsys, device, fake, **args):
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.edgeops.fleet.plugins.modules import nftables as module

    table_class = n.Table
    monkeypatch.setattr(n, "Table", lambda family, table, nft, run: table_class(
        family, table, nft=nft, run=fake, state_dir=str(device / "state")))
    with patch_module_args(dict(args, table="t", family="inet")), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("phase, confirm_timeout", [("run", 0), ("arm", 20)])
def test_a_rerun_while_a_change_is_pending_fails_naming_it(device, monkeypatch, capsys, phase, confirm_timeout):
    # The first run armed the change and was interrupted before its confirm; the apply timer has run.
    _table, _rec, record, _paths = arm(device, content="table inet t { chain input { } }\n")
    fake = FakeDevice(live=NEW_LISTING)
    result = run_module(monkeypatch, capsys, device, fake, content="table inet t { chain input { } }\n",
                        confirm_timeout=confirm_timeout, _phase=phase)
    assert result["failed"] and not result["changed"] and not fake.loaded
    assert result["msg"].startswith("table inet t: a commit-confirmed change (token %s, systemd timer "
                                    "edgeops-nft-revert-%s) is pending until " % (record["token"], record["token"]))
    assert "re-run after it has reverted or been confirmed" in result["msg"]


def test_check_mode_fails_on_a_pending_change_as_the_real_run_does(device, monkeypatch, capsys):
    _table, _rec, record, _paths = arm(device, content="table inet t { chain input { } }\n")
    fake = FakeDevice(live=NEW_LISTING)
    result = run_module(monkeypatch, capsys, device, fake, content="table inet t { chain input { } }\n",
                        _ansible_check_mode=True)
    assert result["failed"] and not result["changed"] and not fake.loaded
    assert result["msg"].startswith("table inet t: a commit-confirmed change (token %s" % record["token"])


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("args, message", [
    # An unchanged table (NEW_LISTING is live) used to let these through: the timeout was checked only when armed.
    ({"confirm_timeout": 5, "_phase": "arm"}, "confirm_timeout must be 0 (no confirm) or at least 10 s, got 5"),
    ({"confirm_timeout": -1}, "confirm_timeout must be 0 (no confirm) or at least 10 s, got -1"),
    ({"recovery_timeout": -1}, "recovery_timeout must be 0 or more seconds, got -1"),
    ({"state": "absent"}, "content is used only with state=present; state=absent removes the table"),
])
def test_bad_options_are_refused_in_both_modes_before_the_device_is_read(device, monkeypatch, capsys, check_mode,
                                                                         args, message):
    fake = FakeDevice(live=NEW_LISTING)
    result = run_module(monkeypatch, capsys, device, fake, content="table inet t { chain input { } }\n",
                        _ansible_check_mode=check_mode, **args)
    assert result["failed"] and result["msg"] == message and not result["changed"]
    assert not fake.loaded and not os.path.exists(str(device / "state"))


def test_the_confirm_phase_of_the_pending_change_still_runs(device, monkeypatch, capsys):
    _table, _rec, record, paths = arm(device, content="table inet t { chain input { } }\n")
    run_script(paths["apply_sh"])
    result = run_module(monkeypatch, capsys, device, FakeDevice(live=NEW_LISTING), _phase="confirm",
                        _change=record["token"])
    assert not result.get("failed") and result["confirmed"] and not result["reverted"]
    assert result["revert_at"] == record["revert_at"] and result["listing"] == NEW_LISTING


# ---- the real nft, in a throwaway network namespace ----------------------------------------

NETNS_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.edgeops.fleet.plugins.module_utils import _nftables as n
    other = "table ip filter {\\n chain FORWARD { type filter hook forward priority filter; policy drop; }\\n}\\n"
    n.run(["nft", "-f", "-"], other)
    t = n.Table("inet", "edgeops_firewall", state_dir=tempfile.mkdtemp())
    content = sys.stdin.read()
    out = {}
    t.validate(content)
    desired = t.canonical(content)
    out["absent_before"] = t.current() is None
    t.apply(content)
    out["same_after_apply"] = n.normalise_listing(t.current()) == n.normalise_listing(desired)
    n.run(["nft", "add", "element", "inet", "edgeops_firewall", "ssh_rate_v4",
                   "{ 10.9.9.9 limit rate over 10/minute }"])
    out["kernel_state_ignored"] = n.normalise_listing(t.current()) == n.normalise_listing(desired)
    changed = t.canonical(content.replace("10.0.0.0/8", "10.0.0.0/9"))
    out["change_seen"] = n.normalise_listing(t.current()) != n.normalise_listing(changed)
    t.apply(content.replace("10.0.0.0/8", "10.0.0.0/9"))
    out["replaced"] = "10.0.0.0/9" in t.current() and "10.0.0.0/8" not in t.current()
    out["other_table_kept"] = n.run(["nft", "list", "table", "ip", "filter"])[0] == 0
    try:
        t.validate(content.replace("accept", "acept", 1))
    except n.NftError as exc:
        out["invalid"] = str(exc)
    t.apply(None)
    out["absent_after"] = t.current() is None
    print(json.dumps(out))
""")


@pytest.mark.requires_tools("nft", "unshare")
@pytest.mark.requires_netns
def test_real_nft_in_a_network_namespace():
    content = textwrap.dedent("""\
        table inet edgeops_firewall {
            set ssh_rate_v4 { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 5m; }
            chain input {
                type filter hook input priority filter; policy drop;
                ct state established,related accept
                tcp dport 22 ct state new update @ssh_rate_v4 { ip saddr limit rate over 10/minute } drop
                ip saddr 10.0.0.0/8 tcp dport 22 accept
            }
        }
        """)
    collections = os.path.join(os.path.dirname(n.__file__), "..", "..", "..", "..", "..")
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", NETNS_SCRIPT, os.path.abspath(collections)],
                          input=content, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out.pop("invalid").startswith("content does not validate (nft -c)")
    assert out == {"absent_before": True, "same_after_apply": True, "kernel_state_ignored": True, "change_seen": True,
                   "replaced": True, "other_table_kept": True, "absent_after": True}
