# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a unit test needs from the machine, in one place: nothing is skipped silently in CI.

A test that runs a program of the controller says so::

    @pytest.mark.requires_tools("nft", "unshare")   # on PATH (scripts/setup.sh installs them)
    @pytest.mark.requires_netns                     # `unshare --net nft list ruleset` works (root)

or calls ``require_tool(name)`` / ``require_netns()`` in its body. When one is missing the test is skipped,
its reason naming the program and its Debian package; with ``CI=true`` in the environment (CI sets it) the
test fails instead, with the same reason: in CI a missing tool is an error of the machine's setup.

Test data more than one module uses: ``from conftest import sample_fleet`` (pytest puts this directory on the path).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

import pytest

# The programs unit tests run, and the Debian package of each (scripts/setup.sh installs them).
TOOL_PACKAGES = {"nft": "nftables", "unshare": "util-linux", "promtool": "prometheus", "prometheus": "prometheus"}
_NETNS = {}


def in_ci():
    """Whether this is a CI run (CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason):
    """Skip the current test for ``reason``; fail it instead when CI=true."""
    if in_ci():
        pytest.fail("CI=true, so this test may not be skipped: %s" % reason, pytrace=False)
    pytest.skip(reason)


def require_tool(name):
    """The path of program ``name``; the test is skipped (failed with CI=true) when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        unavailable("needs the program %s, not found on PATH (Debian package %s; scripts/setup.sh installs it)"
                    % (name, TOOL_PACKAGES.get(name, "unknown")))
    return path


def require_netns():
    """A throwaway network namespace with nft in it (``unshare --net``: root or CAP_SYS_ADMIN)."""
    require_tool("unshare")
    require_tool("nft")
    if "error" not in _NETNS:
        try:
            proc = subprocess.run(["unshare", "--net", "nft", "list", "ruleset"], capture_output=True, text=True,
                                  timeout=20, check=False)
            _NETNS["error"] = "" if proc.returncode == 0 else "exit %d: %s" % (proc.returncode, proc.stderr.strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            _NETNS["error"] = str(exc)
    if _NETNS["error"]:
        unavailable("needs a network namespace (root): `unshare --net nft list ruleset` failed: %s" % _NETNS["error"])


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_tools(*names): programs the test runs (missing: skipped, "
                                       "or failed when CI=true)")
    config.addinivalue_line("markers", "requires_netns: the test runs nft in a network namespace of its own "
                                       "(unshare --net; unavailable: skipped, or failed when CI=true)")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("requires_tools"):
        for name in marker.args:
            require_tool(name)
    if item.get_closest_marker("requires_netns") is not None:
        require_netns()


def sample_fleet(devices_per_site=50, sites=4, **rollout):
    """A fleet file (the data) of ``sites`` sites with ``devices_per_site`` devices each and the given rollout policy
    (default: waves 1, 10%, 50%, 100%); the tests of the fleet helpers and of the inventory plugin import it."""
    data = {
        "profiles": {"nuc-gpu": {"gpus": 1}},
        "sites": dict(("site%02d" % s, {"bastion": {"host": "10.%d.0.1" % s}, "registry": "site%02d-hub:5000" % s})
                      for s in range(1, sites + 1)),
        "devices": {},
        "rollout": rollout or {"waves": [1, "10%", "50%", "100%"]},
    }
    for s in range(1, sites + 1):
        for d in range(1, devices_per_site + 1):
            data["devices"]["site%02d-dev%02d" % (s, d)] = {
                "site": "site%02d" % s, "address": "10.%d.0.%d" % (s, d + 10), "profile": "nuc-gpu", "tags": ["line-a"]}
    return data
