#!/usr/bin/env bash
# Installs the Debian packages raftd builds against, when any is missing. Idempotent: on a
# machine that has them it only checks. Uses sudo when not root.
set -euo pipefail

packages=(liburing-dev libzstd-dev liblmdb-dev zlib1g-dev pkg-config git)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
    echo "==> installing system packages: ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "error: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! command -v swift >/dev/null; then
    echo "error: no Swift toolchain on PATH. raftd needs Swift 6.1 or later (swift.org); Debian does not package it." >&2
    exit 1
fi
