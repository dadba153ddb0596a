#!/usr/bin/env bash
# Build (or find in the cache) the small VM guest image that edgeops.fleet boots on its devices' libvirt.
#
# Usage: scripts/build_guest_image.sh [--help]
#   Prints progress on stderr; the LAST line on stdout is the output directory, which holds:
#     edgeops-guest.vmlinuz  the Debian kernel (direct kernel boot, cmdline "console=ttyS0")
#     edgeops-guest.initrd   gzip'd newc cpio: busybox-static + the few kernel modules the guest needs; its /init
#                            mounts /dev/vda (ext4, rw) and switch_roots into it
#     edgeops-guest.qcow2    the root disk (ext4, 64 MiB): busybox, /sbin/init (the guest contract below),
#                            /srv/www/{index.html,health}; boot an overlay backed by it, never the file itself
#     SHA256SUMS             sha256sum format over the three files above
#     recipe.txt             what went in: package names and versions, the .deb and script digests, the modules
#   Environment: EDGEOPS_GUEST_CACHE (default ~/.cache/edgeops/guest-images).
#
# Why this way: the machines this project runs on reach only the Debian and PyPI mirrors, so no cloud image can be
# downloaded. The guest is therefore made here from two Debian packages only, the Debian kernel
# (linux-image-amd64 resolved to its versioned linux-image-<ver>-amd64) and busybox-static, fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into a temporary directory. Nothing is mounted and no loop
# device is used: the root filesystem is made with `mke2fs -d` and converted with `qemu-img`, so this runs
# unprivileged in a container as well as on a controller.
#
# Cache by recipe: the output directory is <cache>/<first 12 hex of sha256(this script + resolved package versions)>.
# A directory that has every file and whose SHA256SUMS verifies is reused at once (no download, no apt-get update).
# A build is made in a temporary directory next to the cache and renamed into place at the end, so a killed build
# never leaves a half-made cache entry.
#
# The guest contract (the libvirt XML and the NoCloud seed are written against exactly this):
#   - direct kernel boot, cmdline "console=ttyS0" (anything else is ignored by our init); TCG, 128 MiB, 1 vCPU.
#   - /dev/vda: the root disk (a qcow2 overlay backed by edgeops-guest.qcow2), mounted ext4 rw.
#   - the NoCloud seed: a vfat filesystem labelled "cidata" on another virtio disk (normally /dev/vdb, read-only)
#     with meta-data ("local-hostname: NAME"), user-data and network-config (cloud-init network v2: ethernets
#     matched by macaddress, addresses, a default route). The guest tries every /dev/vd? but vda, mounting it
#     "-t vfat -o ro" on /run/cidata, until one has meta-data. Other disks (/dev/vdc, ...) are left alone.
#   - user-data that starts with "#!" is copied to /run/user-data (mode 0700) and run in the background with its
#     output on /dev/console. Without a seed, or with user-data that is not a script, the default service
#     runs: busybox `httpd -p 80 -h /srv/www`. Without network-config (no seed) the first NIC is configured by DHCP.
#   - once the network is configured and user-data started, exactly one line goes to the console (ttyS0):
#     "edgeops-guest: up <address-or-none>". The guest is otherwise quiet (console loglevel 4 once init runs).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
log() { printf 'build_guest_image: %s\n' "$*" >&2; }
die() { printf 'build_guest_image: ERROR: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; die "unknown argument: $1" ;;
esac

script=$(readlink -f "${BASH_SOURCE[0]}")
export PATH="$PATH:/usr/sbin:/sbin"   # mke2fs and depmod live there; ordinary users lack them in PATH
cache_base=${EDGEOPS_GUEST_CACHE:-${HOME:?HOME is not set; set EDGEOPS_GUEST_CACHE}/.cache/edgeops/guest-images}
outputs=(edgeops-guest.vmlinuz edgeops-guest.initrd edgeops-guest.qcow2)
kernel_meta=linux-image-amd64
busybox_pkg=busybox-static
rootfs_size=64M

# ---------------------------------------------------------------------------------------------------------------
# Resolve the package versions (apt-cache only: fast, no network) and the recipe key.
apt_cache_opts=()
if [ -z "$(apt-config shell v Dir::Cache::pkgcache 2>/dev/null | sed -n "s/^v='\\(.*\\)'$/\\1/p")" ]; then
  # apt's binary cache is switched off (Docker images: docker-clean), which makes every apt-cache call parse all
  # the lists (~0.5 s). Keep one next to our cache; apt rebuilds it itself when the lists change.
  mkdir -p "$cache_base/.apt" 2>/dev/null && apt_cache_opts=(-o "Dir::Cache::pkgcache=$cache_base/.apt/pkgcache.bin")
fi
resolve_versions() { # sets meta_ver, kernel_pkg, kernel_ver, busybox_ver from the candidates (one apt-cache call)
  local fields
  fields=$(apt-cache "${apt_cache_opts[@]}" show --no-all-versions "$kernel_meta" "$busybox_pkg" 2>/dev/null \
    | awk '/^Package: / { p = $2 } /^Version: / { print p, "version", $2 }
           /^Depends: / && p == "'"$kernel_meta"'" {
             # exactly one versioned image: "linux-image-6.1.0-57-amd64 (= 6.1.192-3)"
             if (match($0, /linux-image-[0-9][^ ,]*-amd64 \(= [^)]*\)/)) {
               d = substr($0, RSTART, RLENGTH); gsub(/[()=]/, "", d); split(d, a, " "); print p, "dep", a[1], a[2] } }') || true
  meta_ver=$(awk -v p="$kernel_meta" '$1 == p && $2 == "version" { print $3; exit }' <<<"$fields")
  busybox_ver=$(awk -v p="$busybox_pkg" '$1 == p && $2 == "version" { print $3; exit }' <<<"$fields")
  kernel_pkg=$(awk -v p="$kernel_meta" '$1 == p && $2 == "dep" { print $3; exit }' <<<"$fields")
  kernel_ver=$(awk -v p="$kernel_meta" '$1 == p && $2 == "dep" { print $4; exit }' <<<"$fields")
  [ -n "$meta_ver" ] && [ -n "$busybox_ver" ] && [ -n "$kernel_pkg" ] && [ -n "$kernel_ver" ]
}
compute_key() {
  script_sha=$(sha256sum "$script" | cut -d' ' -f1)
  versions=$(printf '%s=%s\n' "$kernel_meta" "$meta_ver" "$kernel_pkg" "$kernel_ver" "$busybox_pkg" "$busybox_ver")
  key=$({ cat "$script"; printf '%s\n' "$versions"; } | sha256sum | cut -c1-12)
  out="$cache_base/$key"
}
cache_ok() { # dir -> true when it has every file and its SHA256SUMS verifies
  local f
  for f in "${outputs[@]}" SHA256SUMS recipe.txt; do [ -s "$1/$f" ] || return 1; done
  [ "$(grep -c . "$1/SHA256SUMS")" -eq "${#outputs[@]}" ] || return 1
  (cd "$1" && sha256sum --check --status --strict SHA256SUMS)
}
updated=no
apt_update_once() { # refresh stale package lists once, when we may (root); false when that cannot help
  [ "$updated" = no ] && [ "$(id -u)" -eq 0 ] || return 1
  updated=yes
  log "refreshing the package lists (apt-get update)"
  apt-get update -qq >&2 || return 1
}

if ! resolve_versions; then
  if ! { apt_update_once && resolve_versions; }; then
    die "apt-cache cannot resolve $kernel_meta and $busybox_pkg (run 'apt-get update' as root)"
  fi
fi
compute_key
if cache_ok "$out"; then
  log "cache hit ($kernel_pkg $kernel_ver, $busybox_pkg $busybox_ver)"
  printf '%s\n' "$out"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------------
# Cache miss: check the controller's tools up front, naming the Debian package to install.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2 (for $1)"); }
need apt-get apt
need dpkg-deb dpkg
need depmod kmod
need cpio cpio
need gzip gzip
need mke2fs e2fsprogs
need qemu-img qemu-utils
need sha256sum coreutils
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing tools; install the Debian packages: apt-get install -y ${missing[*]%% *}  (${missing[*]})"
fi

log "building $out ($kernel_pkg $kernel_ver, $busybox_pkg $busybox_ver)"
mkdir -p "$cache_base"
# Leftovers of killed builds (never a cache entry: those only appear by rename).
find "$cache_base" -maxdepth 1 -name '.build.*' -mmin +120 -exec rm -rf {} + 2>/dev/null || true
# Everything happens under one temporary directory next to the cache: work/ (the unpacked packages, trees) and
# out/ (the outputs), which is renamed into place at the end; a killed build leaves only a .build.* directory.
tmp=$(mktemp -d "$cache_base/.build.XXXXXX")
work="$tmp/work"
stage="$tmp/out"
mkdir -p "$work" "$stage"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- fetch the two packages ------------------------------------------------------------------------------------
mkdir -p "$work/debs"
download() {
  local sandbox=()
  # As root apt drops to the _apt user, which cannot write into our private temporary directory.
  [ "$(id -u)" -eq 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$work/debs" && apt-get download -q "${sandbox[@]}" \
    "$kernel_pkg=$kernel_ver" "$busybox_pkg=$busybox_ver" >&2)
}
if ! download; then
  # Stale lists (the mirror moved on): refresh once, re-resolve; the recipe key may change with the versions.
  if ! { apt_update_once && resolve_versions; }; then
    die "apt-get download of $kernel_pkg=$kernel_ver and $busybox_pkg=$busybox_ver failed"
  fi
  compute_key
  if cache_ok "$out"; then printf '%s\n' "$out"; exit 0; fi
  rm -f "$work/debs"/*.deb
  download || die "apt-get download of $kernel_pkg=$kernel_ver and $busybox_pkg=$busybox_ver failed"
fi
kernel_deb=$(find "$work/debs" -name "${kernel_pkg}_*.deb" | head -n1)
busybox_deb=$(find "$work/debs" -name "${busybox_pkg}_*.deb" | head -n1)
if [ ! -f "$kernel_deb" ] || [ ! -f "$busybox_deb" ]; then die "apt-get download did not leave the .deb files"; fi
[ "$(dpkg-deb -f "$kernel_deb" Version)" = "$kernel_ver" ] || die "$kernel_deb is not version $kernel_ver"
[ "$(dpkg-deb -f "$busybox_deb" Version)" = "$busybox_ver" ] || die "$busybox_deb is not version $busybox_ver"
mkdir -p "$work/kernel" "$work/busybox"
dpkg-deb -x "$kernel_deb" "$work/kernel"
dpkg-deb -x "$busybox_deb" "$work/busybox"

# --- the kernel --------------------------------------------------------------------------------------------------
kver=${kernel_pkg#linux-image-}
[ -f "$work/kernel/boot/vmlinuz-$kver" ] || die "$kernel_pkg has no boot/vmlinuz-$kver"
kconfig="$work/kernel/boot/config-$kver"
[ -f "$kconfig" ] || die "$kernel_pkg has no boot/config-$kver"
# Debian ships the modules under /lib/modules (bookworm) or /usr/lib/modules (merged /usr); depmod -b wants lib/.
if [ ! -d "$work/kernel/lib/modules/$kver" ] && [ -d "$work/kernel/usr/lib/modules/$kver" ]; then
  [ -e "$work/kernel/lib" ] || ln -s usr/lib "$work/kernel/lib"
fi
moddir="$work/kernel/lib/modules/$kver"
[ -d "$moddir" ] || die "$kernel_pkg has no lib/modules/$kver"
# The package carries no modules.dep (its postinst runs depmod): make it from the package's own modules.
[ -f "$moddir/modules.dep" ] || depmod -b "$work/kernel" "$kver"
[ -f "$moddir/modules.dep" ] || die "depmod made no modules.dep for $kver"

# --- the modules the guest needs, in load order (modules.dep) ---------------------------------------------------
kconf() { sed -n "s/^CONFIG_$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$kconfig"; }
fat_codepage=$(kconf FAT_DEFAULT_CODEPAGE); fat_iocharset=$(kconf FAT_DEFAULT_IOCHARSET)
# virtio transport, disk and NIC; crc32c_generic because ext4 and jbd2 need a "crypto-crc32c" driver (a softdep,
# not in modules.dep) for metadata_csum, and crc32c-intel needs SSE4.2, which TCG's default CPU lacks; ext4 and
# its deps; vfat (+fat) and the NLS tables of vfat's default codepage and iocharset (for the cidata seed).
wanted=(virtio_pci virtio_blk virtio_net crc32c_generic ext4 vfat "nls_cp${fat_codepage:-437}" "nls_${fat_iocharset:-ascii}")
modline() { # module name -> its modules.dep line ("path: deps"), matching - and _ alike
  awk -F: -v n="${1//-/_}" '{ b = $1; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b); gsub(/-/, "_", b)
                               if (b == n) { print; exit } }' "$moddir/modules.dep"
}
builtin_mod() { # module name -> true when built into the kernel
  awk -v n="${1//-/_}" '{ b = $0; sub(/.*\//, "", b); sub(/\.ko$/, "", b); gsub(/-/, "_", b)
                          if (b == n) { f = 1; exit } } END { exit !f }' "$moddir/modules.builtin"
}
load_order=()
add_path() { local p; for p in "${load_order[@]}"; do [ "$p" = "$1" ] && return 0; done; load_order+=("$1"); }
for m in "${wanted[@]}"; do
  if builtin_mod "$m"; then log "module $m: built into the kernel"; continue; fi
  line=$(modline "$m")
  [ -n "$line" ] || die "module $m is neither built in nor in $kernel_pkg's modules.dep"
  read -r -a deps <<<"${line#*:}"
  # modules.dep lists the dependencies so that loading them from last to first works (what modprobe does).
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add_path "${deps[i]}"; done
  add_path "${line%%:*}"
done

# --- busybox trees -------------------------------------------------------------------------------------------------
bb="$work/busybox/bin/busybox"
[ -x "$bb" ] || die "$busybox_pkg has no bin/busybox"
install_busybox() { # tree: bin/busybox plus every applet as a relative symlink (not sbin/init, linuxrc: ours)
  local tree=$1 applet dir up
  mkdir -p "$tree/bin" "$tree/sbin" "$tree/usr/bin" "$tree/usr/sbin"
  install -m 0755 "$bb" "$tree/bin/busybox"
  while read -r applet; do
    case "$applet" in ""|bin/busybox|sbin/init|linuxrc) continue ;; esac
    dir=$(dirname "$applet")
    up=$(printf '%s\n' "$dir" | sed 's:[^/]*:..:g')
    mkdir -p "$tree/$dir"
    [ -e "$tree/$applet" ] || ln -s "$up/bin/busybox" "$tree/$applet"
  done < <("$bb" --list-full)
}

# --- the initramfs -------------------------------------------------------------------------------------------------
initrd="$work/initrd"
install_busybox "$initrd"
mkdir -p "$initrd/dev" "$initrd/proc" "$initrd/sys" "$initrd/newroot" "$initrd/lib/modules"
modnames=()
for p in "${load_order[@]}"; do
  base=$(basename "$p"); ko="${base%.ko*}.ko"
  case "$p" in
    *.ko) cp "$moddir/$p" "$initrd/lib/modules/$ko" ;;
    # busybox insmod loads plain .ko files only: decompress here.
    *.ko.xz) command -v xz >/dev/null || die "modules are xz-compressed: apt-get install -y xz-utils"
             xz -dc "$moddir/$p" >"$initrd/lib/modules/$ko" ;;
    *.ko.zst) command -v zstd >/dev/null || die "modules are zstd-compressed: apt-get install -y zstd"
              zstd -qdc "$moddir/$p" >"$initrd/lib/modules/$ko" ;;
    *.ko.gz) gzip -dc "$moddir/$p" >"$initrd/lib/modules/$ko" ;;
    *) die "unexpected module file $p" ;;
  esac
  printf '%s\n' "$ko" >>"$initrd/lib/modules/load.order"
  modnames+=("${ko%.ko}")
done
cat >"$initrd/init" <<'EOF'
#!/bin/sh
# edgeops guest initramfs: load the modules, wait for /dev/vda, mount it (ext4, rw) and switch_root into it.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Quiet console from here on (as "quiet" would): only warnings and worse.
echo 4 >/proc/sys/kernel/printk

fail() {
  echo "edgeops-guest: initramfs failed: $*; powering off"
  sleep 1
  poweroff -f
  exec sh
}

while read -r ko; do
  insmod "/lib/modules/$ko" || fail "insmod $ko"
done </lib/modules/load.order

i=0
while [ ! -b /dev/vda ]; do
  [ "$i" -ge 100 ] && fail "no root disk /dev/vda after 10 s"
  usleep 100000
  i=$((i + 1))
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda (ext4) on /newroot"
[ -x /newroot/sbin/init ] || fail "/dev/vda has no /sbin/init"

for d in dev proc sys; do
  mkdir -p "/newroot/$d" 2>/dev/null
  mount -o move "/$d" "/newroot/$d" || umount -l "/$d"
done
exec switch_root /newroot /sbin/init
fail "switch_root failed"
EOF
chmod 0755 "$initrd/init"

# --- the root filesystem ---------------------------------------------------------------------------------------------
root="$work/root"
install_busybox "$root"
mkdir -p "$root"/{dev,proc,sys,run,tmp,root,mnt,etc/udhcpc,srv/www,var/log}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
printf 'edgeops guest\n' >"$root/srv/www/index.html"
printf 'ok\n' >"$root/srv/www/health"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
printf 'edgeops-guest\n' >"$root/etc/hostname"
cat >"$root/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
# busybox udhcpc hook: apply the lease (address, default route); the guest has no resolver to configure.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    echo "$ip" >"/run/dhcp-$interface"
    ;;
esac
exit 0
EOF
chmod 0755 "$root/etc/udhcpc/default.script"
cat >"$root/sbin/init" <<'EOF'
#!/bin/sh
# edgeops guest init (PID 1, busybox sh): filesystems, NoCloud seed (hostname, network, user-data), then wait.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
umask 022
cd /

[ -r /proc/mounts ] || mount -t proc proc /proc
mnt() { grep -q "^[^ ]* $2 " /proc/mounts || mount -t "$1" "$1" "$2"; }
mnt sysfs /sys
mnt devtmpfs /dev
mnt tmpfs /run
mnt tmpfs /tmp
exec </dev/null >/dev/console 2>&1
echo 4 >/proc/sys/kernel/printk
mount -o remount,rw / 2>/dev/null
ip link set lo up

# The seed: the first /dev/vd? but vda that mounts as vfat and has meta-data.
seed=
mkdir -p /run/cidata
for dev in /dev/vd?; do
  [ "$dev" = /dev/vda ] && continue
  [ -b "$dev" ] || continue
  mount -t vfat -o ro "$dev" /run/cidata 2>/dev/null || continue
  if [ -f /run/cidata/meta-data ]; then seed=/run/cidata; break; fi
  umount /run/cidata
done

name=
if [ -n "$seed" ]; then
  name=$(sed -n 's/^local-hostname:[[:space:]]*//p' "$seed/meta-data" | head -n 1 | tr -d "\"'\r" | sed 's/[[:space:]]*$//')
fi
hostname "${name:-edgeops-guest}"

# network-config (cloud-init network v2): prints "eth ID", "mac ID MAC", "name ID NAME", "addr ID CIDR",
# "gw ID ADDRESS" (the default route) and "dhcp ID" lines.
parse_netcfg() {
  awk '
    function unq(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); gsub(/^["\047]|["\047]$/, "", s); return s }
    function val(s) { sub(/^[^:]*:/, "", s); return unq(s) }
    function flush() { if (rvia != "" && (rto == "default" || rto == "0.0.0.0/0")) print "gw", id, rvia; rto = ""; rvia = "" }
    { sub(/\r$/, "") }
    /^[ \t]*(#.*)?$/ { next }
    { match($0, /^ */); ind = RLENGTH; line = substr($0, ind + 1); sub(/[ \t]+#.*$/, "", line) }
    line ~ /^ethernets:/ { flush(); inside = 1; eind = ind; idind = -1; keyind = -1; id = ""; next }
    inside && ind <= eind { flush(); inside = 0 }
    !inside { next }
    idind < 0 || ind <= idind { flush(); idind = ind; keyind = -1; id = line; sub(/:.*/, "", id); id = unq(id)
                                print "eth", id; sect = ""; next }
    keyind < 0 { keyind = ind }
    ind == keyind && line !~ /^- / { flush(); key = line; sub(/:.*/, "", key); sect = key; v = val(line)
      if (key == "dhcp4" && (v == "true" || v == "yes")) print "dhcp", id
      if (key == "addresses" && v ~ /^\[/) { gsub(/[][]/, "", v); n = split(v, a, ","); for (i = 1; i <= n; i++) print "addr", id, unq(a[i]) }
      if (key == "match" && v ~ /^\{/) { gsub(/[{}]/, "", v); n = split(v, a, ",")
        for (i = 1; i <= n; i++) { k = unq(a[i]); sub(/:.*/, "", k)
          if (k == "macaddress") print "mac", id, tolower(val(a[i])); if (k == "name") print "name", id, val(a[i]) } }
      next }
    sect == "match" && line ~ /^macaddress:/ { print "mac", id, tolower(val(line)); next }
    sect == "match" && line ~ /^name:/ { print "name", id, val(line); next }
    sect == "addresses" && line ~ /^- / { print "addr", id, unq(substr(line, 3)); next }
    sect == "routes" {
      if (line ~ /^- /) { flush(); line = substr(line, 3); sub(/^[ \t]+/, "", line) }
      if (line ~ /^to:/) rto = val(line)
      if (line ~ /^via:/) rvia = val(line)
    }
    END { flush() }
  ' "$1"
}
iface_of() { # mac -> the interface that has it
  for a in /sys/class/net/*/address; do
    [ "$(tr 'A-F' 'a-f' <"$a")" = "$1" ] && { basename "$(dirname "$a")"; return 0; }
  done
  return 1
}
dhcp() { # interface -> address (or nothing)
  ip link set "$1" up
  udhcpc -i "$1" -n -q -t 5 -T 1 -s /etc/udhcpc/default.script >/dev/null 2>&1 && cat "/run/dhcp-$1" 2>/dev/null
}

address=
if [ -n "$seed" ] && [ -f "$seed/network-config" ]; then
  parse_netcfg "$seed/network-config" >/run/network.parsed
  for id in $(sed -n 's/^eth //p' /run/network.parsed); do
    mac=$(awk -v i="$id" '$1 == "mac" && $2 == i { print $3; exit }' /run/network.parsed)
    want=$(awk -v i="$id" '$1 == "name" && $2 == i { print $3; exit }' /run/network.parsed)
    if [ -n "$mac" ]; then dev=$(iface_of "$mac") || dev=
    else dev=${want:-$id}; [ -e "/sys/class/net/$dev" ] || dev=
    fi
    if [ -z "$dev" ]; then echo "edgeops-guest: no interface for $id${mac:+ ($mac)}"; continue; fi
    ip link set "$dev" up
    for cidr in $(awk -v i="$id" '$1 == "addr" && $2 == i { print $3 }' /run/network.parsed); do
      ip addr add "$cidr" dev "$dev" && [ -z "$address" ] && address=${cidr%/*}
    done
    for gw in $(awk -v i="$id" '$1 == "gw" && $2 == i { print $3 }' /run/network.parsed); do
      ip route replace default via "$gw" dev "$dev"
    done
    if grep -q "^dhcp $id\$" /run/network.parsed; then a=$(dhcp "$dev"); address=${address:-$a}; fi
  done
else
  # No network-config: DHCP on the first NIC (cloud-init's fallback).
  for n in /sys/class/net/*; do
    dev=${n##*/}
    [ "$dev" = lo ] && continue
    address=$(dhcp "$dev")
    break
  done
fi

# user-data: a shell script runs (in the background, output on the console); anything else: the default service.
if [ -n "$seed" ] && [ "$(head -c 2 "$seed/user-data" 2>/dev/null)" = "#!" ]; then
  cp "$seed/user-data" /run/user-data
  chmod 0700 /run/user-data
  /run/user-data </dev/null >/dev/console 2>&1 &
else
  httpd -p 80 -h /srv/www
fi

echo "edgeops-guest: up ${address:-none}"

# PID 1 never exits.
while :; do sleep 3600; done
EOF
chmod 0755 "$root/sbin/init"

# --- assemble the outputs ------------------------------------------------------------------------------------------
log "kernel $kver; modules: ${modnames[*]}"
install -m 0644 "$work/kernel/boot/vmlinuz-$kver" "$stage/edgeops-guest.vmlinuz"
(cd "$initrd" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
  | gzip -9n >"$stage/edgeops-guest.initrd"
# Our own mke2fs.conf: the guest kernel must not meet features a newer controller's defaults might add.
cat >"$work/mke2fs.conf" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	small = {
		inode_ratio = 8192
	}
	floppy = {
		inode_ratio = 8192
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
EOF
: >"$work/root.ext4"
MKE2FS_CONFIG="$work/mke2fs.conf" mke2fs -q -F -t ext4 -L edgeops-root -E root_owner=0:0 -d "$root" \
  "$work/root.ext4" "$rootfs_size" >&2
qemu-img convert -c -f raw -O qcow2 "$work/root.ext4" "$stage/edgeops-guest.qcow2"
chmod 0644 "$stage"/edgeops-guest.*
(cd "$stage" && sha256sum "${outputs[@]}" >SHA256SUMS)
{
  echo "edgeops guest image, recipe $key"
  echo "script: ${script##*/} sha256:$script_sha"
  echo "package: $kernel_meta $meta_ver -> $kernel_pkg $kernel_ver (deb sha256:$(sha256sum "$kernel_deb" | cut -d' ' -f1))"
  echo "package: $busybox_pkg $busybox_ver (deb sha256:$(sha256sum "$busybox_deb" | cut -d' ' -f1))"
  echo "kernel release: $kver"
  echo "initrd modules (insmod order): ${modnames[*]}"
  echo "root filesystem: ext4 $rootfs_size, busybox $("$bb" 2>&1 | sed -n '1s/^BusyBox \(v[^ ]*\).*/\1/p'), /sbin/init, /srv/www/{index.html,health}"
  echo "boot: direct kernel boot, cmdline console=ttyS0, root disk /dev/vda (overlay on edgeops-guest.qcow2), TCG"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$stage/recipe.txt"
chmod 0644 "$stage"/SHA256SUMS "$stage/recipe.txt"
chmod 0755 "$stage"
cache_ok "$stage" || die "the fresh build does not verify"

# Atomic publish: rename the finished directory into place (mv -T never moves it *into* an existing one).
if ! mv -T "$stage" "$out" 2>/dev/null; then
  cache_ok "$out" || { rm -rf "$out"; mv -T "$stage" "$out"; }   # a broken leftover: replace it
fi
log "done: $(du -sh "$out" | cut -f1) in $out"
printf '%s\n' "$out"
