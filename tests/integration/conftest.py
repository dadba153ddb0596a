# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for tests that drive the real lab (Docker Engine, systemd containers, SSH)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
# Tests that call the collection's pure code import it from the checkout (collections/ links to the repository).
if os.path.join(REPO, "collections") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "collections"))
# The device image recipe the lab tests share (roles/lab/vars/test_image.yml).
with open(os.path.join(REPO, "roles", "lab", "vars", "test_image.yml")) as _handle:
    LAB_PACKAGES = yaml.safe_load(_handle)["lab_test_image_packages"]
RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)", re.MULTILINE)


def lab_args(name, port_base, inventory, **settings):
    """ansible-playbook arguments that point playbooks/lab/*.yml at a test's own lab (name, SSH ports, inventory)."""
    return ["-e", "lab_name=" + name, "-e", "lab_ssh_port_base=%d" % port_base, "-e", "lab_inventory_file=" + inventory,
            "-e", json.dumps(settings)]


class Run(object):
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr

    @property
    def recap(self):
        """{host: {ok, changed, unreachable, failed}} from the PLAY RECAP."""
        return {m.group("host"): {k: int(m.group(k)) for k in ("ok", "changed", "unreachable", "failed")}
                for m in RECAP_RE.finditer(self.out)}


# One ansible-playbook run at most this long: a first converge of every site.yml play on a loaded 2-CPU machine
# came near half an hour; past this the test fails instead of hanging the suite.
ANSIBLE_TIMEOUT = 2700


def ansible(tool, *args):
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PATH=BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([os.path.join(BIN, tool)] + list(args), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=ANSIBLE_TIMEOUT, check=False)
    return Run(proc)


def docker_names(kind, lab_name):
    """Names of containers/volumes/networks carrying the lab's label."""
    fmt = {"container": "{{.Names}}", "volume": "{{.Name}}", "network": "{{.Name}}"}[kind]
    cmd = ["docker", kind, "ls", "--filter", "label=org.edgeops.lab=%s" % lab_name, "--format", fmt]
    if kind == "container":
        cmd.insert(3, "--all")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def inventory_hosts(path):
    run = ansible("ansible-inventory", "-i", path, "--list")
    assert run.rc == 0, run.out
    data = json.loads(run.out[run.out.index("{"):])
    return data


@pytest.fixture(scope="session")
def rollout_lab(tmp_path_factory):
    """The rollout lab (rollout_lab.py) that test_rollout.py and then test_rollout_faults.py share, in one pytest run."""
    from rollout_lab import RolloutLab  # (it imports this module)
    lab = RolloutLab(str(tmp_path_factory.mktemp("rollout")), "edgeops-rollout", 43300)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
