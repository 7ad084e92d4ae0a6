#!/usr/bin/env bash
# Midge against Mosquitto, side by side: the table of issue 6.
#
#   benches/compare.sh [--quick] [--out DIR] [--only REGEX] [--brokers "mosquitto midge"]
#                      [--no-sweep] [--no-build]
#
# Every case runs on a fresh broker pinned to core 0 (taskset -c 0) and
# midge-bench, one thread, pinned to core 1, over loopback with 64-byte
# payloads. Both brokers run with the same window: 100 QoS 1/2 messages in
# flight per client (midge's default; Mosquitto's is 20, so it is given
# `max_inflight_messages 100`) and 1,000 queued per client (both brokers'
# default); they log warnings only and neither writes anything to disk
# (Mosquitto `persistence false`, Midge `[persistence] enabled = false`).
# Mosquitto runs first, so ratios read midge/mosquitto.
#
# Writes, in DIR (default target/bench-compare):
#   results.jsonl  one `midge-bench --json` report per run
#   results.json   the same as one JSON array
#   table.txt      the side-by-side table (also printed)
#   chart.svg      fan-out deliveries/s against subscriber count
#   logs/          each run's progress lines and each broker's output
#
# --quick: 2 s per case after a 0.5 s warm-up (default 10 s after 2 s).
# --only REGEX: only the cases whose name matches.
# --no-sweep: skip the extra fan-out sizes drawn in the chart.
# Environment: MOSQUITTO (default /usr/sbin/mosquitto), PORT (first port,
# default 18900).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 out=target/bench-compare only='' brokers="mosquitto midge" sweep=1 build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --out) out=$2; shift ;;
        --only) only=$2; shift ;;
        --brokers) brokers=$2; shift ;;
        --no-sweep) sweep=0 ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$quick" = 1 ]; then
    load=(-d 2 -w 0.5); hold=1
else
    load=(-d 10 -w 2); hold=3
fi
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
port=${PORT:-18900}
bench=target/release/midge-bench
midge=target/release/midge

if [ "$build" = 1 ]; then
    cargo build --release -p midge-broker --bin midge -p midge-client --bin midge-bench
fi
if [[ " $brokers " == *" mosquitto "* ]] && [ ! -x "$mosquitto" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y mosquitto >/dev/null
    else
        echo "compare.sh: $mosquitto not found; install mosquitto or set MOSQUITTO" >&2
        exit 1
    fi
fi
# Ten thousand connections need as many descriptors, on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$out/logs"
results=$out/results.jsonl
: > "$results"
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r), loopback; load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "machine: $machine"

broker_pid=''

# start_broker NAME PORT LOG: starts a fresh broker on core 0, sets broker_pid.
start_broker() {
    local name=$1 p=$2 log=$3 conf
    case "$name" in
        mosquitto)
            conf=$out/mosquitto-$p.conf
            printf '%s\n' "listener $p 127.0.0.1" 'allow_anonymous true' \
                'log_dest stderr' 'log_type error' 'log_type warning' \
                'connection_messages false' 'persistence false' \
                'max_inflight_messages 100' > "$conf"
            taskset -c 0 "$mosquitto" -c "$conf" > "$log" 2>&1 &
            ;;
        midge)
            conf=$out/midge-$p.toml
            printf '%s\n' '[[listeners]]' "bind = \"127.0.0.1:$p\"" '[log]' 'level = "warn"' \
                '[persistence]' 'enabled = false' > "$conf"
            taskset -c 0 "$midge" --config "$conf" > "$log" 2>&1 &
            ;;
        *) echo "compare.sh: unknown broker $name" >&2; exit 2 ;;
    esac
    broker_pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "compare.sh: $name did not listen on port $p; see $log" >&2
    stop_broker
    return 1
}

stop_broker() {
    [ -n "$broker_pid" ] || return 0
    kill -TERM "$broker_pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=''
}
trap stop_broker EXIT

# run_case NAME GOAL MIDGE-BENCH-ARGS...: the case on each broker, $repeat
# times (default 1), the brokers taking turns; the table shows each
# broker's median run.
run_case() {
    local name=$1 goal=$2 b line r log
    shift 2
    if [ -n "$only" ] && ! [[ "$name" =~ $only ]]; then
        return 0
    fi
    for r in $(seq "${repeat:-1}"); do
        for b in $brokers; do
            port=$((port + 1))
            log=$out/logs/$name-$b$([ "${repeat:-1}" = 1 ] || echo "-$r")
            start_broker "$b" "$port" "$log.broker.log" || continue
            if line=$(taskset -c 1 "$bench" "$@" -p "$port" --broker-pid "$broker_pid" \
                --label "$b" --case "$name" --goal "$goal" --json 2> "$log.log"); then
                echo "$line" >> "$results"
                echo "$name on $b: done"
            else
                echo "$name on $b: FAILED, see $log.log" >&2
            fi
            stop_broker
        done
    done
}

# The table of issue 6. Rows that name no QoS run at QoS 0.
run_case fanout-100-q0 '>= 5.5M (16x Mosquitto)' fanout -n 100 -q 0 -o 10000 "${load[@]}"
run_case fanout-100-q1 '>= 3.4M (15x)' fanout -n 100 -q 1 -o 10000 "${load[@]}"
run_case fanout-1000-q1 '>= 1.0M (8x)' fanout -n 1000 -q 1 -o 10000 "${load[@]}"
# A p99 at a low rate moves by tens of percent from run to run on a shared
# machine (for either broker): several runs each, the median shown; five
# for the pairs, whose two brokers are within that noise of each other.
repeat=3 run_case fanout-1000-50hz 'p99 <= Mosquitto' fanout -n 1000 -q 0 -r 50 "${load[@]}"
repeat=5 run_case p2p-1000-q1-1hz 'p99 <= Mosquitto' p2p --pairs 1000 -q 1 -r 1 "${load[@]}"
run_case fanin-100-overload '>= Mosquitto, RSS <= 64 MB, 0 disconnects' \
    fanin -P 100 -q 0 -o 0 "${load[@]}"
# A burst lasts a third of a second: its CONNACK p99 is a handful of slow
# connects, and one stall on the machine moves it (5 ms to 27 ms seen for
# either broker): three runs each, the median shown.
repeat=3 run_case conns-10000 '>= 30k/s, p99 <= 25 ms, <= 2 KB/conn' \
    conns -n 10000 --hold "$hold" --connect-concurrency 100

# More fan-out sizes for the chart, at the depth of the 1 -> 100 case: 100
# deliveries outstanding per subscriber. (10,000 shared by one to ten
# subscribers would fill the 1,000-message queue both brokers keep per
# client as soon as one subscriber lags, and measure drops.)
if [ "$sweep" = 1 ]; then
    for n in 1 10 1000; do
        run_case "sweep-fanout-$n-q0" '' fanout -n "$n" -q 0 -o $((n < 100 ? n * 100 : 10000)) "${load[@]}"
    done
    for n in 1 10; do
        run_case "sweep-fanout-$n-q1" '' fanout -n "$n" -q 1 -o $((n * 100)) "${load[@]}"
    done
fi

{ echo '['; paste -sd, "$results"; echo ']'; } > "$out/results.json"
echo
echo "machine: $machine"
baseline=()
[[ " $brokers " == *" mosquitto "* ]] && baseline=(--baseline mosquitto)
"$bench" table "$results" "${baseline[@]}" | tee "$out/table.txt"
"$bench" chart "$results" "$out/chart.svg" --note "$machine" || true
echo "results: $out/results.json, $out/table.txt, $out/chart.svg"
