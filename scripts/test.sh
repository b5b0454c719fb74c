#!/usr/bin/env bash
# The one test command (README "Quick start"; CI runs it via .ci/run).
# Installs what is missing — the wasm32-wasip2 target, rustfmt/clippy,
# redis-server, curl (the README walkthrough uses it), Chromium with its
# WebDriver (the console's browser tests) and a font for its pages, npm and
# componentize-py (the JavaScript and Python templates' and examples' builds), Pillow (the resize
# quality yardstick), schemathesis (the API fuzzer), pyvips with its
# libvips build (the report's libvips column) — then runs every
# check: formatting, clippy with warnings denied, and every test of the host
# workspace and of the guest crates.
set -euo pipefail
cd "$(dirname "$0")/.."

started_at=$SECONDS
# Each step says when it began, so a slow run shows where the time went.
step() { printf '\n==> %s  [%s, %d min in]\n' "$*" "$(date +%T)" $(((SECONDS - started_at) / 60)); }

# Every test runner's output is also kept here, so the last line can total
# the tests of all runs (host, benches, guests).
results=$(mktemp)
trap 'rm -f "$results"' EXIT
counted() { "$@" 2>&1 | tee -a "$results"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

step "toolchain: wasm32-wasip2 target, rustfmt, clippy"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
installed_components=$(rustup component list --installed)
for component in rustfmt clippy; do
    grep -q "^$component" <<<"$installed_components" || rustup component add "$component"
done

step "redis-server, curl, Chromium with chromedriver, and npm"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
# The JavaScript template's and example's tests install componentize-js with npm.
command -v npm >/dev/null || missing+=(npm)
# The console's tests drive a headless Chromium over WebDriver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
redis-server --version
curl --version | head -1
chromium --version 2>/dev/null
chromedriver --version
echo "node $(node --version), npm $(npm --version)"

step "python3 with Pillow, schemathesis, pyvips and componentize-py"
pip_install() {
    python3 -m pip install --quiet --disable-pip-version-check "$@" \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
python3 -c 'import PIL' 2>/dev/null || pip_install pillow
python3 -c 'import schemathesis' 2>/dev/null || pip_install 'schemathesis>=4.32,<5'
python3 -c 'import PIL; print("Pillow", PIL.__version__)'
python3 -c 'import schemathesis; print("schemathesis", schemathesis.__version__)'
python3 -c 'import pyvips' 2>/dev/null || pip_install pyvips pyvips-binary
python3 -c 'import pyvips; print("libvips %d.%d" % (pyvips.version(0), pyvips.version(1)))'
# The Python template's and example's builds.
command -v componentize-py >/dev/null || pip_install 'componentize-py==0.25.1'
componentize-py --version

step "formatting"
cargo fmt --all --check
(cd functions && cargo fmt --all --check)

step "clippy (host workspace, then guests)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
(cd functions && cargo clippy --release --workspace --locked --target-dir ../target/guests -- -D warnings)

step "tests: host workspace (builds the guest components first)"
counted cargo test --release --workspace --locked

step "schemathesis against a live server and its own /openapi.json (bounded)"
./scripts/schemathesis.sh

# Benches are built by `cargo test` over the whole workspace, as the tests
# were: the same packages selected means the same features resolved, so
# only the bench binaries compile. (`cargo bench -p sluice-bench` resolves
# features for that package alone and rebuilds wasmtime, hyper and the rest,
# about a quarter of an hour on two cores.) `--bench '*'` picks the bench
# targets only (`--benches` would run every library's unit tests again);
# run by `cargo test`, criterion runs each benchmark once as a test.
step "benchmarks compile and run once (criterion's test mode)"
counted cargo test --release --workspace --locked --bench '*'

# The build above left `sluice-bench` (and the tests left `sluice`) in
# target/release; `cargo run -p sluice-bench` would rebuild for the reason above.
step "benchmark report runs end to end (--quick, into a temporary directory)"
report_dir=$(mktemp -d)
target/release/sluice-bench report --quick --out "$report_dir"
test -s "$report_dir/REPORT.md"
rm -rf "$report_dir"

step "tests: guest crates' unit tests, natively"
host_triple=$(rustc -vV | sed -n 's/^host: //p')
counted cargo test --locked --manifest-path functions/Cargo.toml --target "$host_triple" \
    --target-dir target/guests -p sluice-resize -p sluice-meter --lib

step "summary"
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$results"
