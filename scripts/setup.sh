#!/usr/bin/env bash
# Install everything edgeops.fleet needs on a Debian machine (run as root), idempotently:
#   - Debian packages: Docker Engine (docker.io), debootstrap, ssh client, python3-venv, and the programs
#     the tests run on this machine (nft from nftables and unshare from util-linux for the unit tests that
#     load tables into the real nft in a network namespace: without them those tests skip, or fail with CI=true),
#     promtool (from prometheus) and chromium for the monitoring tests, and the tools scripts/build_guest_image.sh
#     makes the VM guest image with (qemu-img from qemu-utils, cpio, mke2fs from e2fsprogs, depmod from kmod, xz);
#   - a Docker Engine that answers (started by hand when no service manager runs);
#   - the pinned Python tools in .venv/ (ansible 12.3 with its bundled collections, molecule, ...).
# Source it or run it; afterwards use .venv/bin/ansible-playbook (or `. .venv/bin/activate`).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

log() { printf '\n==> %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
command -v git >/dev/null || need_pkgs+=(git)
command -v skopeo >/dev/null || need_pkgs+=(skopeo)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
# The monitoring tests: promtool (Prometheus' rule tests and linter) and headless Chromium (looking at the pages),
# with a font so that the screenshots show text.
command -v promtool >/dev/null || need_pkgs+=(prometheus)
command -v chromium >/dev/null || need_pkgs+=(chromium fonts-dejavu-core)
# The VM guest image (scripts/build_guest_image.sh, from the Debian kernel and busybox-static): qemu-img for the qcow2,
# cpio for the initramfs, mke2fs -d for the root filesystem, depmod for the kernel's modules.dep, xz for xz'd modules.
command -v qemu-img >/dev/null || need_pkgs+=(qemu-utils)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v mke2fs >/dev/null || need_pkgs+=(e2fsprogs)
command -v depmod >/dev/null || need_pkgs+=(kmod)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "Installing Debian packages: ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" ca-certificates tar >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    log "Starting Docker Engine with systemd"
    systemctl start docker
  else
    # No service manager as PID 1 (CI, containers): run dockerd in the background.
    log "Starting dockerd in the background (log: /var/log/edgeops-dockerd.log)"
    nohup dockerd >/var/log/edgeops-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "Docker Engine did not start; see /var/log/edgeops-dockerd.log" >&2; exit 1; }
fi

# Every lab device is a container running systemd, which takes inotify instances of the host's root
# user; the kernel's default (128) stops containers with "Failed to create control group inotify
# object: Too many open files" once a few labs run side by side (tests do). Raise it, never lower it.
if [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then
  log "Raising fs.inotify.max_user_instances to 1024 for the lab's systemd containers"
  sysctl -q -w fs.inotify.max_user_instances=1024 \
    || echo "warning: could not raise fs.inotify.max_user_instances; labs side by side may fail" >&2
fi

# The labs publish their ports on 127.0.0.1 between 42000 and 45999, inside Linux's ephemeral range (32768-60999): a
# connection to a lab over loopback (the controller's SSH, a test's HTTP) whose kernel-chosen local port is a lab's
# port makes that lab's container fail to start with "address already in use" (seen in a suite run: 127.0.0.1:43100
# of the two-site lab). Keep the kernel from handing them out as local ports; nothing else changes.
lab_ports=42000-45999
reserved=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || echo unknown)
case ",$reserved," in
  *",$lab_ports,"*|*,unknown,*) ;;
  *)
    log "Reserving the lab ports $lab_ports from the kernel's ephemeral ports"
    sysctl -q -w net.ipv4.ip_local_reserved_ports="${reserved:+$reserved,}$lab_ports" \
      || echo "warning: could not reserve the lab ports; a lab may find its port taken by a local connection" >&2
    ;;
esac

stamp=$(cat requirements.txt constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.edgeops-stamp 2>/dev/null)" != "$stamp" ]; then
  log "Installing the pinned Python tools into .venv/"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt -c constraints.txt
  echo "$stamp" > .venv/.edgeops-stamp
fi
# (sed reads all of ansible's output: `head -1` closing the pipe early made ansible print a BrokenPipeError.)
log "Ready: $(.venv/bin/ansible --version | sed -n 1p), $(docker version --format 'Docker Engine {{.Server.Version}}')"
