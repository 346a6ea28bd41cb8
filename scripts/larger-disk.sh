#!/usr/bin/env bash
# Prints the candidate (default /mnt) when it is a filesystem of its own with more free space
# than /, else nothing: /mnt can be a plain folder on the root filesystem, no roomier than /.
#   larger-disk.sh [CANDIDATE]
set -euo pipefail
candidate=${1:-/mnt}
[ -d "$candidate" ] || exit 0
field() { df --output="$1" -B1 "$2" | tail -n 1 | tr -d ' '; }
[ "$(field source /)" != "$(field source "$candidate")" ] || exit 0
if [ "$(field avail "$candidate")" -gt "$(field avail /)" ]; then echo "$candidate"; fi
