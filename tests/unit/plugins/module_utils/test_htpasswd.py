# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry_htpasswd module's pure code, on real files in a temp dir and with real bcrypt (passlib).

passlib and bcrypt come from requirements.txt (the module runs them on the hub from Debian's python3-passlib and
python3-bcrypt; molecule/registry exercises that, with Distribution checking the hashes this code writes).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import sys

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _htpasswd as h

USERS = [{"name": "publisher", "password": "pub-Vq3s9TzK1m"}, {"name": "puller", "password": "pull-Hx7w2RdN4c"}]
PASSWORDS = [user["password"] for user in USERS]


@pytest.fixture(scope="module")
def bcrypt():
    return h.load_bcrypt()  # fails naming passlib if it is missing: requirements.txt installs it


class Recorder(object):
    """passlib's bcrypt, counting what it hashes (check mode and kept entries hash nothing)."""

    def __init__(self, bcrypt):
        self.real_hash, self.verify = bcrypt
        self.hashed = []

    def hash_password(self, password, cost):
        self.hashed.append(cost)
        return self.real_hash(password, cost)

    @property
    def pair(self):
        return self.hash_password, self.verify


def entries(path):
    with open(path) as handle:
        return h.parse(handle.read())[0]


def leaves_nothing_secret(result):
    text = json.dumps(result)
    assert not any(password in text for password in PASSWORDS)
    assert "$2" not in text


# ---- parse / render ---------------------------------------------------------------------

def test_parse_reads_the_file_as_distribution_does():
    text = ("# accounts\n\n  publisher:$2y$05$abc  \nbad line\npuller:$2b$10$x\n:nohash\n"
            "publisher:$2b$05$last\n")
    parsed, problems = h.parse(text)
    assert parsed == [("puller", "$2b$10$x"), ("publisher", "$2b$05$last")]
    assert problems == ["line 4 is not name:hash (Distribution refuses to start with it)",
                        "line 6 is not name:hash (Distribution refuses to start with it)",
                        "user 'publisher' is listed on lines 3 and 7 (the last one counts)"]
    assert h.parse(None) == ([], []) and h.parse("") == ([], [])


def test_render_round_trips():
    pairs = [("a", "$2b$05$" + "x" * 53), ("b", "$2y$10$" + "y" * 53)]
    assert h.render(pairs) == "a:$2b$05$%s\nb:$2y$10$%s\n" % ("x" * 53, "y" * 53)
    assert h.parse(h.render(pairs)) == (pairs, [])
    assert h.render([]) == ""


def test_the_cost_is_read_from_the_hash(bcrypt):
    hash_password, _verify = bcrypt
    assert h.bcrypt_cost(hash_password("x", 5)) == 5
    assert h.bcrypt_cost("$2y$12$" + "a" * 53) == 12
    assert h.bcrypt_cost("$2$07$" + "a" * 53) == 7
    assert h.bcrypt_cost("$apr1$salt$hash") is None
    assert h.bcrypt_cost("{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=") is None
    assert h.bcrypt_cost("$2b$05$short") is None


# ---- input ------------------------------------------------------------------------------

@pytest.mark.parametrize("users, message", [
    ([{"name": "a:b", "password": "p"}], r"^users\[0\]\.name: 'a:b' contains ':'"),
    ([{"name": "ok", "password": "p"}, {"name": "a\nb", "password": "p"}], r"^users\[1\]\.name: .* whitespace"),
    ([{"name": "a b", "password": "p"}], r"^users\[0\]\.name: 'a b' contains whitespace"),
    ([{"name": "#x", "password": "p"}], r"^users\[0\]\.name: '#x' starts with '#'"),
    ([{"name": "", "password": "p"}], r"^users\[0\]\.name: a user name is required"),
    ([{"name": "a", "password": ""}], r"^users\[0\]\.password: must not be empty \(user 'a'\)"),
    ([{"name": "a", "password": None}], r"^users\[0\]\.password: must not be empty"),
    ([{"name": "a", "password": "p"}, {"name": "a", "password": "q"}],
     r"^users\[1\]\.name: 'a' is listed twice \(also users\[0\]\)"),
    ([{"name": "a", "password": "p", "role": "x"}], r"^users\[0\]: unknown key\(s\) role"),
    (["a"], r"^users\[0\]: a dict"),
])
def test_bad_users_are_refused_naming_the_key(users, message):
    with pytest.raises(h.HtpasswdError, match=message):
        h.check_users(users)


@pytest.mark.parametrize("cost", [3, 32, "10", None, True, 10.0])
def test_a_cost_outside_4_to_31_is_refused(cost):
    with pytest.raises(h.HtpasswdError, match=r"^bcrypt_cost: an integer from 4 to 31"):
        h.check_cost(cost)


def test_modes_are_octal():
    assert h.check_mode_value("0640") == 0o640
    assert h.check_mode_value("600") == 0o600
    assert h.check_mode_value(0o640) == 0o640
    assert h.check_mode_value(None) is None
    for bad in ("u=rw", "0999", "", True, 0o17777):
        with pytest.raises(h.HtpasswdError, match=r"^mode: "):
            h.check_mode_value(bad)


def test_long_passwords_get_a_warning():
    users = h.check_users([{"name": "a", "password": "x" * 72}, {"name": "b", "password": "é" * 37}])
    assert h.long_password_warnings(users) == [
        "users[1].password: longer than 72 bytes; bcrypt uses only the first 72 (user 'b')"]


# ---- one file -----------------------------------------------------------------------------

def test_a_new_file_gets_every_user_at_the_cost(tmp_path, bcrypt):
    path = str(tmp_path / "htpasswd")
    result = h.manage(path, USERS, 5, mode="0640", want_diff=True, bcrypt=bcrypt)
    assert result["changed"] and result["added"] == ["publisher", "puller"]
    assert result["updated"] == [] and result["removed"] == []
    written = entries(path)
    assert [name for name, _hash in written] == ["publisher", "puller"]
    for (name, hashed), user in zip(written, USERS):
        assert hashed.startswith("$2b$05$") and bcrypt[1](user["password"], hashed)
        assert not bcrypt[1]("wrong", hashed)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert result["diff"]["before"] == "" and result["diff"]["after"].endswith("publisher\npuller\n")
    leaves_nothing_secret(result)


def test_the_salt_is_random(tmp_path, bcrypt):
    users = [{"name": "a", "password": "same"}, {"name": "b", "password": "same"}]
    path = str(tmp_path / "htpasswd")
    h.manage(path, users, 4, bcrypt=bcrypt)
    (_a, first), (_b, second) = entries(path)
    assert first != second


def test_an_entry_that_verifies_is_kept_whatever_its_cost(tmp_path, bcrypt):
    path = tmp_path / "htpasswd"
    old = bcrypt[0](USERS[0]["password"], 7)
    path.write_text("publisher:%s\n" % old)
    before = os.stat(str(path))
    recorder = Recorder(bcrypt)
    result = h.manage(str(path), USERS, 5, bcrypt=recorder.pair)
    assert result["changed"] and result["added"] == ["puller"] and result["updated"] == []
    assert dict(entries(str(path)))["publisher"] == old  # cost 7 kept, byte for byte
    assert recorder.hashed == [5]
    # Again: nothing to do, the file is not even rewritten.
    content, inode = path.read_bytes(), os.stat(str(path)).st_ino
    assert inode != before.st_ino  # the first run replaced it (rename)
    again = h.manage(str(path), USERS, 5, bcrypt=recorder.pair)
    assert not again["changed"] and again["added"] == again["updated"] == again["removed"] == []
    assert path.read_bytes() == content and os.stat(str(path)).st_ino == inode
    assert recorder.hashed == [5]


def test_a_changed_password_is_hashed_again_at_the_new_cost(tmp_path, bcrypt):
    path = str(tmp_path / "htpasswd")
    h.manage(path, USERS, 6, bcrypt=bcrypt)
    kept = dict(entries(path))["puller"]
    users = [{"name": "publisher", "password": "pub-rotated-1"}, USERS[1]]
    result = h.manage(path, users, 5, want_diff=True, bcrypt=bcrypt)
    assert result["changed"] and result["updated"] == ["publisher"] and result["added"] == []
    after = dict(entries(path))
    assert after["publisher"].startswith("$2b$05$") and bcrypt[1]("pub-rotated-1", after["publisher"])
    assert after["puller"] == kept  # cost 6, untouched
    assert "publisher (new hash: password changed)\n" in result["diff"]["after"]
    leaves_nothing_secret(result)


def test_rehash_on_cost_change_brings_verified_entries_to_the_cost(tmp_path, bcrypt):
    path = str(tmp_path / "htpasswd")
    h.manage(path, USERS, 6, bcrypt=bcrypt)
    assert not h.manage(path, USERS, 5, bcrypt=bcrypt)["changed"]
    result = h.manage(path, USERS, 5, rehash_on_cost_change=True, want_diff=True, bcrypt=bcrypt)
    assert result["changed"] and result["updated"] == ["publisher", "puller"]
    assert all(hashed.startswith("$2b$05$") for _name, hashed in entries(path))
    assert "puller (new hash: cost 6 -> 5)\n" in result["diff"]["after"]
    assert not h.manage(path, USERS, 5, rehash_on_cost_change=True, bcrypt=bcrypt)["changed"]


def test_an_entry_distribution_cannot_check_is_replaced(tmp_path, bcrypt):
    path = tmp_path / "htpasswd"
    path.write_text("publisher:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n")
    result = h.manage(str(path), USERS[:1], 5, bcrypt=bcrypt)
    assert result["updated"] == ["publisher"]
    assert entries(str(path))[0][1].startswith("$2b$05$")


def test_users_not_listed_are_removed(tmp_path, bcrypt):
    path = str(tmp_path / "htpasswd")
    h.manage(path, USERS + [{"name": "old-ci", "password": "old-Pw8"}], 5, bcrypt=bcrypt)
    result = h.manage(path, USERS, 5, want_diff=True, bcrypt=bcrypt)
    assert result["changed"] and result["removed"] == ["old-ci"] and result["added"] == result["updated"] == []
    assert [name for name, _hash in entries(path)] == ["publisher", "puller"]
    assert "old-ci" in result["diff"]["before"] and "old-ci" not in result["diff"]["after"]
    emptied = h.manage(path, [], 5)  # no user to check: passlib is not even needed
    assert emptied["removed"] == ["publisher", "puller"] and open(path).read() == ""


def test_order_and_comments_alone_change_nothing(tmp_path, bcrypt):
    path = tmp_path / "htpasswd"
    h.manage(str(path), USERS, 5, bcrypt=bcrypt)
    lines = path.read_text().splitlines()
    path.write_text("# kept by hand\n%s\n\n%s\n" % (lines[1], lines[0]))
    assert not h.manage(str(path), USERS, 5, bcrypt=bcrypt)["changed"]
    assert not h.manage(str(path), list(reversed(USERS)), 5, bcrypt=bcrypt)["changed"]


def test_a_line_distribution_cannot_read_is_dropped_with_a_warning(tmp_path, bcrypt):
    path = tmp_path / "htpasswd"
    h.manage(str(path), USERS, 5, bcrypt=bcrypt)
    path.write_text(path.read_text() + "garbage\n")
    result = h.manage(str(path), USERS, 5, bcrypt=bcrypt)
    assert result["changed"] and result["added"] == result["updated"] == result["removed"] == []
    assert result["warnings"] == ["%s: line 3 is not name:hash (Distribution refuses to start with it); the file "
                                  "is written again without it" % path]
    assert "garbage" not in path.read_text() and len(entries(str(path))) == 2


def test_check_mode_writes_and_hashes_nothing(tmp_path, bcrypt):
    recorder = Recorder(bcrypt)
    missing = str(tmp_path / "new")
    result = h.manage(missing, USERS, 5, mode="0640", check_mode=True, want_diff=True, bcrypt=recorder.pair)
    assert result["changed"] and result["added"] == ["publisher", "puller"] and not os.path.exists(missing)

    path = tmp_path / "htpasswd"
    h.manage(str(path), USERS + [{"name": "old-ci", "password": "old-Pw8"}], 6, mode="0640", bcrypt=bcrypt)
    content, info = path.read_bytes(), os.stat(str(path))
    users = [{"name": "publisher", "password": "pub-rotated-1"}, USERS[1], {"name": "new", "password": "n-3xQ"}]
    result = h.manage(str(path), users, 5, mode="0600", rehash_on_cost_change=True, check_mode=True,
                      want_diff=True, bcrypt=recorder.pair)
    assert result["changed"] and result["added"] == ["new"] and result["updated"] == ["publisher", "puller"]
    assert result["removed"] == ["old-ci"]
    assert "mode 0640" in result["diff"]["before"] and "mode 0600" in result["diff"]["after"]
    assert recorder.hashed == []
    after = os.stat(str(path))
    assert path.read_bytes() == content and (after.st_ino, after.st_mtime_ns, after.st_mode) == \
        (info.st_ino, info.st_mtime_ns, info.st_mode)
    assert sorted(os.listdir(str(tmp_path))) == ["htpasswd"]
    leaves_nothing_secret(result)


def test_bad_input_changes_nothing_and_names_the_key(tmp_path, bcrypt):
    path = tmp_path / "htpasswd"
    h.manage(str(path), USERS, 5, bcrypt=bcrypt)
    content = path.read_bytes()
    for users, cost, message in (
            ([USERS[0], {"name": "pu:ller", "password": "x"}], 5, r"^users\[1\]\.name: "),
            ([USERS[0], {"name": "puller", "password": ""}], 5, r"^users\[1\]\.password: must not be empty"),
            (USERS, 2, r"^bcrypt_cost: ")):
        with pytest.raises(h.HtpasswdError, match=message):
            h.manage(str(path), users, cost, bcrypt=bcrypt)
    with pytest.raises(h.HtpasswdError, match=r"^owner: no user 'no-such-user-here'"):
        h.manage(str(path), USERS, 5, owner="no-such-user-here", bcrypt=bcrypt)
    assert path.read_bytes() == content


def test_a_missing_directory_is_named(tmp_path, bcrypt):
    with pytest.raises(h.HtpasswdError, match=r"directory .*/nowhere does not exist"):
        h.manage(str(tmp_path / "nowhere" / "htpasswd"), USERS, 5, bcrypt=bcrypt)


# ---- owner, group, mode; atomic write -------------------------------------------------------

def test_owner_group_and_mode_are_kept_or_set(tmp_path, bcrypt):
    path = tmp_path / "htpasswd"
    h.manage(str(path), USERS, 5, bcrypt=bcrypt)
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600  # a new file without mode
    os.chmod(str(path), 0o644)
    rotated = [{"name": "publisher", "password": "pub-rotated-1"}, USERS[1]]
    h.manage(str(path), rotated, 5, bcrypt=bcrypt)
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o644  # rewritten, its mode kept
    content, inode = path.read_bytes(), os.stat(str(path)).st_ino
    result = h.manage(str(path), rotated, 5, mode=0o640, bcrypt=bcrypt)
    assert result["changed"] and result["added"] == result["updated"] == result["removed"] == []
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o640
    assert path.read_bytes() == content and os.stat(str(path)).st_ino == inode  # in place


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_owner_and_group_by_name_or_id(tmp_path, bcrypt):
    import grp
    import pwd

    nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
    path = str(tmp_path / "htpasswd")
    h.manage(path, USERS, 5, owner="nobody", group=nogroup.gr_name, mode="0640", bcrypt=bcrypt)
    info = os.stat(path)
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nogroup.gr_gid)
    assert not h.manage(path, USERS, 5, owner=str(nobody.pw_uid), group=str(nogroup.gr_gid), bcrypt=bcrypt)["changed"]
    result = h.manage(path, USERS, 5, owner="root", group="root", bcrypt=bcrypt)
    assert result["changed"] and (os.stat(path).st_uid, os.stat(path).st_gid) == (0, 0)


def test_the_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "htpasswd"
    path.write_text("old:entry\n")
    os.chmod(str(path), 0o644)
    seen = {}
    real_rename = os.rename

    def rename(src, dst):
        # At rename time the temp file is complete, in the same directory, and has its final mode.
        seen.update(src=src, dst=dst, text=open(src).read(), mode=stat.S_IMODE(os.stat(src).st_mode),
                    old=open(dst).read())
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    h.write_atomic(str(path), "new:entry\n", {"uid": os.geteuid(), "gid": os.getegid(), "mode": 0o640})
    assert os.path.dirname(seen["src"]) == str(tmp_path) and seen["dst"] == str(path)
    assert seen["text"] == "new:entry\n" and seen["mode"] == 0o640 and seen["old"] == "old:entry\n"
    assert path.read_text() == "new:entry\n" and sorted(os.listdir(str(tmp_path))) == ["htpasswd"]

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(OSError):
        h.write_atomic(str(path), "newer:entry\n", {"uid": os.geteuid(), "gid": os.getegid(), "mode": 0o640})
    assert path.read_text() == "new:entry\n" and sorted(os.listdir(str(tmp_path))) == ["htpasswd"]


# ---- passlib missing ------------------------------------------------------------------------

def test_a_missing_passlib_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "passlib.hash", None)  # import passlib.hash raises ImportError
    with pytest.raises(h.HtpasswdError, match=r"needs the Python library passlib .*python3-passlib python3-bcrypt"):
        h.manage(str(tmp_path / "htpasswd"), USERS, 5)
    assert not os.path.exists(str(tmp_path / "htpasswd"))
    # Nothing to hash or check: check mode on a new file (a first run, before apt installs passlib), no users.
    assert h.manage(str(tmp_path / "htpasswd"), USERS, 5, check_mode=True)["added"] == ["publisher", "puller"]
    assert h.manage(str(tmp_path / "htpasswd"), [], 5)["changed"]


def test_a_missing_bcrypt_backend_is_named(monkeypatch):
    from passlib.hash import bcrypt as passlib_bcrypt

    def no_backend():
        from passlib.exc import MissingBackendError
        raise MissingBackendError("bcrypt: no backends available")

    monkeypatch.setattr(passlib_bcrypt, "get_backend", no_backend)
    with pytest.raises(h.HtpasswdError, match=r"passlib has no usable bcrypt backend \(MissingBackendError"):
        h.load_bcrypt()


# ---- the module ---------------------------------------------------------------------------

def run_module(capsys, **args):
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.edgeops.fleet.plugins.modules import registry_htpasswd as module

    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_the_module_reports_names_only(tmp_path, capsys):
    path = str(tmp_path / "htpasswd")
    result = run_module(capsys, path=path, users=USERS, bcrypt_cost=5, mode="0640", _ansible_diff=True)
    assert result["changed"] and result["added"] == ["publisher", "puller"] and result["path"] == path
    assert "publisher" in result["diff"]["after"]
    assert "$2" not in json.dumps(result) and not any(p in json.dumps(result) for p in PASSWORDS)
    again = run_module(capsys, path=path, users=USERS, bcrypt_cost=5, mode="0640")
    assert not again["changed"]
    bad = run_module(capsys, path=path, users=[{"name": "x", "password": ""}], bcrypt_cost=5)
    assert bad["failed"] and bad["msg"] == "users[0].password: must not be empty (user 'x')"
    cost = run_module(capsys, path=path, users=USERS, bcrypt_cost=40)
    assert cost["failed"] and cost["msg"].startswith("bcrypt_cost: an integer from 4 to 31")
