#!/usr/bin/env bash
# Installs the Debian packages Herald's tests need when they are missing. Runs apt-get only when
# something is actually missing, so it is quick on a machine that has everything.
set -euo pipefail
PACKAGES=(haproxy)  # the cluster tests run a real HAProxy; chromium joins with the web pages
# Node.js and npm run the official Socket.IO JavaScript client in the interoperability tests.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
# Debian's Chromium, driven by Playwright (executable_path) in the web page tests.
command -v chromium >/dev/null 2>&1 || PACKAGES+=(chromium)
# promtool (in Debian's prometheus package) loads deploy/prometheus/alerts.yml in the tests.
command -v promtool >/dev/null 2>&1 || PACKAGES+=(prometheus)
missing=()
for pkg in "${PACKAGES[@]+"${PACKAGES[@]}"}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
