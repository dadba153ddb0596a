# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""edgeops.fleet.agent_package's plan and apply, on real temporary directories, and the module run as Ansible runs it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _agent_package as package

MODULES = {"__init__.py": "", "cli.py": "print('cli')\n", "store.py": "STORE = 1\n"}
OWNER = (os.geteuid(), os.getegid())


def converge(directory, modules=None, absent=()):
    modules = MODULES if modules is None else modules
    changes = package.plan(str(directory), modules, absent)
    package.apply(str(directory), modules, changes)
    return changes


def test_a_missing_directory_gets_every_module_then_nothing_changes(tmp_path):
    lib = tmp_path / "lib" / "pkg"
    changes = converge(lib)
    assert changes == {"create_directory": True, "write": sorted(MODULES), "remove": []}
    assert {p.name: p.read_text() for p in lib.iterdir()} == MODULES
    assert {oct(p.stat().st_mode & 0o777) for p in lib.iterdir()} == {"0o644"}
    assert package.plan(str(lib), MODULES) == {"create_directory": False, "write": [], "remove": []}


def test_only_what_differs_is_written_and_other_modules_are_removed(tmp_path):
    converge(tmp_path)
    (tmp_path / "cli.py").write_text("tampered\n")
    os.chmod(str(tmp_path / "store.py"), 0o666)
    (tmp_path / "old.py").write_text("gone in this version\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "cli.cpython-313.pyc").write_bytes(b"\0")
    (tmp_path / "README").write_text("not a module\n")
    legacy = tmp_path.parent / ("%s-legacy.py" % tmp_path.name)
    legacy.write_text("single-file library\n")

    changes = package.plan(str(tmp_path), MODULES, [str(legacy), str(tmp_path / "never-there.py")])
    assert changes == {"create_directory": False, "write": ["cli.py", "store.py"],
                       "remove": [str(tmp_path / "old.py"), str(legacy)]}
    diff = package.diff(str(tmp_path), MODULES, changes)
    assert [(d["before"], d["after"]) for d in diff[:2]] == [("tampered\n", "print('cli')\n"),
                                                             ("STORE = 1\n", "STORE = 1\n")]
    package.apply(str(tmp_path), MODULES, changes)
    assert (tmp_path / "cli.py").read_text() == "print('cli')\n"
    assert oct((tmp_path / "store.py").stat().st_mode & 0o777) == "0o644"
    assert not (tmp_path / "old.py").exists() and not legacy.exists()
    # Not ours to manage: the interpreter's cache and anything that is not a module.
    assert (tmp_path / "__pycache__" / "cli.cpython-313.pyc").exists() and (tmp_path / "README").exists()


def test_a_file_of_another_owner_or_a_symlink_is_rewritten(tmp_path):
    converge(tmp_path)
    assert package.plan(str(tmp_path), MODULES, owner=(OWNER[0] + 1, OWNER[1]))["write"] == sorted(MODULES)
    (tmp_path / "cli.py").unlink()
    (tmp_path / "cli.py").symlink_to(tmp_path / "store.py")
    assert package.plan(str(tmp_path), MODULES)["write"] == ["cli.py"]


@pytest.mark.parametrize("modules, key", [
    ({}, "expected at least one module"),
    ({"../evil.py": ""}, "'../evil.py'"),
    ({"sub/cli.py": ""}, "'sub/cli.py'"),
    ({"cli": ""}, "'cli'"),
    ({"cli.py": 3}, "cli.py: expected the module's text, got int"),
])
def test_bad_names_and_contents_are_refused_before_anything_is_touched(tmp_path, modules, key):
    lib = tmp_path / "pkg"
    with pytest.raises(package.PackageError, match=key.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        package.plan(str(lib), modules)
    assert not lib.exists()


def run_module(args, check=False):
    """The module as Ansible runs it: its arguments as JSON on stdin, its result as JSON on stdout."""
    module_args = dict(args, _ansible_check_mode=check, _ansible_diff=True)
    repo = os.path.abspath(os.path.join(os.path.dirname(package.__file__), "..", ".."))
    collections = os.path.abspath(os.path.join(repo, "..", "..", ".."))
    out = subprocess.run([sys.executable, os.path.join(repo, "plugins", "modules", "agent_package.py")],
                         input=json.dumps({"ANSIBLE_MODULE_ARGS": module_args}), capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=collections), check=False, timeout=60)
    return json.loads(out.stdout)


def test_the_module_in_check_mode_reports_what_the_run_then_does(tmp_path):
    lib = tmp_path / "pkg"
    predicted = run_module({"path": str(lib), "modules": MODULES}, check=True)
    assert not lib.exists()
    done = run_module({"path": str(lib), "modules": MODULES})
    assert (predicted["changed"], predicted["written"]) == (done["changed"], done["written"]) == (True, sorted(MODULES))
    assert [d["after_header"] for d in done["diff"]] == [str(lib / name) for name in sorted(MODULES)]
    again = run_module({"path": str(lib), "modules": MODULES})
    assert (again["changed"], again["written"], again["removed"]) == (False, [], [])
    refused = run_module({"path": str(tmp_path / "other"), "modules": {"../x.py": ""}})
    assert refused["failed"] and "'../x.py'" in refused["msg"] and not (tmp_path / "other").exists()
