#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): installs what is missing (scripts/setup.sh),
# then unit tests, changelog lint, ansible-lint (production profile), ansible-test sanity, the
# molecule scenarios on lab devices, and the integration tests against a real lab.
# Every step runs even when an earlier one failed; the last line counts them.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

passed=0; failed=0; failed_steps=()
record() {  # record <step name> <exit code> <seconds>
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1)); printf -- '-------- %s: PASSED (%ss)\n' "$1" "$3"
  else
    failed=$((failed + 1)); failed_steps+=("$1"); printf -- '-------- %s: FAILED (%ss)\n' "$1" "$3"
  fi
}

step() {
  local name=$1; shift
  printf '\n======== %s ========\n' "$name"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  record "$name" "$rc" $((SECONDS - start))
}

# Two streams of steps at once; each stream runs its steps one after the other, and every step's output is
# printed whole, with its result and time, when both streams are done. The lab steps spend most of their time
# waiting (boots, apt, soaks, timers) and each brings up labs of its own (names, ports), so two streams take
# about as long as the longer one on a 2-CPU machine.
side_by_side() {  # side_by_side "<name>=<function> ..." "<name>=<function> ..."
  local dir; dir=$(mktemp -d)
  local start=$SECONDS stream=0 spec rc secs
  for spec in "$1" "$2"; do
    stream=$((stream + 1))
    (
      local n=0 entry
      for entry in $spec; do
        n=$((n + 1))
        local t=$SECONDS rc=0
        "${entry#*=}" >"$dir/$stream.$n.log" 2>&1 || rc=$?
        echo "$rc $((SECONDS - t))" >"$dir/$stream.$n.result"
      done
    ) &
  done
  printf '\n(two streams side by side: [%s] and [%s]; outputs follow when both are done)\n' "$1" "$2"
  wait
  stream=0
  for spec in "$1" "$2"; do
    stream=$((stream + 1))
    local n=0 entry
    for entry in $spec; do
      n=$((n + 1))
      printf '\n======== %s ========\n' "${entry%%=*}"
      cat "$dir/$stream.$n.log"
      read -r rc secs <"$dir/$stream.$n.result"
      record "${entry%%=*}" "$rc" "$secs"
    done
  done
  printf '(both streams done in %ss)\n' $((SECONDS - start))
  rm -rf "$dir"
}

unit() { PYTHONPATH="$repo/collections" python -m pytest -q -p no:cacheprovider tests/unit; }

sanity() {
  # ansible-test wants the collection under ansible_collections/<namespace>/<name>.
  local tree; tree=$(mktemp -d)
  mkdir -p "$tree/ansible_collections/edgeops/fleet"
  git ls-files -co --exclude-standard | grep -v '^collections/' \
    | tar -cf - -T - | tar -C "$tree/ansible_collections/edgeops/fleet" -xf - 2>/dev/null
  # ansible-test downloads its pip bootstrap from a host we cannot reach: use our stand-in.
  mkdir -p ~/.ansible/test/cache
  cp scripts/ansible_test_get_pip.py ~/.ansible/test/cache/get_pip_24_2.py
  local py; py=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  (cd "$tree/ansible_collections/edgeops/fleet" && ansible-test sanity --venv --python "$py" --color no)
  local rc=$?
  rm -rf "$tree"
  return $rc
}

molecule_all() {
  local rc=0 scenario
  for scenario in molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    local start=$SECONDS
    if molecule test -s "$scenario"; then
      printf -- '-------- molecule %s: PASSED (%ss)\n' "$scenario" $((SECONDS - start))
    else
      rc=1; printf -- '-------- molecule %s: FAILED (%ss)\n' "$scenario" $((SECONDS - start))
    fi
  done
  return $rc
}

# The integration tests in two groups of about the same length, so each lab stream takes ~25-30 min.
integration_pytest() { python -m pytest -v -p no:cacheprovider --durations=0 --durations-min=10 "$@"; }
integration_security() { integration_pytest tests/integration/test_secrets.py tests/integration/test_firewall_lockout.py; }
integration_rollout() { integration_pytest tests/integration/test_rollout.py; }
integration_lab() {
  integration_pytest tests/integration --ignore=tests/integration/test_rollout.py \
    --ignore=tests/integration/test_secrets.py --ignore=tests/integration/test_firewall_lockout.py
}

step "unit tests" unit
step "changelog lint" antsibull-changelog lint
step "ansible-lint (production)" ansible-lint
step "ansible-test sanity" sanity
# The lab steps run in two streams side by side (EDGEOPS_PARALLEL_LABS=0: one after the other). Names have
# no spaces: the stream lists are split on them.
if [ "${EDGEOPS_PARALLEL_LABS:-1}" = 1 ]; then
  side_by_side "molecule=molecule_all integration-security=integration_security" \
               "integration-rollout=integration_rollout integration-lab=integration_lab"
else
  step "molecule" molecule_all
  step "integration-lab" integration_lab
  step "integration-security" integration_security
  step "integration-rollout" integration_rollout
fi

echo
[ "$failed" -eq 0 ] || printf 'failed steps: %s\n' "${failed_steps[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
