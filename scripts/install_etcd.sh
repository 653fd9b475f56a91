#!/usr/bin/env bash
# etcd for the control plane's store tests (tests/control, `make test`): Debian's
# etcd-server package (see apt_install.sh). The system etcd service is not used:
# the tests run their own etcd on free loopback ports with a temporary data dir.
set -euo pipefail
bash "$(dirname "$0")/apt_install.sh" etcd etcd-server
echo "etcd: $(etcd --version 2>/dev/null | head -n 1)"
