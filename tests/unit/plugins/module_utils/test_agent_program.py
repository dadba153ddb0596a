# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device program runs from the files roles/agent installs, alone: no Ansible on the device side.

The package is laid out as the role lays it out (every ``*.py`` of plugins/module_utils/_generations in
``<lib>/edgeops_generations/``, the content of the role's "Install edgeops-gen" task as the program, its
library path pointed at ``<lib>``), then run by ``python3 -I`` (no PYTHONPATH, so not the collection of this checkout) with an import
hook that refuses ``ansible`` and ``ansible_collections``. The generations themselves are made in this process
with the real Store on a temporary state directory; the program then does the dead-man's revert for real.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.edgeops.fleet.plugins.module_utils._generations import config
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.store import Store

PACKAGE = os.path.dirname(config.__file__)
ROLE = os.path.join(PACKAGE, "..", "..", "..", "roles", "agent")
INSTALLED_LIB = "/usr/local/lib/edgeops"

# Runs the program as the shebang would, with Ansible made unimportable.
LAUNCHER = """
import runpy, sys

class NoAnsible:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ansible", "ansible_collections"):
            raise ImportError("the device program imported %s" % name)
        return None

sys.meta_path.insert(0, NoAnsible())
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    assert not [m for m in sys.modules if m.split(".")[0] in ("ansible", "ansible_collections")]
"""


@pytest.fixture
def device(tmp_path):
    """The agent role's layout under tmp_path, and a settings file pointing at a temporary state directory."""
    lib = tmp_path / "lib"
    (lib / "edgeops_generations").mkdir(parents=True)
    for path in glob.glob(os.path.join(PACKAGE, "*.py")):
        shutil.copy(path, str(lib / "edgeops_generations"))
    with open(os.path.join(ROLE, "tasks", "main.yml")) as handle:
        tasks = yaml.safe_load(handle)
    program = [t for t in tasks if t["name"] == "Install edgeops-gen"][0]["ansible.builtin.copy"]["content"]
    assert program.count(INSTALLED_LIB) == 1
    (tmp_path / "edgeops-gen").write_text(program.replace(INSTALLED_LIB, str(lib)))
    settings = {"state_dir": str(tmp_path / "state"), "compose_project": "edgeops-unit-%d" % os.getpid()}
    (tmp_path / "agent.json").write_text(json.dumps(settings))
    return tmp_path


def edgeops_gen(device, *args):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EDGEOPS_AGENT_CONFIG": str(device / "agent.json")}
    return subprocess.run([sys.executable, "-I", "-c", LAUNCHER, str(device / "edgeops-gen")] + list(args),
                          capture_output=True, text=True, env=env, check=False, timeout=120)


def test_the_role_ships_every_module_of_the_package():
    shipped = sorted(os.path.basename(p) for p in glob.glob(os.path.join(PACKAGE, "*.py")))
    assert "__init__.py" in shipped and "cli.py" in shipped
    with open(os.path.join(ROLE, "vars", "main.yml")) as handle:
        role_vars = handle.read()
    assert "plugins/module_utils/_generations/*.py" in role_vars and config.AGENT_LIB in role_vars


def test_version_and_help_without_ansible(device):
    out = edgeops_gen(device, "version")
    assert (out.returncode, out.stdout.strip()) == (0, config.AGENT_VERSION), out.stderr
    out = edgeops_gen(device, "help")
    assert out.returncode == 0 and out.stdout.startswith("usage: edgeops-gen <command>"), out.stderr
    assert edgeops_gen(device, "nonsense").returncode == 2


def test_the_dead_man_reverts_a_switch_without_ansible(device):
    conf = device / "app.conf"
    # No systemd, docker, nft or virsh for the switches made here.
    store = Store(json.loads((device / "agent.json").read_text()), runner=lambda argv, **kw: (0, "", ""),
                  sleep=lambda s: None, which=lambda program: None)
    for rel in ("r1", "r2"):
        store.stage({"id": rel, "files": [{"path": str(conf), "content": "release=%s\n" % rel}]})
    store.switch(1, 15, health=False)
    store.confirm(1)
    store.switch(2, 15, health=False)
    store.unlock()
    assert conf.read_text() == "release=r2\n"

    out = edgeops_gen(device, "deadman", "2")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"changed": True, "reverted_to": 1}
    assert conf.read_text() == "release=r1\n"
    out = edgeops_gen(device, "incidents")
    assert [json.loads(line)["what"] for line in out.stdout.splitlines()] == ["deadman-revert"]
    listing = json.loads(edgeops_gen(device, "list").stdout)
    assert (listing["current"], listing["confirmed"], listing["pending"]) == (1, 1, None)
