#!/usr/bin/env bash
# Instructions per operation, counted by valgrind's callgrind on a real `gatehouse serve`:
# repeatable for the same binary and inputs whatever else the machine is doing, so two builds
# can be compared on a busy machine, where wall-clock rates cannot.
#
#   benches/instructions.sh [gatehouse-binary ...]     (default: the release build)
#
# For each binary: a node under callgrind with instrumentation off, 100 warm-up operations,
# then instrumentation on for N operations and, separately, 2N; the difference divided by N
# is the cost of one operation, with start-up, the warm-up and the re-auth generator's one
# password login (an argon2id hash, same cost in both runs) cancelled out.
#
# Knobs (environment):
#   MODE=reauth          reauth: GET /authorize from the SSO session + POST /token (code);
#                        cc: POST /token client_credentials
#   OPS=200              N
#   ALG=ES256
#   SKIP_BUILD=1         use the binaries the last build left in $CARGO_TARGET_DIR (or target/)
#
# Only 127.0.0.1 traffic; every node started here is stopped on exit.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MODE=${MODE:-reauth}
OPS=${OPS:-200}
ALG=${ALG:-ES256}

for tool in valgrind callgrind_control callgrind_annotate curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install valgrind curl)" >&2; exit 1; }
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --locked --release --bin gatehouse >&2
    cargo bench --locked --no-run --bench flows >&2
fi
FLOWS_BIN=$(ls -t "$TARGET_DIR"/release/deps/flows-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
[[ -x $FLOWS_BIN ]] || { echo "no flows bench binary in $TARGET_DIR (build without SKIP_BUILD)" >&2; exit 1; }
BINARIES=("$@")
((${#BINARIES[@]})) || BINARIES=("$TARGET_DIR/release/gatehouse")

WORK=$(mktemp -d /tmp/gatehouse-instr.XXXXXX)
NODE_PID=""
cleanup() {
    if [[ -n $NODE_PID ]]; then kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

load() { # ops
    if [[ $MODE == reauth ]]; then
        "$FLOWS_BIN" --base "$BASE" --client web --secret "$WEB_SECRET" --redirect "$REDIRECT" \
            --username "$USERNAME" --password "$PASSWORD" --mode reauth --seconds 3600 --warmup 0 \
            --reauth-concurrency 1 --max-ops "$1" >"$WORK/flows.txt" 2>&1
        grep -q " errors=0" "$WORK/flows.txt" || { cat "$WORK/flows.txt" >&2; return 1; }
    else
        local i
        : >"$WORK/curl.cfg"
        for ((i = 0; i < $1; i++)); do
            ((i == 0)) || printf 'next\n' >>"$WORK/curl.cfg"
            printf 'url = "%s/token"\ndata = "grant_type=client_credentials&client_id=bench&client_secret=%s"\nwrite-out = "%%{http_code}\\n"\noutput = /dev/null\n' \
                "$BASE" "$CC_SECRET" >>"$WORK/curl.cfg"
        done
        [[ $(curl -s -K "$WORK/curl.cfg" | grep -cx 200) == "$1" ]] || { echo "a request failed" >&2; return 1; }
    fi
}

measure() { # binary ops -> instructions
    local bin=$1 ops=$2 dir i
    dir=$(mktemp -d "$WORK/node.XXXX")
    PORT=$((20000 + RANDOM % 20000))
    while port_busy "$PORT"; do PORT=$((PORT + 1)); done
    BASE="http://127.0.0.1:$PORT"
    GATEHOUSE=$bin
    # shellcheck source=benches/lib/node-config.sh
    source "$ROOT/benches/lib/node-config.sh"
    write_config "$ALG" "$dir"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
        "$bin" serve --config "$dir/gatehouse.toml" --workers 1 >"$dir/node.log" 2>&1 &
    NODE_PID=$!
    for ((i = 0; i < 600; i++)); do
        curl -sf "$BASE/healthz" >/dev/null && break
        kill -0 "$NODE_PID" 2>/dev/null || { cat "$dir/node.log" >&2; return 1; }
        sleep 0.1
    done
    load 100 || return 1
    callgrind_control -i on "$NODE_PID" >/dev/null
    load "$ops" || return 1
    callgrind_control -d "$NODE_PID" >/dev/null
    kill "$NODE_PID"
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
    callgrind_annotate "$dir/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}'
}

echo "| binary | mode | instructions for $OPS ops | for $((2 * OPS)) ops | per operation |"
echo "|---|---|---:|---:|---:|"
for bin in "${BINARIES[@]}"; do
    one=$(measure "$bin" "$OPS")
    two=$(measure "$bin" $((2 * OPS)))
    echo "| $bin | $MODE | $one | $two | $(((two - one) / OPS)) |"
done
