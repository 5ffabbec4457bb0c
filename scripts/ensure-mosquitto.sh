#!/bin/sh
# `make test` runs this before anything else: the device-lab tests start a real mosquitto broker (and
# hash its passwords with mosquitto_passwd), so a machine without it would fail 15 tests at the end.
# Installed: nothing to do. Missing: install Debian's package when this user can (root, or sudo
# without a password, and apt-get); otherwise stop with one line saying exactly what to run.
#
# MOSQUITTO_SEARCH_PATH (default: $PATH plus the sbin folders, where Debian puts mosquitto) is where
# both programs are looked for; tests/test_ensure_mosquitto.py points it at an empty folder to
# exercise the install paths without uninstalling anything.
set -eu

search="${MOSQUITTO_SEARCH_PATH:-$PATH:/usr/sbin:/usr/local/sbin}"

have() {  # have NAME: an executable NAME in one of $search's folders
    old_ifs=$IFS
    IFS=:
    for dir in $search; do
        if [ -n "$dir" ] && [ -x "$dir/$1" ]; then
            IFS=$old_ifs
            return 0
        fi
    done
    IFS=$old_ifs
    return 1
}

installed() { have mosquitto && have mosquitto_passwd; }

installed && exit 0

why="mosquitto is missing (the device-lab tests start a real broker)"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$why: install it with your package manager (e.g. brew install mosquitto), then run make test again" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "$why and this user cannot install it: run sudo apt-get install -y mosquitto, then make test again" >&2
    exit 1
fi
echo "installing mosquitto for the device-lab tests: apt-get install -y --no-install-recommends mosquitto"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto
installed || { echo "$why: apt-get installed it, but mosquitto and mosquitto_passwd are not in $search" >&2; exit 1; }
