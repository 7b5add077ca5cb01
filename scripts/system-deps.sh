#!/usr/bin/env bash
# Installs the Debian packages Herald's tests need when they are missing. Runs apt-get only when
# something is actually missing, so it is quick on a machine that has everything.
set -euo pipefail
PACKAGES=(haproxy)  # chromium joins when the web pages land
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
