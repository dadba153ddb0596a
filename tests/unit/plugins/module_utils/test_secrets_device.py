# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device side of secrets delivery on real files in a temp directory (run as root, as the module is).

systemd-creds and systemctl are a stand-in runner (named as such): `encrypt` writes a fresh random IV followed by the
plaintext, as systemd-creds draws a fresh IV at every encryption; molecule `secrets` runs the real ones.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import stat

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils._secrets_device import (
    WITHHELD, DeliverError, deliver, restore_script, restore_unit, withhold)

TOKEN = "tok-Secret-4242"
KEY = "model-Key-9191"


class StandInSystem(object):
    """systemd-creds encrypt and systemctl (daemon-reload, is-enabled, enable), recorded."""

    def __init__(self, fail_encrypt=False):
        self.calls = []
        self.enabled = False
        self.fail_encrypt = fail_encrypt

    def __call__(self, argv):
        self.calls.append(list(argv))
        if argv[:2] == ["systemd-creds", "encrypt"]:
            if self.fail_encrypt:
                return 1, "", "Failed to determine local credential host secret"
            with open(argv[3], "rb") as src, open(argv[4], "wb") as dst:
                dst.write(os.urandom(16) + src.read())
            return 0, "", ""
        if argv[:2] == ["systemctl", "is-enabled"]:
            return (0, "enabled\n", "") if self.enabled else (1, "disabled\n", "")
        if argv[:2] == ["systemctl", "enable"]:
            self.enabled = True
        return 0, "", ""

    def encrypted(self):
        return [a[2].split("=", 1)[1] for a in self.calls if a[:2] == ["systemd-creds", "encrypt"]]


@pytest.fixture
def device(tmp_path):
    paths = dict(secrets_dir=str(tmp_path / "run" / "secrets"), credentials_dir=str(tmp_path / "etc" / "credentials"),
                 script_path=str(tmp_path / "edgeops-secrets-restore"), unit_path=str(tmp_path / "edgeops-secrets.service"))
    return paths


def run(device, system, values, owners, check_mode=False):
    return deliver(values, owners, device["secrets_dir"], device["credentials_dir"], system, check_mode,
                   device["script_path"], device["unit_path"])


def sha16(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def test_first_delivery_writes_encrypts_and_installs_the_boot_restore(device):
    system = StandInSystem()
    result = run(device, system, {"api_token": TOKEN, "model_key": KEY, "unused": "x"},
                 {"api_token": 10001, "model_key": "10002"})
    assert result["changed"] and result["renewed"] == {"api_token": True, "model_key": True}
    assert sorted(system.encrypted()) == ["api_token", "model_key"]
    token = os.path.join(device["secrets_dir"], "api_token")
    info = os.stat(token)
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o400, 10001, 0)
    assert open(token).read() == TOKEN
    assert os.stat(os.path.join(device["secrets_dir"], "model_key")).st_uid == 10002
    assert not os.path.exists(os.path.join(device["secrets_dir"], "unused"))  # only what a workload reads
    assert stat.S_IMODE(os.stat(device["secrets_dir"]).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(device["credentials_dir"]).st_mode) == 0o700
    assert os.path.isdir(os.path.join(device["credentials_dir"], "previous"))
    assert open(os.path.join(device["credentials_dir"], "api_token.owner")).read() == "10001\n"
    with open(os.path.join(device["credentials_dir"], "api_token.cred"), "rb") as handle:
        assert handle.read().endswith(TOKEN.encode())  # the stand-in's "encryption": IV + plaintext
    assert stat.S_IMODE(os.stat(device["script_path"]).st_mode) == 0o755
    assert open(device["unit_path"]).read() == restore_unit(device["secrets_dir"], device["credentials_dir"],
                                                            device["script_path"])
    assert ["systemctl", "daemon-reload"] in system.calls and system.enabled
    # No value in the result, nor on any command line.
    assert TOKEN not in json.dumps(result) and KEY not in json.dumps(result)
    assert not [a for a in system.calls if TOKEN in " ".join(a) or KEY in " ".join(a)]


def test_a_second_delivery_changes_nothing_and_keeps_the_encrypted_copy(device):
    system = StandInSystem()
    run(device, system, {"api_token": TOKEN}, {"api_token": 10001})
    before = sha16(os.path.join(device["credentials_dir"], "api_token.cred"))
    system.calls = []
    again = run(device, system, {"api_token": TOKEN}, {"api_token": 10001})
    assert not again["changed"] and again["changes"] == [] and again["renewed"] == {"api_token": False}
    assert sha16(os.path.join(device["credentials_dir"], "api_token.cred")) == before
    assert system.calls == [["systemctl", "is-enabled", "edgeops-secrets.service"]]


def test_a_changed_value_is_written_and_encrypted_again_and_only_it(device):
    system = StandInSystem()
    run(device, system, {"api_token": TOKEN, "model_key": KEY}, {"api_token": 10001, "model_key": 10001})
    first = dict((n, sha16(os.path.join(device["credentials_dir"], n + ".cred"))) for n in ("api_token", "model_key"))
    second = run(device, system, {"api_token": TOKEN + "-new", "model_key": KEY}, {"api_token": 10001, "model_key": 10001})
    assert second["renewed"] == {"api_token": True, "model_key": False}
    assert sha16(os.path.join(device["credentials_dir"], "api_token.cred")) != first["api_token"]
    assert sha16(os.path.join(device["credentials_dir"], "model_key.cred")) == first["model_key"]
    assert open(os.path.join(device["secrets_dir"], "api_token")).read() == TOKEN + "-new"


def test_a_lost_encrypted_copy_or_a_changed_owner_is_made_again(device):
    system = StandInSystem()
    run(device, system, {"api_token": TOKEN}, {"api_token": 10001})
    os.unlink(os.path.join(device["credentials_dir"], "api_token.cred"))
    result = run(device, system, {"api_token": TOKEN}, {"api_token": 10001})
    assert result["renewed"] == {"api_token": True} and "secret api_token" not in result["changes"]
    assert os.path.exists(os.path.join(device["credentials_dir"], "api_token.cred"))
    result = run(device, system, {"api_token": TOKEN}, {"api_token": 10005})
    assert "secret api_token" in result["changes"] and result["renewed"] == {"api_token": True}
    assert os.stat(os.path.join(device["secrets_dir"], "api_token")).st_uid == 10005
    assert open(os.path.join(device["credentials_dir"], "api_token.owner")).read() == "10005\n"


def test_check_mode_touches_nothing_and_says_pending_for_what_would_be_encrypted(device):
    system = StandInSystem()
    result = run(device, system, {"api_token": TOKEN}, {"api_token": 10001}, check_mode=True)
    assert result["changed"] and result["renewed"] == {"api_token": True}
    assert not os.path.exists(device["secrets_dir"]) and not os.path.exists(device["unit_path"])
    assert system.calls == [["systemctl", "is-enabled", "edgeops-secrets.service"]]
    run(device, system, {"api_token": TOKEN, "model_key": KEY}, {"api_token": 10001, "model_key": 10001})
    before = sorted(os.listdir(device["credentials_dir"]))
    result = run(device, system, {"api_token": TOKEN, "model_key": KEY + "2"}, {"api_token": 10001, "model_key": 10001},
                 check_mode=True)
    assert result["renewed"] == {"api_token": False, "model_key": True}
    assert open(os.path.join(device["secrets_dir"], "model_key")).read() == KEY
    assert sorted(os.listdir(device["credentials_dir"])) == before


def test_no_secrets_to_deliver_touches_nothing(device):
    system = StandInSystem()
    expected = {"changed": False, "renewed": {}, "changes": []}
    assert run(device, system, {"api_token": TOKEN}, {}) == expected
    assert system.calls == [] and not os.path.exists(device["secrets_dir"])


@pytest.mark.parametrize("values, owners, message", [
    ({}, {"api_token": 10001}, "owners.api_token: this secret is read by workloads but has no value"),
    ({"api_token": TOKEN}, {"api_token": True}, "owners.api_token: expected a uid (a non-negative integer), got True"),
    ({"api_token": TOKEN}, {"api_token": "www-data"}, "owners.api_token: expected a uid (a non-negative integer), got 'www-data'"),
    ({"../x": TOKEN}, {"../x": 10001}, "is not a usable secret name"),
    # Written as "{'user': ...}" and "True" before.
    ({"api_token": {"user": TOKEN}}, {"api_token": 10001}, "values.api_token: a secret's value must be a string (or a "
                                                           "number), got a dict"),
    ({"api_token": True}, {"api_token": 10001}, "values.api_token: a secret's value must be a string (or a number), "
                                                "got a bool"),
    ({"api_token": ""}, {"api_token": 10001}, "values.api_token: the secret's value is empty"),
])
def test_bad_requests_are_refused_before_anything_is_written(device, values, owners, message):
    system = StandInSystem()
    with pytest.raises(DeliverError, match=re.escape(message)):
        run(device, system, values, owners)
    assert system.calls == [] and not os.path.exists(device["secrets_dir"])


def test_a_failed_encryption_names_the_secret_and_never_the_value(device):
    with pytest.raises(DeliverError) as failed:
        run(device, StandInSystem(fail_encrypt=True), {"api_token": TOKEN}, {"api_token": 10001})
    assert "encrypting secret api_token failed" in str(failed.value) and TOKEN not in str(failed.value)


def test_a_failed_encryption_keeps_the_old_copy_and_the_next_delivery_encrypts_the_new_value(device):
    system = StandInSystem()
    run(device, system, {"api_token": TOKEN}, {"api_token": 10001})
    cred = os.path.join(device["credentials_dir"], "api_token.cred")
    first = sha16(cred)
    with pytest.raises(DeliverError):
        run(device, StandInSystem(fail_encrypt=True), {"api_token": TOKEN + "-new"}, {"api_token": 10001})
    assert sha16(cred) == first  # the old copy, whole
    assert sorted(os.listdir(device["credentials_dir"])) == ["api_token.cred", "api_token.owner", "previous"]
    # The new plaintext is not left current beside the stale copy: the next delivery writes and encrypts it.
    again = run(device, system, {"api_token": TOKEN + "-new"}, {"api_token": 10001})
    assert "secret api_token" in again["changes"] and again["renewed"] == {"api_token": True}
    assert open(cred, "rb").read().endswith((TOKEN + "-new").encode())


def test_strings_that_contain_a_value_are_withheld_whole():
    result = {"changed": True, "renewed": {"api_token": True}, "fingerprints": {"api_token": "3f2a9c0d8e7b6a51"},
              "changes": ["secret api_token", "file /usr/local/sbin/edgeops-secrets-restore"], "count": 12}
    assert withhold(result, ["c0d8", "api", 2]) == {
        "changed": True, "renewed": {"api_token": True}, "fingerprints": {"api_token": WITHHELD},
        "changes": [WITHHELD, "file /usr/local/sbin/edgeops-secrets-restore"], "count": WITHHELD}
    assert withhold("secrets_deliver: owners.api_token: no user x", ["zzz", None, ""]) == \
        "secrets_deliver: owners.api_token: no user x"


def test_the_restore_script_reads_the_configured_directories():
    script = restore_script("/run/x/secrets", "/etc/x/credentials")
    assert script.startswith("#!/bin/sh\n") and "src=/etc/x/credentials\n" in script and "dst=/run/x/secrets\n" in script
