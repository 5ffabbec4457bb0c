#!/bin/sh
# `make test` runs this before anything else: the device-lab tests start a real mosquitto broker (and
# hash its passwords with mosquitto_passwd), and the dashboard tests drive a real headless Chromium
# through chromedriver, so a machine without them would fail those tests at the end.
# All installed: nothing to do. Some missing: install Debian's packages for exactly those when this
# user can (root, or sudo without a password, and apt-get); otherwise stop with one line saying
# exactly what to run.
#
# SYSTEM_SEARCH_PATH (default: $PATH plus the sbin folders, where Debian puts mosquitto) is where
# the programs are looked for; tests/test_ensure_system_packages.py points it at an empty folder to
# exercise the install paths without uninstalling anything.
set -eu

search="${SYSTEM_SEARCH_PATH:-$PATH:/usr/sbin:/usr/local/sbin}"

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

missing=""
need() {  # need PACKAGE PROGRAM...: PACKAGE is missing unless every PROGRAM is found
    package=$1
    shift
    for program in "$@"; do
        if ! have "$program"; then
            missing="$missing $package"
            return 0
        fi
    done
}
check() {
    missing=""
    need mosquitto mosquitto mosquitto_passwd
    need chromium chromium
    need chromium-driver chromedriver
}

check
[ -z "$missing" ] && exit 0
missing=${missing# }

why="$missing missing (the device-lab tests start a real mosquitto broker, the dashboard tests a real browser)"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$why: install them with your package manager (e.g. brew install mosquitto chromium chromedriver), then run make test again" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "$why and this user cannot install them: run sudo apt-get install -y $missing, then make test again" >&2
    exit 1
fi
echo "installing for the tests: apt-get install -y --no-install-recommends $missing"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086  # one word per package
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
check
[ -z "$missing" ] || { echo "apt-get ran, but${missing} still lack programs in $search" >&2; exit 1; }
