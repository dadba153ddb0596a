# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.edgeops.fleet.plugins.plugin_utils._workloads import (
    WorkloadError, published_images, render_release, secret_owners, size_bytes)

DIGEST = "sha256:" + "ab" * 32
MANIFEST = {
    "release": "demo-1.0.0",
    "volumes": ["models"],
    "workloads": {
        "predictor": {
            "image": "edgeops/predictor", "source": "edgeops/predictor:1.0.0", "digest": DIGEST,
            "cpus": 1.0, "memory": "256m", "memory_reservation": "128m", "pids": 128,
            "healthcheck": {"test": ["CMD", "/usr/local/bin/healthcheck"]},
            "ports": ["127.0.0.1:8080:8080"], "volumes": [{"name": "models", "target": "/models", "read_only": True}],
            "probes": [{"name": "predict", "type": "http", "url": "http://127.0.0.1:8080/predict?features=1,2", "status": 200}],
        },
        "device-manager": {
            "image": "edgeops/device-manager", "digest": DIGEST, "cpus": 0.25, "memory": "64m", "pids": 64,
            "secrets": ["dashboard_token"], "env": {"PREDICTOR_URL": "http://predictor:8080", "DEBUG": False},
            "depends_on": ["predictor"], "gpus": 0,
        },
    },
}


def render(manifest=None, **kwargs):
    return render_release(copy.deepcopy(manifest or MANIFEST), registry=kwargs.pop("registry", "site01-hub:5000"), **kwargs)


def test_least_privilege_and_limits_are_rendered_for_every_workload():
    release, secrets, images = render()
    services = release["compose"]["services"]
    predictor = services["predictor"]
    assert predictor["image"] == "site01-hub:5000/edgeops/predictor@" + DIGEST
    assert (predictor["cpus"], predictor["mem_limit"], predictor["memswap_limit"], predictor["pids_limit"]) == \
        (1.0, "256m", "256m", 128)
    assert predictor["mem_reservation"] == "128m"
    for service in services.values():
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert service["security_opt"] == ["no-new-privileges:true"]
        assert service["user"] == "10001:10001"
        assert service["tmpfs"] == ["/tmp:size=64m"]
        assert service["labels"]["org.edgeops.release"] == "demo-1.0.0"
    # Published ports need a network with a gateway; the others stay on the internal one only.
    assert predictor["networks"] == ["internal", "edge"]
    assert services["device-manager"]["networks"] == ["internal"]
    assert release["compose"]["networks"] == {"internal": {"internal": True}, "edge": {}}
    assert release["compose"]["secrets"] == {"dashboard_token": {"file": "/run/edgeops/secrets/dashboard_token"}}
    assert services["device-manager"]["environment"] == {"PREDICTOR_URL": "http://predictor:8080", "DEBUG": "false"}
    assert predictor["volumes"] == ["models:/models:ro"]
    assert secrets == ["dashboard_token"]
    assert sorted(images.values()) == sorted(s["image"] for s in services.values())
    assert release["health_checks"] == [
        {"name": "predictor-container", "type": "container", "service": "predictor"},
        {"name": "predictor-predict", "type": "http", "url": "http://127.0.0.1:8080/predict?features=1,2", "status": 200},
    ]


def test_gpus_become_a_device_request():
    manifest = copy.deepcopy(MANIFEST)
    manifest["workloads"]["predictor"]["gpus"] = 1
    service = render(manifest)[0]["compose"]["services"]["predictor"]
    assert service["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_rendering_is_deterministic():
    assert render() == render()


@pytest.mark.parametrize("path, value, key", [
    (("predictor", "digest"), None, "workloads.predictor.digest: is required"),
    (("predictor", "memory"), None, "workloads.predictor.memory: is required"),
    (("predictor", "cpus"), None, "workloads.predictor.cpus: is required"),
    (("predictor", "pids"), None, "workloads.predictor.pids: is required"),
    (("predictor", "digest"), "latest", "workloads.predictor.digest: must be sha256"),
    (("predictor", "image"), "edgeops/predictor:1.0.0", "workloads.predictor.image"),
    (("predictor", "memory"), 268435456, "workloads.predictor.memory: must be a size"),
    (("predictor", "memory_reservation"), "512m", "workloads.predictor.memory_reservation: must not exceed"),
    (("predictor", "user"), "0", "workloads.predictor.user"),
    (("predictor", "user"), "root", "workloads.predictor.user"),
    (("predictor", "cap_add"), ["SYS_ADMIN"], "workloads.predictor.cap_add[0]"),
    (("predictor", "cap_add"), ["SYS_PTRACE"], "workloads.predictor.cap_add[0]"),
    (("predictor", "user"), "10001:0", "workloads.predictor.user"),
    (("predictor", "ports"), ["80"], "workloads.predictor.ports[0]"),
    (("predictor", "networks"), ["host"], "workloads.predictor.networks[0]"),
    (("predictor", "priviledged"), True, "workloads.predictor: unknown key(s) priviledged"),
    (("predictor", "volumes"), [{"name": "data", "target": "/data"}], "workloads.predictor.volumes[0].name"),
    (("device-manager", "env"), {"API_TOKEN": "x"}, "workloads.device-manager.env.API_TOKEN: looks like a secret"),
    (("device-manager", "depends_on"), ["trainer"], "workloads.device-manager.depends_on[0]"),
    (("device-manager", "gpus"), -1, "workloads.device-manager.gpus"),
    (("predictor", "healthcheck"), {"test": "curl"}, "workloads.predictor.healthcheck.test"),
    (("predictor", "healthcheck"), {"test": ["CMD", "true"], "start_interval": 1},
     "workloads.predictor.healthcheck.start_interval"),
])
def test_bad_declarations_are_refused_naming_file_and_key(path, value, key):
    manifest = copy.deepcopy(MANIFEST)
    if value is None:
        del manifest["workloads"][path[0]][path[1]]
    else:
        manifest["workloads"][path[0]][path[1]] = value
    with pytest.raises(WorkloadError) as err:
        render_release(manifest, registry="site01-hub:5000", source="releases/demo.yml")
    assert str(err.value).startswith("releases/demo.yml: " + key), str(err.value)


@pytest.mark.parametrize("manifest, key", [
    ({"release": "r1", "workloads": {}}, "workloads"),
    ({"release": "bad id!", "workloads": MANIFEST["workloads"]}, "release"),
    ({"release": "r1", "workloads": MANIFEST["workloads"], "extra": 1}, "extra"),
    (dict(MANIFEST, registry="https://hub"), "registry"),
    (dict(MANIFEST, nftables=["drop"]), "nftables"),
    (dict(MANIFEST, nftables="  "), "nftables"),
])
def test_bad_manifests_are_refused(manifest, key):
    with pytest.raises(WorkloadError) as err:
        render_release(copy.deepcopy(manifest), registry=None if key == "registry" else "hub:5000", source="m.yml")
    assert str(err.value).startswith("m.yml: %s:" % key)


# The device's probe schema runs on the controller: a probe the device would refuse at stage time is refused here,
# naming the manifest, the workload and the probe (not the index it gets on the device after the container check).
@pytest.mark.parametrize("probe, expected", [
    ({"name": "p", "type": "ping", "host": "x"}, "workloads.predictor.probes[0] (p).type must be one of"),
    ({"name": "p", "type": "http", "url": "http://127.0.0.1/", "retries": -1}, "workloads.predictor.probes[0] (p).retries"),
    ({"name": "p", "type": "tcp", "port": 70000}, "workloads.predictor.probes[0] (p).port"),
    ({"name": "p", "type": "tcp"}, "workloads.predictor.probes[0] (p).port is required"),
    ({"name": "p", "type": "http", "url": "http://127.0.0.1/", "verify": "yes"}, "workloads.predictor.probes[0] (p): unknown key"),
    ({"name": "p", "type": "http", "url": "http://127.0.0.1/", "timeout": "fast"}, "workloads.predictor.probes[0] (p).timeout"),
])
def test_a_probe_the_device_would_refuse_is_refused_on_the_controller(probe, expected):
    manifest = copy.deepcopy(MANIFEST)
    manifest["workloads"]["predictor"]["probes"] = [probe]
    with pytest.raises(WorkloadError) as err:
        render_release(manifest, registry="site01-hub:5000", source="releases/demo.yml")
    assert str(err.value).startswith("releases/demo.yml: " + expected), str(err.value)


def test_two_probes_of_one_workload_with_one_name_are_refused():
    manifest = copy.deepcopy(MANIFEST)
    probe = {"name": "p", "type": "tcp", "port": 8080}
    manifest["workloads"]["predictor"]["probes"] = [probe, dict(probe)]
    with pytest.raises(WorkloadError) as err:
        render_release(manifest, registry="site01-hub:5000", source="releases/demo.yml")
    assert str(err.value).startswith("releases/demo.yml: (generation): release.health_checks"), str(err.value)
    assert "predictor-p" in str(err.value)


def test_a_release_ruleset_for_another_table_is_refused_on_the_controller():
    with pytest.raises(WorkloadError) as err:
        render(dict(MANIFEST, nftables="table ip filter {\n}\n"), source="releases/demo.yml")
    assert str(err.value).startswith("releases/demo.yml: (generation): release.nftables"), str(err.value)


def test_the_release_ruleset_goes_into_the_generation():
    table = "table inet edgeops {\n  chain input { type filter hook input priority 0; }\n}\n"
    release, _secrets, _images = render(dict(MANIFEST, nftables=table))
    assert release["nftables"] == table
    assert "nftables" not in render()[0]


def test_a_site_registry_is_required():
    with pytest.raises(WorkloadError) as err:
        render_release(copy.deepcopy(MANIFEST), registry=None, source="m.yml")
    assert "m.yml: registry: no site registry" in str(err.value)


def test_a_secret_has_one_owner():
    manifest = copy.deepcopy(MANIFEST)
    assert secret_owners(manifest) == {"dashboard_token": 10001}
    manifest["workloads"]["predictor"]["secrets"] = ["dashboard_token"]
    manifest["workloads"]["predictor"]["user"] = "10002"
    with pytest.raises(WorkloadError):
        secret_owners(manifest)


def test_sizes():
    assert size_bytes("64m", "x") == 64 * 1024 * 1024
    assert size_bytes("1g", "x") == 1024 ** 3
    for bad in ("64", "0m", "1.5g", 64):
        with pytest.raises(WorkloadError):
            size_bytes(bad, "x")


def test_a_healthcheck_checks_often_while_starting_and_seldom_after():
    manifest = copy.deepcopy(MANIFEST)
    manifest["workloads"]["predictor"]["healthcheck"] = {
        "test": ["CMD", "/usr/local/bin/healthcheck"], "interval": "30s", "start_period": "30s", "start_interval": "1s"}
    healthcheck = render(manifest)[0]["compose"]["services"]["predictor"]["healthcheck"]
    assert healthcheck == {"test": ["CMD", "/usr/local/bin/healthcheck"], "interval": "30s", "timeout": "10s",
                           "retries": 3, "start_period": "30s", "start_interval": "1s"}
    # Not given, not rendered: the compose file (and so the generation) of an existing manifest stays the same.
    assert "start_interval" not in render()[0]["compose"]["services"]["predictor"]["healthcheck"]


def test_published_images_are_listed_once_per_registry_with_the_first_device_that_pulls_them():
    release, _secrets, images = render()
    other = render(registry="site02-hub:5000")[2]
    listed = published_images([{"device": "s1-dev01", "images": images}, {"device": "s1-dev02", "images": images},
                               {"device": "s2-dev01", "images": other}])
    assert [(i["registry"], i["repository"], i["workload"], i["device"]) for i in listed] == [
        ("site01-hub:5000", "edgeops/device-manager", "device-manager", "s1-dev01"),
        ("site01-hub:5000", "edgeops/predictor", "predictor", "s1-dev01"),
        ("site02-hub:5000", "edgeops/device-manager", "device-manager", "s2-dev01"),
        ("site02-hub:5000", "edgeops/predictor", "predictor", "s2-dev01")]
    assert {i["digest"] for i in listed} == {DIGEST}


def test_published_images_of_one_manifest_in_each_site_registry():
    sites = [{"device": "s1-dev01", "registry": "site01-hub:5000"}, {"device": "s2-dev01", "registry": ""}]
    listed = published_images(sites, dict(MANIFEST, registry="central:5000"))
    assert [(i["registry"], i["repository"]) for i in listed] == [
        ("central:5000", "edgeops/device-manager"), ("central:5000", "edgeops/predictor"),
        ("site01-hub:5000", "edgeops/device-manager"), ("site01-hub:5000", "edgeops/predictor")]
    with pytest.raises(WorkloadError, match="not registry/repository@digest"):
        published_images([{"device": "d", "images": {"predictor": "predictor:latest"}}])
