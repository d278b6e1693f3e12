#!/usr/bin/env bash
# Install the Debian packages the tests need, if missing: PostgreSQL (a throwaway
# cluster is started for the suite), the venv module, and the desktop the collector
# tests drive (Xvfb, openbox, xterm, Chromium, xdotool). Runs apt-get update once.
# Usage: system-deps.sh run|test  ('run' needs only the venv module).
set -euo pipefail
need=()
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${1:-test}" = "test" ]; then
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The collectors are tested against the real desktop: a virtual X server with a
# window manager, real windows and a real Chromium.
# i3lock: the screen locker the remote "lock" action falls back to (its test proves
# the keyboard is grabbed).
for tool in Xvfb:xvfb openbox:openbox xterm:xterm chromium:chromium xdotool:xdotool xprop:x11-utils xauth:xauth i3lock:i3lock; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
