#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): installs what is missing (scripts/setup.sh),
# then unit tests, changelog lint, ansible-lint (production profile), ansible-test sanity, the
# molecule scenarios on lab devices, and the integration tests against a real lab.
# Every step runs even when an earlier one failed; the last line counts them.
#
# What each step costs is kept: .suite/last/ (the run before: .suite/previous/) holds every step's full
# output (logs/<step>.log), the pytest steps' junit files (junit/<step>.xml) and the times (timings.tsv,
# measured on a monotonic clock). The run ends with the table of `python benchmarks/suite_cost.py`, which
# prints it again from those files at any time (--compare .suite/previous: both runs side by side).
#
# Environment:
#   EDGEOPS_SUITE_ONLY="unit molecule-bastion"  run only these entries (names as in the lists below)
#   EDGEOPS_PARALLEL_LABS=0                     the lab streams one after the other instead of side by side
#   EDGEOPS_SUITE_DIR=<dir>                     where last/ and previous/ go (default .suite)
#
# shellcheck disable=SC2317  # the entries' functions are called indirectly (run_entry)
# shellcheck disable=SC2034  # the stream lists are read through namerefs (local -n)
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2

# ---------------------------------------------------------------------------------------------------------
# The suite, as data. An entry is "<name>=<function or command> <args...>": the name (no spaces, unique) is
# what EDGEOPS_SUITE_ONLY selects and what the logs and the table are called; the command and its arguments are
# split on whitespace (no quoting; an entry may go on over several lines).

# Steps before the labs, one after the other, their output shown as it comes (suite-lists: the check below;
# lab-images: every device and workload image the labs use, built once before they start side by side).
checks=(
  "suite-lists=check_suite_lists"
  "unit=unit_tests"
  "changelog-lint=antsibull-changelog lint"
  "lab-images=ansible-playbook playbooks/lab/images.yml"
)

# The lab steps in streams: each stream runs its entries one after the other, the streams run side by side
# (each entry brings up labs of its own: names, ports), and every entry's output is printed whole when all
# streams are done. The lab steps spend much of their time waiting (boots, soaks, timers, health checks), so
# the linters go in streams too. To re-balance, move entries between the lists (the table at the end gives
# every entry's time); for another stream, add lab_stream_N and name it in lab_streams. Every molecule scenario
# and tests/integration module must be in exactly one entry (the suite-lists step checks it, first).
# Three streams: with four, a 2-CPU machine ran at load 30-60 and timing checks measured the machine, not the
# code. Balanced on the times of clean-clone runs (python benchmarks/suite_cost.py): each stream opens with one of
# the long labs (site.yml end to end; the rollout lab, which test_rollout.py and test_rollout_faults.py share, in
# that order; power loss), then the shorter entries; the ten-device light rollout and then the AWX jobs on its lab
# (about 800 s in a full run, the EE built beside the rollout) close stream 1, whose molecule bastion, registry and
# secrets moved to the other two for it. molecule vms (about 200 s) closes stream 1; the rollout lab's VM tests (about
# 200 s more in integration-rollout) left stream 2 only integration-lab beside it (1913 s against 1823 and 1753 at
# 3bd0d7a, before ansible-lint and molecule secrets moved to stream 3).
lab_stream_1=(
  "integration-lifecycle=pytest_modules tests/integration/test_lab_lifecycle.py"
  "integration-security=pytest_modules tests/integration/test_secrets.py tests/integration/test_firewall_lockout.py"
  "integration-rollout-scale=pytest_modules tests/integration/test_rollout_scale.py tests/integration/test_awx_jobs.py"
  "molecule-vms=molecule_scenario vms"
)
lab_stream_2=(
  "integration-rollout=pytest_modules tests/integration/test_rollout.py tests/integration/test_rollout_faults.py
    tests/integration/test_monitoring.py tests/integration/test_rollout_vms.py"
  "integration-lab=pytest_modules tests/integration/test_lab_scale_and_input.py tests/integration/test_sample_workloads.py
    tests/integration/test_collection_build.py tests/integration/test_fleet_inventory.py
    tests/integration/test_bad_input_corpus.py"
)
lab_stream_3=(
  "integration-power-loss=pytest_modules tests/integration/test_generations_power_loss.py"
  "molecule-workloads=molecule_scenario workloads"
  "molecule-base_os=molecule_scenario base_os"
  "molecule-docker_engine=molecule_scenario docker_engine"
  "molecule-firewall=molecule_scenario firewall"
  "molecule-generations=molecule_scenario generations"
  "molecule-registry=molecule_scenario registry"
  "molecule-bastion=molecule_scenario bastion"
  "molecule-secrets=molecule_scenario secrets"
  "ansible-lint=ansible-lint"
  "integration-pages=pytest_modules tests/integration/test_report_pages.py"
  "sanity=sanity"
)
lab_streams=(lab_stream_1 lab_stream_2 lab_stream_3)

# ---------------------------------------------------------------------------------------------------------
# What an entry runs.

molecule_scenario() {  # molecule_scenario <scenario>: `molecule test` of one scenario
  molecule test -s "$1"
}

pytest_modules() {  # pytest_modules <test files or directories...>: one pytest process, junit into the run dir
  # junit: xunit1 names each testcase's file; a testcase's time is setup + call + teardown (a module-scoped
  # fixture's lab is counted in the test that set it up or tore it down), so a module's time is its sum.
  python -m pytest -v -p no:cacheprovider --durations=0 --durations-min=10 \
    -o junit_family=xunit1 -o junit_duration_report=total -o junit_logging=no \
    --junitxml="$run_dir/junit/$suite_entry.xml" "$@"
}

unit_tests() { PYTHONPATH="$repo/collections" pytest_modules tests/unit; }

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
  return "$rc"
}

check_suite_lists() {  # every molecule scenario and tests/integration module in exactly one entry
  local rc=0 list entry word spec words owners
  declare -A seen=()
  for list in checks "${lab_streams[@]}"; do
    local -n entries=$list
    for entry in "${entries[@]}"; do
      split_words words "${entry#*=}"
      case ${words[0]} in
        molecule_scenario)
          for word in "${words[@]:1}"; do seen["molecule/$word/molecule.yml"]+=" ${entry%%=*}"; done ;;
        pytest_modules)
          for word in "${words[@]:1}"; do
            if [ -d "$word" ]; then
              while IFS= read -r spec; do seen[$spec]+=" ${entry%%=*}"; done < <(find "${word%/}" -name 'test_*.py')
            else
              seen[$word]+=" ${entry%%=*}"
            fi
          done ;;
      esac
    done
    unset -n entries
  done
  for spec in molecule/*/molecule.yml tests/integration/test_*.py; do
    split_words owners "${seen[$spec]:-}"
    if [ "${#owners[@]}" -ne 1 ]; then
      rc=1
      printf 'scripts/test.sh: %s is in %d entries (want exactly one):%s\n' "$spec" "${#owners[@]}" "${seen[$spec]:-}"
    fi
  done
  for spec in "${!seen[@]}"; do
    [ -e "$spec" ] || { rc=1; printf 'scripts/test.sh: an entry names %s, which does not exist:%s\n' "$spec" "${seen[$spec]}"; }
  done
  [ "$rc" -ne 0 ] || echo "every molecule scenario and tests/integration module is in exactly one entry"
  return "$rc"
}

# ---------------------------------------------------------------------------------------------------------
# Running and timing entries. Times come from /proc/uptime (monotonic, centiseconds): the wall clock of
# these machines can jump (once back by ~50 minutes in the middle of a run), so never $SECONDS or date.

now_cs() {  # now_cs <variable>: sets it to the monotonic time in centiseconds
  local up _rest
  read -r up _rest </proc/uptime
  printf -v "$1" '%d' "$((10#${up%.*} * 100 + 10#${up#*.}))"
}
children_cpu_cs() {  # children_cpu_cs <variable>: CPU time of this shell's ended children (and theirs), centiseconds
  # (fields 16 and 17 of /proc/<pid>/stat, cutime and cstime: an entry's pytest, ansible-playbook, its workers and
  # ssh, molecule, linters; not what runs in the lab containers or in the Docker daemon on its behalf)
  local stat fields
  read -r stat </proc/$BASHPID/stat
  read -ra fields <<<"${stat##*) }"
  printf -v "$1" '%d' "$(((fields[13] + fields[14]) * 100 / clk_tck))"
}
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
fmt_cs() { printf '%d.%02d' "$(($1 / 100))" "$(($1 % 100))"; }
split_words() {  # split_words <array variable> <text>: the words of the text (spaces, tabs, newlines)
  local -n _words=$1
  _words=()
  read -d '' -ra _words <<<"$2" || true
}

passed=0; failed=0; failed_steps=()
record() {  # record <name> <exit code> <centiseconds> <stream (0: none)> <command>
  local secs words; secs=$(fmt_cs "$3")
  split_words words "$5"
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1)); printf -- '-------- %s: PASSED (%ss)\n' "$1" "$secs"
    printf 'step\t%s\t%s\tpassed\t%s\t%s\n' "$1" "$secs" "$4" "${words[*]}" >>"$timings"
  else
    failed=$((failed + 1)); failed_steps+=("$1"); printf -- '-------- %s: FAILED (%ss)\n' "$1" "$secs"
    printf 'step\t%s\t%s\tfailed (exit %s)\t%s\t%s\n' "$1" "$secs" "$2" "$4" "${words[*]}" >>"$timings"
  fi
}

run_entry() {  # run_entry <entry>: its command, with suite_entry set to its name; returns the command's status
  local words
  split_words words "${1#*=}"
  suite_entry=${1%%=*}
  "${words[@]}"
}

# Every entry: a unique name without spaces, then a command. EDGEOPS_SUITE_ONLY: the entries to run (all when
# empty); a name that is no entry is an error, not a run of nothing.
declare -A known=() only=()
for list in checks "${lab_streams[@]}"; do
  declare -n entries=$list
  for entry in "${entries[@]}"; do
    name=${entry%%=*}
    if [ "$name" = "$entry" ] || [ -z "$name" ] || [[ "$name" =~ [[:space:]] ]] || [ -n "${known[$name]:-}" ]; then
      printf 'scripts/test.sh: bad entry in %s (want a unique "<name>=<command> <args>"): %s\n' "$list" "$entry" >&2
      echo "0 passed, 1 failed"; exit 2
    fi
    known[$name]=1
  done
  unset -n entries
done
only_names=(); split_words only_names "${EDGEOPS_SUITE_ONLY:-}"
for name in "${only_names[@]}"; do
  if [ -z "${known[$name]:-}" ]; then
    printf 'EDGEOPS_SUITE_ONLY: no entry is named %s; the entries: %s\n' "$name" \
      "$(printf '%s\n' "${!known[@]}" | sort | tr '\n' ' ')" >&2
    echo "0 passed, 1 failed"; exit 2
  fi
  only[$name]=1
done
suite_start=0; now_cs suite_start
suite_root=${EDGEOPS_SUITE_DIR:-$repo/.suite}
run_dir=$suite_root/last
mkdir -p "$suite_root"
rm -rf "$suite_root/previous"
[ ! -d "$run_dir" ] || mv "$run_dir" "$suite_root/previous"
mkdir -p "$run_dir/logs" "$run_dir/junit"
timings=$run_dir/timings.tsv
printf '# kind\tname\tseconds\tresult\tstream\tcommand\n' >"$timings"
printf 'info\tstarted\t\t%s\t\t%s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" \
  "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$timings"

[ "${#only[@]}" -eq 0 ] || printf 'selection\tEDGEOPS_SUITE_ONLY\t\t%s\t\t\n' "${only_names[*]}" >>"$timings"
selected() { [ "${#only[@]}" -eq 0 ] || [ -n "${only[${1%%=*}]:-}" ]; }

failure_lines() {  # failure_lines <log>: numbered failure lines, without those Ansible then marked "...ignoring"
  # (tests that expect a refusal use ignore_errors: their failures are not why a step failed)
  awk '/^(fatal|failed):|FAILED!|^E  |^ERROR|CRITICAL|Traceback|\[ERROR\]/ { keep[++n] = NR ":" $0; next }
       /^\.\.\.ignoring/ { if (n > 0) delete keep[n--] }
       END { for (i = 1; i <= n; i++) print keep[i] }' "$1"
}

finish() {  # the table, the failed steps and the count; exits 0 when every step passed
  local end compare=()
  now_cs end
  printf 'total\tscripts/test.sh\t%s\t%s passed, %s failed\t\t\n' "$(fmt_cs $((end - suite_start)))" "$passed" \
    "$failed" >>"$timings"
  printf 'info\tfinished\t\t%s\t\t%s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" \
    "load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$timings"
  echo
  # (from the repository, with the paths as suite_cost.py's defaults: the same table as it prints)
  [ ! -f "$suite_root/previous/timings.tsv" ] || compare=(--compare "${suite_root#"$repo"/}/previous")
  python3 benchmarks/suite_cost.py --dir "${run_dir#"$repo"/}" "${compare[@]}" >"$run_dir/table.txt" \
    || echo "(benchmarks/suite_cost.py could not print the table; the times are in $timings)"
  cat "$run_dir/table.txt"
  echo
  # CI shows the head and the tail of this output: each failed step's own reason goes here, at the tail.
  local name
  for name in "${failed_steps[@]}"; do
    [ -f "$run_dir/logs/$name.log" ] || continue
    printf '\n---- why %s failed (its last failures not ignored, and the last lines of %s) ----\n' "$name" \
      "${run_dir#"$repo"/}/logs/$name.log"
    local failures last
    failures=$(failure_lines "$run_dir/logs/$name.log")
    printf '%s\n' "$failures" | tail -n 8 | cut -c1-400
    # (the last of Ansible's or pytest's own lines: molecule's closing ERROR lines only repeat the exit code)
    last=$(printf '%s\n' "$failures" | grep -vE '^[0-9]+:(ERROR|CRITICAL) ' | tail -n 1 | cut -d: -f1)
    [ -z "$last" ] || { printf -- '-- around line %s --\n' "$last"
      sed -n "$((last > 4 ? last - 4 : 1)),$((last + 16))p" "$run_dir/logs/$name.log" | cut -c1-400; }
    echo '...'
    tail -n 12 "$run_dir/logs/$name.log" | cut -c1-400
  done
  [ "$failed" -eq 0 ] || printf '\n%s\nfailed steps: %s\n' "$(grep '^Total: ' "$run_dir/table.txt" 2>/dev/null)" \
    "${failed_steps[*]}"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

step() {  # step <entry> [stream]: one entry on its own, output shown as it comes and kept in the run dir
  local name=${1%%=*} start end rc c0 c1
  printf '\n======== %s ========\n' "$name"
  now_cs start; children_cpu_cs c0
  run_entry "$1" 2>&1 | tee "$run_dir/logs/$name.log"
  rc=${PIPESTATUS[0]}
  now_cs end; children_cpu_cs c1
  printf 'cpu\t%s\t%s\tcontroller CPU-seconds\t%s\t\n' "$name" "$(fmt_cs $((c1 - c0)))" "${2:-0}" >>"$timings"
  record "$name" "$rc" $((end - start)) "${2:-0}" "${1#*=}"
}

# The streams (arguments: names of arrays of entries) at once; each runs its selected entries one after the
# other. A line per entry is printed when it ends; every entry's output, result and time are printed whole,
# stream by stream, when all streams are done. EDGEOPS_PARALLEL_LABS=0: one stream after the other instead.
run_streams() {  # run_streams <array name>...
  local status start end k=0 list entry n rc cs any=0 names
  for list in "$@"; do  # nothing selected (EDGEOPS_SUITE_ONLY): nothing to say
    local -n entries=$list
    for entry in "${entries[@]}"; do selected "$entry" && any=1; done
    unset -n entries
  done
  [ "$any" -eq 1 ] || return 0
  status=$(mktemp -d)
  now_cs start
  if [ "${EDGEOPS_PARALLEL_LABS:-1}" = 1 ]; then
    printf '\n(%d streams side by side; every output follows when all are done)\n' "$#"
  fi
  for list in "$@"; do
    k=$((k + 1))
    local -n entries=$list
    names=()
    for entry in "${entries[@]}"; do selected "$entry" && names+=("${entry%%=*}"); done
    if [ "${EDGEOPS_PARALLEL_LABS:-1}" != 1 ]; then  # one after the other, output as it comes
      local t0 t1
      now_cs t0
      for entry in "${entries[@]}"; do selected "$entry" && step "$entry" "$k"; done
      now_cs t1
      [ "${#names[@]}" -eq 0 ] || printf 'stream\tstream %d\t%s\t%d entries, one stream after the other\t%d\t%s\n' \
        "$k" "$(fmt_cs $((t1 - t0)))" "${#names[@]}" "$k" "${names[*]}" >>"$timings"
      unset -n entries
      continue
    fi
    printf '  stream %d: %s\n' "$k" "${names[*]:-(nothing selected)}"
    (
      n=0
      for entry in "${entries[@]}"; do
        selected "$entry" || continue
        local t0 t1
        n=$((n + 1)); rc=0
        local c0 c1
        now_cs t0; children_cpu_cs c0
        run_entry "$entry" >"$run_dir/logs/${entry%%=*}.log" 2>&1 </dev/null || rc=$?
        now_cs t1; children_cpu_cs c1
        printf 'cpu\t%s\t%s\tcontroller CPU-seconds\t%d\t\n' "${entry%%=*}" "$(fmt_cs $((c1 - c0)))" "$k" >>"$timings"
        echo "$rc $((t1 - t0))" >"$status/$k.$n"
        printf '  (stream %d) %s: %s (%ss)\n' "$k" "${entry%%=*}" "$([ "$rc" -eq 0 ] && echo PASSED || echo FAILED)" \
          "$(fmt_cs $((t1 - t0)))"
      done
      now_cs t1
      echo "$((t1 - start))" >"$status/$k.total"
    ) &
    unset -n entries
  done
  wait
  now_cs end
  if [ "${EDGEOPS_PARALLEL_LABS:-1}" = 1 ]; then
    k=0
    for list in "$@"; do
      k=$((k + 1))
      local -n entries=$list
      n=0; names=()
      for entry in "${entries[@]}"; do
        selected "$entry" || continue
        n=$((n + 1)); names+=("${entry%%=*}")
        printf '\n======== %s ========\n' "${entry%%=*}"
        cat "$run_dir/logs/${entry%%=*}.log"
        if read -r rc cs 2>/dev/null <"$status/$k.$n"; then
          record "${entry%%=*}" "$rc" "$cs" "$k" "${entry#*=}"
        else
          record "${entry%%=*}" 1 0 "$k" "${entry#*=}"  # its stream ended before it did
        fi
      done
      unset -n entries
      read -r cs 2>/dev/null <"$status/$k.total" || cs=$((end - start))
      [ "${#names[@]}" -eq 0 ] || printf 'stream\tstream %d\t%s\t%d entries\t%d\t%s\n' "$k" "$(fmt_cs "$cs")" \
        "${#names[@]}" "$k" "${names[*]}" >>"$timings"
    done
    printf 'parallel\t%d streams side by side\t%s\t\t\t\n' "$#" "$(fmt_cs $((end - start)))" >>"$timings"
    printf '\n(all streams done in %ss)\n' "$(fmt_cs $((end - start)))"
  fi
  rm -rf "$status"
}

# ---------------------------------------------------------------------------------------------------------
printf '\n======== setup ========\n'
now_cs t0
bash scripts/setup.sh 2>&1 | tee "$run_dir/logs/setup.log"
rc=${PIPESTATUS[0]}
now_cs t1
record setup "$rc" $((t1 - t0)) 0 "bash scripts/setup.sh"
[ "$rc" -eq 0 ] || { echo "setup failed"; finish; }
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
# Screenshots and pages the tests looked at (tests/support/look_at_page.py), kept with the run.
export EDGEOPS_ARTIFACTS_DIR="$run_dir/artifacts"

for entry in "${checks[@]}"; do selected "$entry" && step "$entry"; done
run_streams "${lab_streams[@]}"
finish
