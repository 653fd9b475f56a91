#!/usr/bin/env bash
# Debian's chromium and chromium-driver, for the trace UI's browser tests
# (tests/ui, `make test`): Selenium drives the system chromedriver. Idempotent:
# both already on PATH are left alone. `apt-get update` runs only when the
# install fails without it (a fresh machine's package lists may be missing or stale).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: chromium and chromedriver are not on PATH and there is no apt-get;" \
        "install Chromium and its driver by hand" >&2
    exit 1
fi

sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
        echo "install_browser: need root (or sudo) to install chromium" >&2
        exit 1
    }
    sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_browser: installing chromium and chromium-driver"
if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver; then
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver
fi
echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
