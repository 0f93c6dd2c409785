#!/usr/bin/env bash
# Backup and restore speed, and what a backup costs the clients: starts a
# local cluster (2 groups of 2, 1 coordinator), fills it with ~KEYS keys of
# 100-byte values, backs it up into DIR/backups right after the fill and
# again once the members have applied it, and restores the second backup
# into a second, empty cluster, printing keys/s and MB/s of each; then
# measures 64 writers for DURATION with no backup running and with backups
# running back to back, ROUNDS times alternately, printing their
# throughput and p99. Everything it starts is stopped and DIR's contents
# removed when it exits. Figures on a shared machine are indicative only.
#
# Usage: scripts/backup-bench.sh BIN DIR BASEPORT
#        (env: KEYS=100000, DURATION=15s, ROUNDS=2; ports BASEPORT.. and BASEPORT+100..)
set -euo pipefail
# shellcheck source=scripts/devcluster.sh
source "$(dirname "$0")/devcluster.sh"
bin=$(realpath "${1:?usage: backup-bench.sh BIN DIR BASEPORT}")
dir=${2:?usage: backup-bench.sh BIN DIR BASEPORT}
port=${3:?usage: backup-bench.sh BIN DIR BASEPORT}
keys=${KEYS:-100000}
duration=${DURATION:-15s}
rounds=${ROUNDS:-2}
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
# The first backup starts right after the fill, the second once the
# members have applied it; the restore is of the second.
on src "$bin" admin backup run --to "$dir/backups" -o json >"$dir/burst.json"
on src settle "$bin"
on src "$bin" admin backup run --to "$dir/backups" -o json >"$dir/backup.json"
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$dir/backup.json" | head -1)
on dst "$bin" admin restore --from "$dir/backups/$id" -o json >"$dir/restore.json"
# report LABEL FILE: keys, time, keys/s and MB/s of a backup or restore.
report() {
	local k b t
	k=$(field keys "$2") b=$(field bytes "$2") t=$(field took_ns "$2")
	printf '%-24s %9s keys in %6.2f s: %8s keys/s, %6s MB/s\n' "$1" "$k" "$(awk -v ns="$t" 'BEGIN{print ns/1e9}')" "$(rate "$k" "$t")" "$(mbps "$b" "$t")"
}
report "backup after the fill" "$dir/burst.json"
report backup "$dir/backup.json"
report restore "$dir/restore.json"

echo "== 64 writers for $duration at a time, without and with backups running back to back, $rounds rounds ($(uptime))"
bench() { on src "$bin" bench --clients 64 --duration "$duration" --reads 0 --keys "$keys" --value-size 100 -o json; }
# Windows alternate, so that drift over the run (the data file's growth,
# other work on the machine) falls on both sides.
for r in $(seq 1 "$rounds"); do
	bench >"$dir/idle-$r.json"
	(
		while [ ! -e "$dir/stop" ]; do
			on src "$bin" admin backup run --to "$dir/backups" -o json >>"$dir/loop-$r.out" 2>&1 || true
		done
	) &
	loop=$!
	bench >"$dir/busy-$r.json"
	touch "$dir/stop"
	wait "$loop"
	rm -f "$dir/stop"
	io=$(field ops_per_sec "$dir/idle-$r.json") ip=$(field p99_us "$dir/idle-$r.json")
	bo=$(field ops_per_sec "$dir/busy-$r.json") bp=$(field p99_us "$dir/busy-$r.json")
	printf 'round %d: idle %8.0f puts/s, p99 %6s ms; during backups %8.0f puts/s, p99 %6s ms (%d backups)\n' \
		"$r" "$io" "$(ms "$ip")" "$bo" "$(ms "$bp")" "$(grep -c '"took_ns"' "$dir/loop-$r.out" || true)"
done
# The sums of the windows' rates and p99s, so the ratios weigh every window alike.
sum() { local f t=0; for f in "$dir"/"$1"-*.json; do t=$(awk -v a="$t" -v b="$(field "$2" "$f")" 'BEGIN { print a + b }'); done; echo "$t"; }
awk -v a="$(sum busy ops_per_sec)" -v b="$(sum idle ops_per_sec)" -v p="$(sum busy p99_us)" -v q="$(sum idle p99_us)" \
	'BEGIN { printf "ratio:   %.0f %% of idle throughput, p99 %.1fx\n", 100 * a / b, p / q }'
