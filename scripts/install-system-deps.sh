#!/usr/bin/env bash
# Installs the Debian packages the local stack and the tests need, if missing:
# python3-venv (the virtualenv), the PostgreSQL server (the stack runs its own
# instance), Chromium and a colour emoji font (browser tests), and the container tools
# `make images` builds with (SKIP_IMAGES=1 leaves them out).
set -euo pipefail

need=()
# Debian's python3 leaves out venv's ensurepip (package python3-venv), which `make deps`
# creates the virtualenv with.
if ! python3 -c "import ensurepip" >/dev/null 2>&1; then need+=(python3-venv); fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
if ! command -v chromium >/dev/null 2>&1 && [ "${SKIP_BROWSER:-0}" != "1" ]; then need+=(chromium fonts-liberation); fi
# The page's status icons and messages are emoji; without a colour emoji font a
# headless Chromium draws them as empty boxes (the browser tests and the README's
# screenshot see what a phone or desktop shows, which ship such a font).
if [ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] && [ "${SKIP_BROWSER:-0}" != "1" ]; then
  need+=(fonts-noto-color-emoji)
fi
if ! command -v runuser >/dev/null 2>&1; then need+=(util-linux); fi
# make images: podman builds and runs the images as root without a Docker engine (runc:
# crun fails on cgroup v1 hosts), mmdebstrap makes the stand-in python:3.11-slim base.
if [ "${SKIP_IMAGES:-0}" != "1" ]; then
  for tool in podman buildah runc mmdebstrap; do
    if ! command -v $tool >/dev/null 2>&1; then need+=(podman buildah runc mmdebstrap); break; fi
  done
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "missing Debian packages: ${need[*]} (install them as root, then re-run)" >&2; exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
