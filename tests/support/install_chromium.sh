#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the report rendering test, if missing.
# Needs root (or sudo) and access to the Debian package mirror; does nothing when a
# chromium binary is already on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "error: installing chromium needs root; run 'apt-get install -y chromium' as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
command -v chromium
