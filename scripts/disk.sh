#!/usr/bin/env bash
# The shard action's disk step. Where /mnt is a larger disk of its own, SWE-bench images (GBs
# each) go there: Docker's data root, and containerd's root too when Docker keeps its images in
# containerd's store (Docker 29's default, which ignores data-root for images). Where it is not
# (today's hosted runners have one root disk, 145 or 72 GB), room is made on / by removing
# toolchains a shard never uses.
set -euo pipefail
mnt=${CI_EVAL_LARGER_DISK:-/mnt}
daemon_json=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
containerd_root=${CONTAINERD_ROOT:-/var/lib/containerd}
if ! sudo -n true 2>/dev/null || ! command -v systemctl >/dev/null; then
  echo "no sudo here: Docker's data stays where it is"
  exit 0
fi
if [ -z "$(bash "$(dirname "$0")/larger-disk.sh" "$mnt")" ]; then
  echo "$mnt is not a larger disk of its own: freeing room on / instead"
  sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /opt/hostedtoolcache/CodeQL
  df -h /
  exit 0
fi
df -h / "$mnt" | tail -n +2
containerd_store=false
if docker info --format '{{json .DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter'; then
  containerd_store=true
fi
current=$(sudo cat "$daemon_json" 2>/dev/null || echo '{}')
sudo systemctl stop docker.socket docker.service
sudo mkdir -p "$mnt/docker"
echo "$current" | jq --arg root "$mnt/docker" '. + {"data-root": $root}' | sudo tee "$daemon_json" >/dev/null
if [ "$containerd_store" = true ]; then
  # containerd's root holds the images now: bind the larger disk over it, keeping what is there.
  sudo systemctl stop containerd.service
  sudo mkdir -p "$mnt/containerd" "$containerd_root"
  sudo cp -a "$containerd_root/." "$mnt/containerd/"
  sudo mount --bind "$mnt/containerd" "$containerd_root"
  sudo systemctl start containerd.service
  echo "containerd's root (Docker's image store) is on $mnt"
fi
sudo systemctl start docker.service
echo "Docker's data root: $(docker info --format '{{.DockerRootDir}}')"
