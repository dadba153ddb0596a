# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _lab


def test_default_plan_has_one_hub_and_three_devices_with_stable_ports():
    plan = _lab.lab_plan("edgeops-lab")
    assert [(h["name"], h["kind"], h["ssh_port"]) for h in plan["hosts"]] == [
        ("site01-hub", "hub", 42200),
        ("site01-dev01", "device", 42201),
        ("site01-dev02", "device", 42202),
        ("site01-dev03", "device", 42203),
    ]
    dev = plan["hosts"][1]
    assert dev["container"] == "edgeops-lab-site01-dev01"
    assert dev["volume"] == "edgeops-lab-site01-dev01-docker"
    assert dev["network"] == "edgeops-lab-site01"
    assert plan["sites"] == [{"name": "site01", "network": "edgeops-lab-site01",
                              "hosts": ["site01-hub", "site01-dev01", "site01-dev02", "site01-dev03"]}]


def test_resizing_a_site_keeps_other_ports():
    small = {h["name"]: h["ssh_port"] for h in _lab.lab_plan("lab", sites=2, devices_per_site=2)["hosts"]}
    big = {h["name"]: h["ssh_port"] for h in _lab.lab_plan("lab", sites=2, devices_per_site=20)["hosts"]}
    for name, port in small.items():
        assert big[name] == port
    assert big["site02-hub"] == 42300
    assert big["site02-dev20"] == 42320


def test_fifty_devices_fit_and_names_are_unique():
    plan = _lab.lab_plan("lab", sites=1, devices_per_site=50)
    names = [h["container"] for h in plan["hosts"]]
    ports = [h["ssh_port"] for h in plan["hosts"]]
    assert len(names) == 51 and len(set(names)) == 51 and len(set(ports)) == 51


def test_hub_services_are_published_above_the_device_slots():
    plan = _lab.lab_plan("lab", sites=2, devices_per_site=89)
    hub2 = [h for h in plan["hosts"] if h["name"] == "site02-hub"][0]
    assert hub2["service_ports"] == {"alertmanager": 42391, "registry": 42390, "prometheus": 42392}
    assert hub2["published"] == ["127.0.0.1:42300:22", "127.0.0.1:42391:9093", "127.0.0.1:42392:9090", "127.0.0.1:42390:5000"]
    ports = [h["ssh_port"] for h in plan["hosts"]] + [
        p for h in plan["hosts"] for p in h["service_ports"].values()]
    assert len(ports) == len(set(ports))
    assert all(h["service_ports"] == {} for h in plan["hosts"] if h["kind"] == "device")


def test_hubs_can_be_left_out():
    plan = _lab.lab_plan("m", devices_per_site=1, hubs=False)
    assert [h["name"] for h in plan["hosts"]] == ["site01-dev01"]


def test_devices_can_be_left_unpublished_keeping_the_hubs_and_every_other_port():
    published = _lab.lab_plan("lab", sites=2, devices_per_site=2)
    hidden = _lab.lab_plan("lab", sites=2, devices_per_site=2, publish_device_ssh=False)
    for before, after in zip(published["hosts"], hidden["hosts"]):
        if after["kind"] == "hub":
            assert after == before
        else:
            assert after["ssh_port"] is None and after["published"] == []
            assert dict(after, ssh_port=before["ssh_port"], published=before["published"]) == before
    assert hidden["sites"] == published["sites"]
    # Nothing of a device is bound on the controller: the hubs' SSH and service ports are all there is.
    bound = [spec for h in hidden["hosts"] for spec in h["published"]]
    assert bound == [spec for h in published["hosts"] if h["kind"] == "hub" for spec in h["published"]]


def test_the_default_still_publishes_every_device():
    assert _lab.lab_plan("lab") == _lab.lab_plan("lab", publish_device_ssh=True)
    assert all(h["published"][0] == "127.0.0.1:%d:22" % h["ssh_port"] for h in _lab.lab_plan("lab")["hosts"])


def test_string_numbers_from_extra_vars_are_accepted():
    assert len(_lab.lab_plan("lab", sites="2", devices_per_site="4")["hosts"]) == 10


@pytest.mark.parametrize("kwargs, key", [
    (dict(lab_name="Bad_Name"), "lab_name"),
    (dict(lab_name="-x"), "lab_name"),
    (dict(lab_name="lab", sites=0), "lab_sites"),
    (dict(lab_name="lab", sites=True), "lab_sites"),
    (dict(lab_name="lab", devices_per_site=90), "lab_devices_per_site"),
    (dict(lab_name="lab", devices_per_site="many"), "lab_devices_per_site"),
    (dict(lab_name="lab", ssh_port_base=80), "lab_ssh_port_base"),
    (dict(lab_name="lab", sites=3, ssh_port_base=65400), "lab_ssh_port_base"),
    (dict(lab_name="lab", publish_device_ssh="no"), "lab_publish_device_ssh"),
    (dict(lab_name="lab", publish_device_ssh=False, hubs=False), "lab_publish_device_ssh"),
])
def test_bad_settings_are_refused_naming_the_setting(kwargs, key):
    with pytest.raises(_lab.LabPlanError) as err:
        _lab.lab_plan(**kwargs)
    assert key in str(err.value)


def test_recipe_digest_changes_with_every_input_and_only_then():
    base = _lab.recipe_digest("trixie", "http://m", ["less"])
    assert base == _lab.recipe_digest("trixie", "http://m", ["less", "less"])
    assert base != _lab.recipe_digest("bookworm", "http://m", ["less"])
    assert base != _lab.recipe_digest("trixie", "http://other", ["less"])
    assert base != _lab.recipe_digest("trixie", "http://m", ["less", "jq"])
    assert base != _lab.recipe_digest("trixie", "http://m", ["less"], script="true")
    assert _lab.image_tag("r/x", "trixie", base) == "r/x:trixie-" + base


def test_include_list_keeps_base_packages_first_without_duplicates():
    assert _lab.include_list(["python3", "jq"]).split(",") == list(_lab.BASE_PACKAGES) + ["jq"]


def test_device_variant_keeps_the_digests_it_had_before_variants():
    # Digest of the device recipe as computed before the `variant` option existed: existing lab
    # images (tagged with it) must not be rebuilt because of the new option.
    assert _lab.recipe_digest("trixie", "http://deb.debian.org/debian", []) == "91ffdf32f902"
    assert _lab.recipe_digest("trixie", "http://m", ["less"]) == _lab.recipe_digest(
        "trixie", "http://m", ["less"], variant="device")


def test_minimal_variant_has_its_own_digest_packages_script_and_changes():
    device = _lab.recipe_digest("trixie", "http://m", [])
    minimal = _lab.recipe_digest("trixie", "http://m", [], variant="minimal")
    assert minimal != device
    assert minimal == _lab.recipe_digest("trixie", "http://m", ["python3"], variant="minimal")
    assert minimal != _lab.recipe_digest("bookworm", "http://m", [], variant="minimal")
    assert _lab.include_list([], "minimal") == "python3,ca-certificates"
    assert _lab.include_list(["jq", "python3"], "minimal") == "python3,ca-certificates,jq"
    script = _lab.customize_script("minimal")
    for removed in ("/usr/share/doc", "/usr/share/man", "/var/lib/apt/lists/*", "/var/cache/apt/*"):
        assert removed in script
    assert "systemd" not in _lab.include_list([], "minimal")
    assert _lab.import_changes("minimal", minimal)[-1] == "LABEL org.edgeops.lab.recipe=" + minimal
    assert 'CMD ["/lib/systemd/systemd"]' in _lab.import_changes("device", device)


def test_a_changed_variant_definition_changes_the_minimal_digest(monkeypatch):
    before = _lab.recipe_digest("trixie", "http://m", [], variant="minimal")
    changed = dict(_lab.VARIANTS["minimal"], changes=('CMD ["/bin/sh"]',))
    monkeypatch.setitem(_lab.VARIANTS, "minimal", changed)
    assert _lab.recipe_digest("trixie", "http://m", [], variant="minimal") != before


def test_unknown_variant_is_refused_naming_the_option():
    with pytest.raises(_lab.LabPlanError) as err:
        _lab.recipe_digest("trixie", "http://m", [], variant="tiny")
    assert "variant" in str(err.value) and "minimal" in str(err.value)


def test_only_images_of_the_same_variant_and_packages_are_one_family():
    # A build prunes the older images of its own family only: another package set is another image, not a stale one.
    plain = _lab.recipe_family("device", [])
    assert plain == _lab.recipe_family("device", ["systemd"])  # a package the variant has anyway
    assert plain != _lab.recipe_family("device", ["docker.io"])
    assert _lab.recipe_family("device", ["jq", "less"]) == _lab.recipe_family("device", ["less", "jq", "jq"])
    assert _lab.recipe_family("device", []) != _lab.recipe_family("minimal", [])
    # suite, mirror and script changes make a new recipe of the same family (the old image is stale)
    assert _lab.recipe_digest("trixie", "http://m", []) != _lab.recipe_digest("bookworm", "http://m", [])
    changes = _lab.import_changes("device", "abc", plain)
    assert changes[-2:] == ["LABEL org.edgeops.lab.family=" + plain, "LABEL org.edgeops.lab.recipe=abc"]


# ---- the image recipe, checked before a build (or a check run) --------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("packages", ["docker.io nftables"], r"^packages\[0\] must be a Debian package name \(one per element\)"),
    ("packages", ["curl,wget"], r"^packages\[0\] must be a Debian package name"),
    ("debootstrap_timeout", 0, r"^debootstrap_timeout must be an integer between 1 and 86400, got 0$"),
    ("suite", "Trixie ", r"^suite must be a Debian suite such as trixie"),
    ("mirror", "deb.debian.org/debian", r"^mirror must be an http\(s\):// or file:// URL"),
    ("repository", "edgeops/Lab-Device:latest", r"^repository must be a Docker repository"),
])
def test_a_recipe_that_would_fail_late_is_refused_naming_the_option(key, value, message):
    recipe = dict(repository="edgeops/lab-device", suite="trixie", mirror="http://deb.debian.org/debian",
                  packages=["docker.io", "python3-passlib", "libstdc++6"], debootstrap_timeout=1200)
    _lab.check_recipe(**recipe)
    recipe[key] = value
    with pytest.raises(_lab.LabPlanError, match=message):
        _lab.check_recipe(**recipe)


def test_check_mode_of_a_build_checks_what_the_build_needs(tmp_path, monkeypatch, capsys):
    import json

    from ansible.module_utils.basic import AnsibleModule
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.edgeops.fleet.plugins.modules import lab_image

    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kwargs: (1, "", "No such image"))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: "/bin/" + name)
    args = {"build_dir": str(tmp_path / "missing"), "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit):
        lab_image.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["msg"] == "build_dir %s is not a directory" % (tmp_path / "missing")


def test_lab_hubs_that_is_no_boolean_is_refused_not_read_as_true():
    # -e lab_hubs=false arrives as the string "false", which Python reads as true (lab_publish_device_ssh was checked).
    with pytest.raises(_lab.LabPlanError, match=r"^lab_hubs must be true or false, got 'false'$"):
        _lab.lab_plan("lab", hubs="false")
