#!/bin/sh
# Makes this host able to build and run ChatGate's image with podman when no registry can be
# reached (Debian, root, apt-get): installs podman and friends, writes the containers.conf
# settings this kind of host needs, and builds the base image `FROM node:20-slim` resolves to
# from Debian's own packages. Idempotent: a second run only checks, in about a second.
# Used by test/container.test.ts (before it builds the image) and by hand.
set -eu

BASE_TAG=docker.io/library/node:20-slim
PACKAGES="podman runc mmdebstrap netavark aardvark-dns uidmap fuse-overlayfs slirp4netns iptables catatonit"

log () { echo "container-host: $*" >&2; }

# One run at a time: parallel test runs share the host's packages, settings and images.
exec 9>"${TMPDIR:-/tmp}/chatgate-container-host.lock"
flock 9

admin=yes
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  # Not root with apt-get: use what is there (steps 1 and 2 are left to an admin).
  admin=no
  for bin in podman runc mmdebstrap; do
    command -v "$bin" >/dev/null 2>&1 || { log "needs root with apt-get to install $PACKAGES"; exit 1; }
  done
fi

# 1. Packages (apt-get update only when something is missing).
missing=""
[ "$admin" = no ] || for pkg in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  log "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q </dev/null >&2
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing </dev/null >&2
fi

# 2. Engine settings: crun refuses this host's mixed cgroup v1/v2 setup, and the default
#    rlimits (1048576) are refused here; netavark named, as the CNI plugins are not installed.
#    Written only when not already set (or when this script wrote the file).
CONF=/etc/containers/containers.conf
MARK='# Written by ChatGate scripts/container-host.sh'
SETTINGS='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"

[network]
network_backend = "netavark"'
wanted=$(printf '%s\n%s\n' "$MARK" "$SETTINGS")
if [ "$admin" = no ]; then
  :
elif [ ! -s "$CONF" ] || { head -n 1 "$CONF" | grep -qx "$MARK" && [ "$(cat "$CONF")" != "$wanted" ]; }; then
  mkdir -p /etc/containers
  printf '%s\n' "$wanted" > "$CONF"
  log "wrote $CONF"
elif ! grep -q '^ *runtime *= *"runc"' "$CONF"; then
  # An existing file of the admin's: add ours as a drop-in rather than editing theirs.
  mkdir -p /etc/containers/containers.conf.d
  printf '%s\n' "$SETTINGS" > /etc/containers/containers.conf.d/50-chatgate.conf
  log "wrote /etc/containers/containers.conf.d/50-chatgate.conf"
fi

# 3. The base image, only when missing (a cold build takes a few minutes).
if podman image exists "$BASE_TAG"; then
  exit 0
fi
# The mirror comes from the host's own apt sources, so no host name is written here.
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | grep -v security | head -n 1)
[ -n "$mirror" ] || { log "no Debian mirror found in /etc/apt/sources*"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Debian 13 "trixie" ships Node 20 (Debian 12 only Node 18); mmdebstrap resolves npm's
# dependencies where debootstrap does not.
log "building the base image from $mirror (trixie, nodejs, npm)"
mmdebstrap --quiet --variant=minbase --include=nodejs,npm,ca-certificates \
  --aptopt='Acquire::Retries "3"' trixie "$work/base.tar" "$mirror" >&2
podman import --change 'CMD ["bash"]' "$work/base.tar" localhost/debian-node:20 >&2
# The official image's `node` user (uid 1000) and its default command.
cat > "$work/Containerfile" <<'EOF'
FROM localhost/debian-node:20
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
CMD ["node"]
EOF
podman build --pull=never --format docker -t "$BASE_TAG" -t docker.io/library/node:20 "$work" >&2
log "tagged $BASE_TAG"
