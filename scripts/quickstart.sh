#!/usr/bin/env bash
# The main job on the embedded default: install everything, bring the lab up (3 devices and a
# hub), and converge it with site.yml. Safe to run again: nothing changes the second time.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh
export PATH="$repo/.venv/bin:$PATH"
ansible-playbook playbooks/lab/up.yml "$@"
ansible-playbook site.yml
ansible-playbook playbooks/lab/status.yml
