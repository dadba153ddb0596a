# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for tests that drive the real lab (Docker Engine, systemd containers, SSH)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

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
    lab = RolloutLab(str(tmp_path_factory.mktemp("rollout")), "edgeops-rollout", 43300, monitoring=True)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session")
def rollout_scale_lab(tmp_path_factory):
    """The ten-device light lab (rollout_lab.py's SCALE_*) that test_rollout_scale.py and then test_awx_jobs.py share,
    in one pytest run (the suite's integration-rollout-scale entry): every device ends test_rollout_scale.py on
    LIGHT_GOOD."""
    from rollout_lab import LIGHT_BAD, LIGHT_GOOD, SCALE_CANARY, SCALE_DEVICES, SCALE_SALT, SCALE_WAVES, RolloutLab
    lab = RolloutLab(str(tmp_path_factory.mktemp("rollout-scale")), "edgeops-rscale", 44000, devices=SCALE_DEVICES,
                     canary=SCALE_CANARY, light=True, salt=SCALE_SALT)
    lab.waves = SCALE_WAVES
    try:
        lab.up()
        lab.publish(LIGHT_GOOD, LIGHT_BAD)
        yield lab
    finally:
        lab.down()


# The execution environment test_awx_jobs.py runs its jobs in (scripts/build_ee.sh: execution-environment.yml on the
# lab's minimal Debian base, pip from a wheelhouse made here, cached by recipe). It starts building in the background
# as soon as pytest knows that module will run, so a cold build (about 100 s on an idle 2-CPU machine, all of it
# docker build) overlaps the tests that come before it in the same run (test_rollout_scale.py); its build steps get a
# quarter of the CPU weight of the lab's containers. EDGEOPS_EE_IMAGE=<image>: use that image, build nothing.
EE_BUILD_TIMEOUT = 1800
_ee_build = {}


def _start_ee_build():
    if _ee_build or os.environ.get("EDGEOPS_EE_IMAGE"):
        return
    work = tempfile.mkdtemp(prefix="edgeops-ee-")
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], EE_WHEELHOUSE="1", EE_NO_PYC="1",
               EE_BUILD_DIR=os.path.join(work, "build"),
               EE_BUILD_OPTS=" ".join(["--cpu-shares=256", os.environ.get("EE_BUILD_OPTS", "")]).strip())
    with open(os.path.join(work, "build.log"), "w") as log, open(os.path.join(work, "image"), "w") as out:
        proc = subprocess.Popen(["bash", os.path.join(REPO, "scripts", "build_ee.sh"), "-", "lab"], cwd=REPO, env=env,
                                stdout=out, stderr=log, stdin=subprocess.DEVNULL)
    _ee_build.update(proc=proc, work=work, started=time.monotonic())


def pytest_collection_finish(session):
    if any(os.path.basename(str(item.fspath)) == "test_awx_jobs.py" for item in session.items):
        _start_ee_build()


def pytest_sessionfinish(session, exitstatus):
    proc = _ee_build.get("proc")
    if proc is not None and proc.poll() is None:  # the run ended before it needed the image
        proc.terminate()
        proc.wait()
    if _ee_build.get("work"):
        shutil.rmtree(_ee_build["work"], ignore_errors=True)


@pytest.fixture(scope="session")
def ee_image():
    """The execution environment's image (its recipe tag), built once per recipe."""
    if os.environ.get("EDGEOPS_EE_IMAGE"):
        return os.environ["EDGEOPS_EE_IMAGE"]
    _start_ee_build()
    waited = time.monotonic()
    rc = _ee_build["proc"].wait(timeout=EE_BUILD_TIMEOUT)
    with open(os.path.join(_ee_build["work"], "build.log")) as handle:
        log = handle.read()
    assert rc == 0, "scripts/build_ee.sh failed:\n" + log[-6000:]
    with open(os.path.join(_ee_build["work"], "image")) as handle:
        image = handle.read().split()[-1]
    said = [line[len("build_ee: "):] for line in log.splitlines() if line.startswith(("build_ee: built ", "build_ee: edgeops"))]
    _ee_build["summary"] = "execution environment %s (%s); the tests waited %.0f s for it" % (
        image, said[-1] if said else "?", time.monotonic() - waited)
    return image


def pytest_terminal_summary(terminalreporter):
    if _ee_build.get("summary"):
        terminalreporter.write_line(_ee_build["summary"])
