#!/usr/bin/env bash
# The shard action's disk step: move Docker's data root to /mnt when it is the runner's larger
# disk, so that SWE-bench images (GBs each) fit; where it is not, make room on / instead by
# removing toolchains a shard never uses.
set -euo pipefail
if ! sudo -n true 2>/dev/null || ! command -v systemctl >/dev/null; then
  echo "no sudo here: Docker's data stays where it is"
  exit 0
fi
if [ -z "$(bash "$(dirname "$0")/larger-disk.sh")" ]; then
  echo "/mnt is not a larger disk of its own: freeing room on / instead"
  sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /opt/hostedtoolcache/CodeQL
  df -h /
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
