#!/bin/sh
# Install the Debian packages the tests and benchmarks use, if any is missing.
# `--build`: the compilers pip needs to build llama-cpp-python (make run and make test).
# With other arguments, install exactly those packages. Needs root (or sudo).
set -eu

if [ "${1:-}" = "--build" ]; then
    # What `pip install` needs to build llama-cpp-python from source (no wheel for Linux
    # on PyPI): a C/C++ compiler and CMake (pip fetches CMake/Ninja wheels if absent, but
    # the system ones are faster and work offline from PyPI's CDN).
    wanted=""
    command -v c++ >/dev/null 2>&1 || wanted="$wanted build-essential"
    command -v cmake >/dev/null 2>&1 || wanted="$wanted cmake"
    command -v ninja >/dev/null 2>&1 || wanted="$wanted ninja-build"
elif [ "$#" -gt 0 ]; then
    wanted=" $*"
else
    wanted=""
    command -v skopeo >/dev/null 2>&1 || wanted="$wanted skopeo"
    command -v docker-registry >/dev/null 2>&1 || wanted="$wanted docker-registry"
    command -v wrk >/dev/null 2>&1 || wanted="$wanted wrk"
    command -v curl >/dev/null 2>&1 || wanted="$wanted curl"
    # The backup and restore procedure the README documents (tests/deploy/test_backup.py).
    command -v rclone >/dev/null 2>&1 || wanted="$wanted rclone"
    command -v sqlite3 >/dev/null 2>&1 || wanted="$wanted sqlite3"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || wanted="$wanted postgresql"
    # Build the Dockerfile's image and run compose.yaml's services from it without a Docker
    # engine, on a locally made Debian base (tests/deploy/test_compose_up.py).
    command -v buildah >/dev/null 2>&1 || wanted="$wanted buildah"
    command -v debootstrap >/dev/null 2>&1 || wanted="$wanted debootstrap"
    # The web interface's tests drive it in a real headless browser (tests/web).
    command -v chromium >/dev/null 2>&1 || wanted="$wanted chromium"
fi
[ -n "$wanted" ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "system-deps: need root to install:$wanted" >&2; exit 1
    fi
else
    SUDO=""
fi
echo "system-deps: installing$wanted"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $wanted >/dev/null
