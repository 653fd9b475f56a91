#!/usr/bin/env bash
# etcd for the control plane's store tests (tests/control, `make test`): Debian's
# etcd-server package. Idempotent: an `etcd` already on PATH is left alone.
# `apt-get update` runs only when the install fails without it (a fresh
# machine's package lists may be missing or stale).
# The system etcd service is not used: the tests run their own etcd on free
# loopback ports with a temporary data dir, so the package's maintainer
# scripts are kept from starting one (it would hold ports 2379/2380).
set -euo pipefail

if command -v etcd >/dev/null 2>&1; then
    echo "etcd: $(etcd --version 2>/dev/null | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_etcd: etcd is not on PATH and there is no apt-get; install etcd 3.4+ by hand" >&2
    exit 1
fi

sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
        echo "install_etcd: need root (or sudo) to install etcd-server" >&2
        exit 1
    }
    sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# A temporary policy-rc.d answering 101 ("action forbidden"), only if none exists.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

echo "install_etcd: installing etcd-server"
if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends etcd-server; then
    echo "install_etcd: retrying after apt-get update"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends etcd-server
fi

command -v etcd >/dev/null 2>&1 || {
    echo "install_etcd: etcd-server installed but no etcd on PATH" >&2
    exit 1
}
echo "etcd: $(etcd --version 2>/dev/null | head -n 1)"
