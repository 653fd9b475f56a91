#!/usr/bin/env bash
# Install Debian packages for the tests when a command they provide is missing:
#   apt_install.sh COMMAND PACKAGE...
# Idempotent: a COMMAND already on PATH is left alone. `apt-get update` runs only
# when the install fails without it (a fresh machine's package lists may be missing
# or stale). Services the packages ship are kept from starting (a temporary
# policy-rc.d answering 101): the tests run their own servers on free loopback
# ports, and a system one would hold ports (etcd's 2379, prometheus's 9090).
set -euo pipefail

if (($# < 2)); then
    echo "usage: apt_install.sh COMMAND PACKAGE..." >&2
    exit 2
fi
command=$1
shift

if command -v "$command" >/dev/null 2>&1; then
    echo "$command: $(command -v "$command")"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt_install: $command is not on PATH and there is no apt-get; install $* by hand" >&2
    exit 1
fi

sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
        echo "apt_install: need root (or sudo) to install $*" >&2
        exit 1
    }
    sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

echo "apt_install: installing $*"
if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"; then
    echo "apt_install: retrying after apt-get update"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
fi

command -v "$command" >/dev/null 2>&1 || {
    echo "apt_install: $* installed but no $command on PATH" >&2
    exit 1
}
echo "$command: $(command -v "$command")"
