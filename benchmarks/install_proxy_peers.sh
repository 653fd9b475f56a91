#!/usr/bin/env bash
# Peers of benchmarks/proxy_throughput.py (make bench-proxy): nginx, HAProxy, wrk
# and taskset (to pin wrk and the servers to CPUs), and for the egress row hey
# (a load generator that can CONNECT through an HTTP proxy: wrk cannot), curl
# (the 64 MiB body through a tunnel) and openssl (the external host's
# self-signed certificate), Debian's packages. Caddy
# comes from PyPI (benchmarks/requirements-proxy.txt). Idempotent: a tool already
# on PATH is left alone, and `apt-get update` runs once, only when something has
# to be installed.
# The system nginx/haproxy services are not used: the benchmark runs its own
# instances as child processes, with their own configs, pid files and logs.
set -euo pipefail

declare -A package=(
    [nginx]=nginx [haproxy]=haproxy [wrk]=wrk [taskset]=util-linux
    [hey]=hey [curl]=curl [openssl]=openssl
)
missing=()
for tool in nginx haproxy wrk taskset hey curl openssl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package[$tool]}")
done

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_proxy_peers: missing ${missing[*]} and no apt-get; install them by hand" >&2
        exit 1
    fi
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || {
            echo "install_proxy_peers: need root (or sudo) to install ${missing[*]}" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "install_proxy_peers: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting system nginx/haproxy
    # services (port 80 and spare workers competing for CPU): a temporary
    # policy-rc.d answering 101 ("action forbidden"), only if none exists.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        trap '"${sudo[@]}" rm -f "$policy"' EXIT
    fi
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

echo "nginx:   $(nginx -v 2>&1 | sed 's/^nginx version: //')"
echo "haproxy: $(haproxy -v 2>&1 | head -n 1)"
echo "wrk:     $(wrk -v 2>&1 | head -n 1)"
# hey has no version flag: the package's version, if dpkg knows it
echo "hey:     $(dpkg-query -W -f='${Version}' hey 2>/dev/null || command -v hey)"
echo "curl:    $(curl --version | head -n 1)"
echo "openssl: $(openssl version)"
