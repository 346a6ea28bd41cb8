#!/usr/bin/env bash
# The shard action's disk step: move Docker's data root to /mnt, the runner's larger disk, so
# that SWE-bench images (GBs each) fit, instead of deleting the runner's toolchains.
set -euo pipefail
if [ ! -d /mnt ] || ! sudo -n true 2>/dev/null || ! command -v systemctl >/dev/null; then
  echo "no /mnt or no sudo here: Docker's data stays where it is"
  exit 0
fi
df -h / /mnt | tail -n +2
config=/etc/docker/daemon.json
current=$(sudo cat "$config" 2>/dev/null || echo '{}')
sudo systemctl stop docker.socket docker.service
sudo mkdir -p /mnt/docker
echo "$current" | jq '. + {"data-root": "/mnt/docker"}' | sudo tee "$config" >/dev/null
sudo systemctl start docker.service
echo "Docker's data root: $(docker info --format '{{.DockerRootDir}}')"
