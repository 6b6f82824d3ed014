#!/usr/bin/env bash
# Installs the independent MQTT clients that tests/interop.rs drives:
#   - mosquitto_pub / mosquitto_sub   (Debian: mosquitto-clients)
#   - mosquitto, mosquitto_passwd     (Debian: mosquitto; tests/acl_mosquitto.rs, tests/passwd_mosquitto.rs)
#   - headless Chromium               (Debian: chromium)
#   - Node.js + npm                   (Debian: nodejs npm, only if missing)
#   - Python paho-mqtt 2.x            (PyPI: paho-mqtt)
#   - MQTT.js 5                       (npm: mqtt, pinned by package-lock.json, into tests/interop/node_modules)
# Idempotent, and fast (no network) when everything is already present.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif have sudo; then sudo "$@"; else
        echo "install-deps.sh: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

apt_pkgs=()
have mosquitto_pub && have mosquitto_sub || apt_pkgs+=(mosquitto-clients)
[ -x /usr/sbin/mosquitto ] && [ -x /usr/bin/mosquitto_passwd ] || apt_pkgs+=(mosquitto)
[ -x /usr/bin/chromium ] || have chromium || apt_pkgs+=(chromium)
have python3 || apt_pkgs+=(python3 python3-pip)
have node || apt_pkgs+=(nodejs)
have npm || apt_pkgs+=(npm)

if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    echo "install-deps.sh: apt-get install ${apt_pkgs[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Try without refreshing the package lists first; update only when that fails.
    if ! as_root apt-get install -y --no-install-recommends "${apt_pkgs[@]}"; then
        as_root apt-get update
        as_root apt-get install -y --no-install-recommends "${apt_pkgs[@]}"
    fi
fi

if ! python3 -c 'import paho.mqtt.client as m; assert hasattr(m, "CallbackAPIVersion")' 2>/dev/null; then
    echo "install-deps.sh: pip install paho-mqtt 2.x" >&2
    have pip3 || python3 -m pip --version >/dev/null 2>&1 || {
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get install -y --no-install-recommends python3-pip ||
            { as_root apt-get update && as_root apt-get install -y --no-install-recommends python3-pip; }
    }
    python3 -m pip install --quiet 'paho-mqtt>=2,<3' ||
        python3 -m pip install --quiet --break-system-packages 'paho-mqtt>=2,<3'
fi

if [ ! -f "$here/node_modules/mqtt/dist/mqtt.min.js" ]; then
    echo "install-deps.sh: npm install (tests/interop)" >&2
    cd "$here"
    if [ -f package-lock.json ]; then
        npm ci --no-audit --no-fund --loglevel=error
    else
        npm install --no-audit --no-fund --loglevel=error
    fi
fi
