# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.edgeops.fleet.plugins.plugin_utils._docker_engine import DockerEngineConfigError, daemon_config


def test_defaults_rotate_logs_and_keep_containers_across_restarts():
    config = daemon_config()
    assert config == {
        "data-root": "/var/lib/docker",
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3", "compress": "true"},
    }


def test_ulimits_mirrors_nvidia_and_extra_options():
    config = daemon_config(default_ulimits={"nofile": {"soft": 1024, "hard": 4096}, "core": {"soft": 0, "hard": 0}},
                           registry_mirrors=["https://site01-hub:5000"], nvidia=True, log_driver="local",
                           extra={"features": {"buildkit": False}})
    assert config["default-ulimits"] == {"core": {"Name": "core", "Soft": 0, "Hard": 0},
                                         "nofile": {"Name": "nofile", "Soft": 1024, "Hard": 4096}}
    assert config["registry-mirrors"] == ["https://site01-hub:5000"]
    assert config["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert "compress" not in config["log-opts"]  # the local driver compresses by itself
    assert config["features"] == {"buildkit": False}


def test_no_runtime_entry_without_gpu():
    assert "runtimes" not in daemon_config(nvidia=False)


@pytest.mark.parametrize("kwargs, key", [
    (dict(data_root="var/lib/docker"), "docker_engine_data_root"),
    (dict(log_driver="syslog"), "docker_engine_log_driver"),
    (dict(log_max_size="10 MB"), "docker_engine_log_max_size"),
    (dict(log_max_file=0), "docker_engine_log_max_file"),
    (dict(log_max_file="three"), "docker_engine_log_max_file"),
    (dict(default_ulimits={"nofile": {"soft": 10}}), "docker_engine_default_ulimits.nofile"),
    (dict(default_ulimits={"nofile": {"soft": 10, "hard": 5}}), "docker_engine_default_ulimits.nofile"),
    (dict(registry_mirrors=["site01-hub:5000"]), "docker_engine_registry_mirrors[0]"),
    (dict(extra={"live-restore": False}), "docker_engine_daemon_options.live-restore"),
    # -e docker_engine_live_restore=false arrives as a string, which bool() read as true.
    (dict(live_restore="false"), "docker_engine_live_restore"),
    (dict(nvidia="no"), "docker_engine_nvidia"),
])
def test_bad_values_are_refused_naming_the_variable(kwargs, key):
    with pytest.raises(DockerEngineConfigError) as err:
        daemon_config(**kwargs)
    assert str(err.value).startswith(key + ":")
