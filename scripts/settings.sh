#!/usr/bin/env bash
# The actions' `settings` input as a file for `ci-eval --config`: printed is its path, empty for
# none. A value that names a file in the workspace is that file; any other is TOML text, written
# under RUNNER_TEMP (a name of its own per caller, $1). ci-eval reads and checks it: an unknown or
# malformed setting is one line there.
set -euo pipefail
value=${SETTINGS:-}
if [ -z "${value//[[:space:]]/}" ]; then
  exit 0
fi
if [[ $value != *$'\n'* && $value != *=* ]]; then
  [ -f "$value" ] || { echo "::error::settings: $value is neither TOML (key = value) nor a file in the workspace" >&2; exit 1; }
  realpath "$value"
  exit 0
fi
file="$RUNNER_TEMP/ci-eval-settings-$1.toml"
printf '%s\n' "$value" > "$file"
echo "$file"
