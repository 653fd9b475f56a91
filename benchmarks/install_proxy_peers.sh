#!/usr/bin/env bash
# Peers of benchmarks/proxy_throughput.py (make bench-proxy): nginx, HAProxy, wrk
# and taskset (to pin wrk and the servers to CPUs), and for the egress row hey
# (a load generator that can CONNECT through an HTTP proxy: wrk cannot), curl
# (the 64 MiB body through a tunnel) and openssl (the external host's
# self-signed certificate), Debian's packages. Caddy
# comes from PyPI (benchmarks/requirements-proxy.txt). Idempotent: a tool already
# on PATH is left alone, and `apt-get update` runs only when an install fails
# without it (scripts/apt_install.sh).
# The system nginx/haproxy services are not used: the benchmark runs its own
# instances as child processes, with their own configs, pid files and logs.
set -euo pipefail

declare -A package=(
    [nginx]=nginx [haproxy]=haproxy [wrk]=wrk [taskset]=util-linux
    [hey]=hey [curl]=curl [openssl]=openssl
)
# one apt_install.sh call per missing tool (it skips the present ones, keeps the
# packages' services from starting, and runs `apt-get update` only when needed)
for tool in nginx haproxy wrk taskset hey curl openssl; do
    bash "$(dirname "$0")/../scripts/apt_install.sh" "$tool" "${package[$tool]}" >/dev/null
done

echo "nginx:   $(nginx -v 2>&1 | sed 's/^nginx version: //')"
echo "haproxy: $(haproxy -v 2>&1 | head -n 1)"
echo "wrk:     $(wrk -v 2>&1 | head -n 1)"
# hey has no version flag: the package's version, if dpkg knows it
echo "hey:     $(dpkg-query -W -f='${Version}' hey 2>/dev/null || command -v hey)"
echo "curl:    $(curl --version | head -n 1)"
echo "openssl: $(openssl version)"
