#!/usr/bin/env bash
# Backup and restore speed, and what a backup costs the clients: starts a
# local cluster (2 groups of 2, 1 coordinator), fills it with ~KEYS keys of
# 100-byte values, backs it up into DIR/backups and restores the backup
# into a second, empty cluster, printing keys/s and MB/s of both; then
# measures 64 writers for DURATION with no backup running and with backups
# running back to back, printing their throughput and p99. Everything it
# starts is stopped and DIR's contents removed when it exits. Figures on a
# shared machine are indicative only.
#
# Usage: scripts/backup-bench.sh BIN DIR BASEPORT
#        (env: KEYS=100000, DURATION=15s; ports BASEPORT.. and BASEPORT+100..)
set -euo pipefail
# shellcheck source=scripts/devcluster.sh
source "$(dirname "$0")/devcluster.sh"
bin=$(realpath "${1:?usage: backup-bench.sh BIN DIR BASEPORT}")
dir=${2:?usage: backup-bench.sh BIN DIR BASEPORT}
port=${3:?usage: backup-bench.sh BIN DIR BASEPORT}
keys=${KEYS:-100000}
duration=${DURATION:-15s}
mkdir -p "$dir"
dir=$(realpath "$dir")

pids=()
cleanup() {
	stop_all "${pids[@]}"
	rm -rf "${dir:?}/src" "$dir/dst" "$dir/backups" "$dir"/*.json "$dir"/*.out
}
trap cleanup EXIT

# up NAME PORT: starts a cluster in DIR/NAME; its settings land in DIR/NAME/ready.
up() {
	mkdir -p "$dir/$1"
	"$bin" dev --dir "$dir/$1/cluster" --groups 2 --replicas 2 --coords 1 --base-port "$2" \
		--ready-file "$dir/$1/ready" >"$dir/$1/dev.out" 2>"$dir/$1/dev.log" &
	pids+=($!)
	for _ in $(seq 1 600); do
		[ -s "$dir/$1/ready" ] && return 0
		kill -0 "${pids[-1]}" 2>/dev/null || { tail -20 "$dir/$1/dev.log"; echo "cluster $1 failed to start" >&2; exit 1; }
		sleep 0.1
	done
	echo "cluster $1 did not come up within 60s" >&2
	exit 1
}

# on NAME CMD...: runs CMD with cluster NAME's settings.
on() { (
	# shellcheck disable=SC1090
	source "$dir/$1/ready"
	shift
	"$@"
); }

# field NAME FILE: a number from a command's JSON output.
field() { sed -n "s/.*\"$1\": *\([0-9.e+]*\).*/\1/p" "$2" | head -1; }
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.0f", n / (ns / 1e9) }'; }
mbps() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.1f", n / (ns / 1e9) / 1e6 }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }

up src "$port"
up dst $((port + 100))
mkdir -p "$dir/backups"
echo "== filling: $((keys * 4)) puts of 100-byte values over $keys keys"
on src "$bin" bench --clients 64 --ops $((keys * 4)) --reads 0 --keys "$keys" --value-size 100 -o json >"$dir/fill.json"

echo "== backup and restore ($(uptime))"
on src "$bin" admin backup run --to "$dir/backups" -o json >"$dir/backup.json"
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$dir/backup.json" | head -1)
on dst "$bin" admin restore --from "$dir/backups/$id" -o json >"$dir/restore.json"
bk=$(field keys "$dir/backup.json") bb=$(field bytes "$dir/backup.json") bt=$(field took_ns "$dir/backup.json")
rk=$(field keys "$dir/restore.json") rb=$(field bytes "$dir/restore.json") rt=$(field took_ns "$dir/restore.json")
printf '%-8s %9s keys in %6.2f s: %8s keys/s, %6s MB/s\n' backup "$bk" "$(awk -v ns="$bt" 'BEGIN{print ns/1e9}')" "$(rate "$bk" "$bt")" "$(mbps "$bb" "$bt")"
printf '%-8s %9s keys in %6.2f s: %8s keys/s, %6s MB/s\n' restore "$rk" "$(awk -v ns="$rt" 'BEGIN{print ns/1e9}')" "$(rate "$rk" "$rt")" "$(mbps "$rb" "$rt")"

echo "== 64 writers for $duration, without and with backups running back to back ($(uptime))"
bench() { on src "$bin" bench --clients 64 --duration "$duration" --reads 0 --keys "$keys" --value-size 100 -o json; }
bench >"$dir/idle.json"
(
	while [ ! -e "$dir/stop" ]; do
		on src "$bin" admin backup run --to "$dir/backups" -o json >>"$dir/loop.out" 2>&1 || true
	done
) &
loop=$!
bench >"$dir/busy.json"
touch "$dir/stop"
wait "$loop"
rm -f "$dir/stop"
io=$(field ops_per_sec "$dir/idle.json") ip=$(field p99_us "$dir/idle.json")
bo=$(field ops_per_sec "$dir/busy.json") bp=$(field p99_us "$dir/busy.json")
runs=$(grep -c '"took_ns"' "$dir/loop.out" || true)
printf 'idle:           %8.0f puts/s, p99 %6s ms\n' "$io" "$(ms "$ip")"
printf 'during backups: %8.0f puts/s, p99 %6s ms (%d backups)\n' "$bo" "$(ms "$bp")" "$runs"
awk -v a="$bo" -v b="$io" -v p="$bp" -v q="$ip" 'BEGIN { printf "ratio:          %.0f %% of idle throughput, p99 %.1fx\n", 100 * a / b, p / q }'
