#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need first:
# Mosquitto and its clients (interop tests), paho-mqtt for Python,
# MQTT.js from npm and openssl (third-party client tests).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian's package starts a system broker on 1883; the tests pick their own
# ports and never need it.
if command -v systemctl >/dev/null 2>&1; then as_root systemctl stop mosquitto >/dev/null 2>&1 || true; fi

if ! python3 -c 'import paho.mqtt' >/dev/null 2>&1; then
    echo "installing: paho-mqtt"
    python3 -m pip install -q 'paho-mqtt>=2,<3' || python3 -m pip install -q --break-system-packages 'paho-mqtt>=2,<3'
fi

# MQTT.js for the scripts in tests/js (tests/third_party_js.rs and
# broker/tests/security_mqttjs.rs), from the committed lock file; again only
# when node_modules is missing or older than package.json or the lock file
# (npm writes node_modules/.package-lock.json on every install).
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is required for the MQTT.js tests (Node.js 18 or later with npm), and apt-get did not install it" >&2
        exit 1
    fi
done
js_stamp=tests/js/node_modules/.package-lock.json
if [ ! -f "$js_stamp" ] || [ tests/js/package-lock.json -nt "$js_stamp" ] || [ tests/js/package.json -nt "$js_stamp" ]; then
    echo "installing: MQTT.js (npm ci --prefix tests/js)"
    npm ci --prefix tests/js --no-audit --no-fund
fi

# The integration tests run the `midge`, `midge-pub` and `midge-sub`
# binaries as subprocesses, so build them before the tests start.
cargo build --workspace --bins
cargo test --workspace "$@"
# The Dockerfile's two build steps, run as written: a release build from
# scratch in a temporary directory, so it runs alone, after the rest.
cargo test -p midge-broker --test ops_docker -- --ignored both_build_steps_run_as_written
