#!/usr/bin/env bash
# Slot migration speed, hand-over pauses, and what migrations cost the
# writers: starts a local cluster (2 groups of 2 data nodes, 1 coordinator,
# SLOTS slots), fills it with VALUE-byte values (KEYS puts over a space of
# KEYS keys: ~63% of them distinct), starts a third group of 2 (owning no
# slots), measures 16 writers with nothing moving, rebalances onto it and
# drains it QUIET times without writers, each time once every member
# applied its log, then again and again with the writers running until
# HANDOVERS more migrations have switched. Few slots make each migration
# large (~1/6 of the keys: with the defaults ~160,000), so that the copy
# itself is timed, not the fixed costs around it. It prints per migration
# the copy speed: the keys and bytes the target imported (the history) over
# the time from "migration: started" to the first "target caught up" (the
# coordinator's log: the drop, the snapshot and the log tail up to the
# hold), with the first rebalance's copies apart (a new group's first
# writes take memory its VM may be slow to supply: docs/migration.md,
# "December 4, evening"); the holds' durations ("hold ended ... held=" of
# the source primaries, released holds included); and the writers'
# throughput and p99 while migrations run against idle: 8 writers over
# every slot, moving ones included (their p99 includes the holds), in
# DURATION chunks, and 8 over the slots the plan never moves (what a
# rebalance costs the others), in DURATION chunks idle and for each
# round's length while migrating, so that their p99 is the round's: a
# rebalance onto g3 (the sources pay) or a drain of g3 (the targets, which
# serve those writers, import). The latter also report every second
# (--report-interval 1s).
# It works in a new directory under DIR; everything it starts is stopped
# and that directory removed when it exits (KEEP=1 keeps it, with the logs). PPROF=1 starts every daemon with --enable-pprof
# (profiles on their http addresses, listed in DIR/dev.out). Figures on a
# shared machine are indicative only.
#
# Usage: scripts/migration-bench.sh BIN DIR BASEPORT
#        (env: KEYS=1500000, SLOTS=128, HANDOVERS=100, VALUE=100, DURATION=10s, QUIET=1,
#         KEEP=, PPROF=; ports BASEPORT..BASEPORT+99)
set -euo pipefail
# shellcheck source=scripts/devcluster.sh
source "$(dirname "$0")/devcluster.sh"
usage="usage: migration-bench.sh BIN DIR BASEPORT"
bin=$(realpath "${1:?$usage}")
dir=${2:?$usage}
port=${3:?$usage}
keys=${KEYS:-1500000}
slots=${SLOTS:-128}
handovers=${HANDOVERS:-100}
quiet_pairs=${QUIET:-1}
[[ $quiet_pairs =~ ^[0-9]+$ ]] || { echo "QUIET=$quiet_pairs: want a number of rounds, 0 or more" >&2; exit 2; }
value=${VALUE:-100}
duration=${DURATION:-10s}
mkdir -p "$dir"
dir=$(mktemp -d "$(realpath "$dir")/migration-bench.XXXXXX") # removed at exit: never DIR itself
if [ -n "${PPROF:-}" ]; then
	export THUNDER_ENABLE_PPROF=true # the daemons inherit it; the other commands have no such flag
fi

# stop_others [FILE]: ends the other slots' writers started as FILE (all
# of them without FILE) with SIGTERM, which makes bench print what ran.
stop_others() {
	local f
	for _ in $(seq 1 50); do # FILE's writers may not have started yet
		[ -z "${1:-}" ] || [ -e "$dir/$1.pid" ] || [ -e "$dir/$1.end" ] && break
		sleep 0.1
	done
	local which="*"
	[ -z "${1:-}" ] || which=$1
	for f in "$dir"/$which.pid; do # which: a file name or *, no spaces
		[ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
	done
}
pids=()
cleanup() {
	touch "$dir/stop"
	stop_others
	[ -z "${round_others:-}" ] || wait "$round_others" 2>/dev/null || true
	stop_all "${pids[@]}"
	if [ -z "${KEEP:-}" ]; then
		rm -rf "${dir:?}"
	else
		echo "kept $dir"
	fi
}
trap cleanup EXIT

"$bin" dev --dir "$dir/cluster" --groups 2 --replicas 2 --coords 1 --slots "$slots" --base-port "$port" \
	--ready-file "$dir/ready" >"$dir/dev.out" 2>"$dir/dev.log" &
pids+=($!)
for _ in $(seq 1 600); do
	[ -s "$dir/ready" ] && break
	kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$dir/dev.log"; echo "the cluster failed to start" >&2; exit 1; }
	sleep 0.1
done
[ -s "$dir/ready" ] || { echo "the cluster did not come up within 60s" >&2; exit 1; }
# shellcheck disable=SC1091
source "$dir/ready"

# field NAME FILE: the first number NAME has in a command's JSON output.
field() { sed -n "s/.*\"$1\": *\([0-9.e+]*\).*/\1/p" "$2" | head -1; }
# handed: how many migrations switched so far (one line each in the coordinator's log).
handed() { cat "$dir"/cluster/logs/coord-*.log | grep -c 'migration: hand-over' || true; }

echo "== filling: $keys puts of $value-byte values over $keys keys ($(uptime))"
"$bin" bench --clients 64 --ops "$keys" --reads 0 --keys "$keys" --value-size "$value" -o json >"$dir/fill.json"
echo "   $(field ops_per_sec "$dir/fill.json") puts/s"

echo "== a third group of 2 joins"
for i in 1 2; do
	"$bin" serve data --group g3 --dir "$dir/g3-$i" --listen "127.0.0.1:$((port + 80 + i))" \
		--http "127.0.0.1:$((port + 90 + i))" >"$dir/g3-$i.log" 2>&1 &
	pids+=($!)
	echo "   data-g3-$i http 127.0.0.1:$((port + 90 + i))" >>"$dir/dev.out"
done
for _ in $(seq 1 300); do
	"$bin" admin rebalance --dry-run -o json >"$dir/plan.json" 2>/dev/null && grep -q '"to": *"g3"' "$dir/plan.json" && break
	sleep 0.2
done
# stay: the slots the plan does not move, as ranges (every rebalance and
# drain of the run moves the same ones).
stay=$(tr -d ' \n' <"$dir/plan.json" | grep -o '"slots":{"from":[0-9]*,"to":[0-9]*}' | sed 's/[^0-9]/ /g' |
	awk -v n="$slots" '{ for (s = $1; s <= $2; s++) moving[s] = 1 }
		END {
			for (s = 0; s <= n; s++) {
				if (s < n && !(s in moving)) { if (first == "") first = s; continue }
				if (first != "") { out = out sep (first == s - 1 ? first : first "-" (s - 1)); sep = ","; first = "" }
			}
			print out
		}')
[ -n "$stay" ] || { echo "the plan moves every slot: $(cat "$dir/plan.json")" >&2; exit 1; }
echo "   slots the plan never moves: $stay"

# all FILE: DURATION of 8 writers over all keys.
all() {
	"$bin" bench --clients 8 --duration "$duration" --reads 0 --keys "$keys" --value-size "$value" -o json \
		>"$dir/$1.json" 2>>"$dir/writers.log"
}
# writers: the writers over all keys in DURATION chunks until DIR/stop
# exists; while they run, each round brings the other slots' writers.
writers() {
	local i=0
	while [ ! -e "$dir/stop" ]; do
		i=$((i + 1))
		all "busy-all-$i" || true
	done
}
# other FILE [DURATION]: 8 writers over the keys of the slots that never
# move, for DURATION (default: until stop_others, 10 minutes at most), per
# second too.
other() {
	"$bin" bench --clients 8 --duration "${2:-10m}" --reads 0 --keys "$keys" --value-size "$value" --key-slots "$stay" \
		--report-interval 1s -o json >"$dir/$1.json" 2>>"$dir/writers.log" &
	echo $! >"$dir/$1.pid.new" && mv "$dir/$1.pid.new" "$dir/$1.pid" # never read half written
	wait $! || true
	date +%s.%N >"$dir/$1.end" # the run's start: this less its elapsed_seconds
	rm -f "$dir/$1.pid"
}
# chunk N: DURATION of 8 writers over all keys and 8 over the keys of the
# slots that never move, idle.
chunk() {
	all "idle-all-$1" &
	local pid=$!
	other "idle-other-$1" "$duration"
	wait "$pid"
}

# Idle is measured on a settled cluster too: right after the fill the
# members' apply rounds would be in it.
settle "$bin"
echo "== writers idle: 3 x $duration ($(uptime))"
for i in 1 2 3; do
	chunk "$i"
done

# round N: a rebalance onto g3 (N odd) or a drain of g3 (N even). While
# the writers run, the other slots' writers run for the round's length
# alone, so that their p99 is the round's.
round() {
	local from kind=drain
	if [ $(($1 % 2)) = 1 ]; then
		kind=rebalance
		"$bin" admin group weight g3 1 >/dev/null
	fi
	round_others=""
	if [ -n "${busy_since:-}" ]; then
		other "busy-other-$kind-$1" &
		round_others=$!
	fi
	from=$(date +%s.%N)
	if [ "$kind" = rebalance ]; then
		"$bin" admin rebalance -o json >"$dir/round-$1.json"
	else
		"$bin" admin drain --group g3 -o json >"$dir/round-$1.json"
	fi
	echo "$from $(date +%s.%N) $kind" >>"$dir/phases"
	if [ -n "$round_others" ]; then
		stop_others "busy-other-$kind-$1"
		wait "$round_others" || true
	fi
	# The history keeps the last 50 migrations: save it every round.
	"$bin" admin zk -r -o json migrations >"$dir/history-$1.json"
	echo "   round $1: $(handed) hand-overs, $(($(date +%s) - start)) s ($(uptime | sed 's/.*load/load/'))"
}

# The copies without writers are timed on a settled cluster: the writers'
# last seconds leave each member up to a second or so of apply rounds.
t0=$(date +%s.%N)
settle "$bin"
echo "== $quiet_pairs rebalances onto g3 and drains of g3 without writers, after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s waiting for the members to apply their logs ($(uptime))"
start=$(date +%s)
rounds=0
first_end="" # when the first rebalance ended: the copies that started before were onto the new group
while [ "$rounds" -lt $((2 * quiet_pairs)) ]; do
	rounds=$((rounds + 1))
	[ "$rounds" = 1 ] || settle "$bin"
	round "$rounds"
	[ -n "$first_end" ] || first_end=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
done
quiet=$(handed)

echo "== rebalance and drain of g3 with the writers running, until $handovers more hand-overs ($(uptime))"
busy_since=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
writers &
pids+=($!)
start=$(date +%s)
while [ $(($(handed) - quiet)) -lt "$handovers" ]; do
	rounds=$((rounds + 1))
	if [ "$rounds" -gt $((handovers + 2 * quiet_pairs)) ]; then
		echo "$((rounds - 2 * quiet_pairs - 1)) rounds switched only $(($(handed) - quiet)) migrations: see $dir/cluster/logs (KEEP=1)" >&2
		exit 1
	fi
	round "$rounds"
done
touch "$dir/stop"
wait "${pids[-1]}"
rm -f "$dir/stop"
busy_secs=$(($(date +%s) - start))

echo
echo "== copy speed per migration (started -> target caught up; keys and bytes the target imported)"
# The coordinator's log: time=... msg="migration: started" migration=ID and
# msg="migration: target caught up, holding" migration=ID.
cat "$dir"/cluster/logs/coord-*.log | awk '
	function secs(t) { split(substr(t, 12, 12), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
	/msg="migration: started"/ || /msg="migration: target caught up/ {
		t = ""; id = ""
		for (i = 1; i <= NF; i++) {
			if ($i ~ /^time=/) t = substr($i, 6)
			if ($i ~ /^migration=/) id = substr($i, 11)
		}
		if ($0 ~ /started/) { start[id] = secs(t); at[id] = t }
		else if (!(id in caught)) caught[id] = secs(t)
	}
	END { for (id in caught) if (id in start) { d = caught[id] - start[id]; if (d < 0) d += 86400; print id, d, at[id] } }
' | sort >"$dir/copytimes"
# The history records: "id", "keys", "bytes" of every finished migration.
cat "$dir"/history-*.json | tr -d ' \n' | sed 's/}/}\n/g' |
	sed -n 's/.*"id":"\([^"]*\)".*"keys":\([0-9]*\),"bytes":\([0-9]*\).*/\1 \2 \3/p' | sort -u >"$dir/copied"
# copies: id keys seconds keys/s MB/s writers(0/1) first-rebalance(0/1).
join "$dir/copied" "$dir/copytimes" | awk -v busy="$busy_since" -v first="$first_end" '$4 > 0 {
	printf "%s %d %.3f %.0f %.1f %d %d\n", $1, $2, $4, $2 / $4, $3 / $4 / 1e6, ($5 >= busy), ($5 < first) }' >"$dir/copies"
printf '   %-28s %9s %8s %9s %7s %s\n' migration keys seconds keys/s MB/s writers
awk '{ printf "   %-28s %9d %8.3f %9d %7.1f %s\n", $1, $2, $3, $4, $5, $6 ? "yes" : $7 ? "no (onto the new group, its first)" : "no" }' "$dir/copies"
# summary WRITERS COLUMN NAME [FIRST]: median, min and max of a column of
# $dir/copies (FIRST 0 or 1: of the first rebalance's copies or the others).
summary() {
	awk -v w="$1" -v c="$2" -v f="${4:-}" '$6 == w && (f == "" || $7 == f) { print $c }' "$dir/copies" | sort -g | awk -v name="$3" '{ v[NR] = $1 }
		END { if (NR) printf "   %-32s median %8s (%s-%s) over %d migrations\n", name ":", v[int((NR + 1) / 2)], v[1], v[NR], NR }'
}
summary 0 4 "keys/s, no writers"
summary 0 5 "MB/s, no writers"
summary 0 5 "  the first rebalance" 1
summary 0 5 "  the later ones" 0
summary 0 2 "keys per migration, no writers"
summary 1 4 "keys/s, writers running"
summary 1 5 "MB/s, writers running"
summary 1 2 "keys per migration, writers running"

echo
echo "== holds (\"hold ended ... held=\" of the source primaries: every hold, released ones included)"
# holds SINCE NAME: percentiles of the holds that ended at or after SINCE.
holds() {
	cat "$dir"/cluster/logs/data-*.log "$dir"/g3-*.log | grep 'msg="hold ended"' |
		sed -n 's/^time=\([^ ]*\) .* held=\([0-9.]*\)\([µmun]*s\) .*/\1 \2 \3/p' |
		awk -v since="$1" '$1 >= since { f = $3 == "s" ? 1000 : $3 == "ms" ? 1 : $3 == "µs" || $3 == "us" ? 0.001 : 0.000001; print $2 * f }' |
		sort -g | awk -v name="$2" '{ v[NR] = $1 }
			function p(q) { i = int(q * NR + 0.999999); if (i < 1) i = 1; return v[i] }
			END { if (NR) printf "   %-16s %4d holds: p50 %4.0f ms, p90 %4.0f ms, p99 %4.0f ms, max %4.0f ms\n", name, NR, p(0.5), p(0.9), p(0.99), v[NR] }'
}
holds 0 all
holds "$busy_since" "writers running"
released=$(cat "$dir"/cluster/logs/coord-*.log | grep -c 'msg="migration: hold released"' || true)
echo "   $(handed) hand-overs, $released holds released by the coordinator"

echo
echo "== writers (100% puts of $value bytes: 8 clients over all $keys keys, moving slots included, in $duration chunks, and 8 over the slots that never move, in $duration chunks idle and a run per round while migrating)"
# report NAME PREFIX UNIT: mean throughput and the median and largest p99 of the runs.
report() {
	for f in "$dir/$2"-*.json; do
		[ -s "$f" ] && echo "$(field ops_per_sec "$f") $(field p99_us "$f")"
	done | sort -k2 -g | awk -v name="$1" -v unit="$3" '{ ops += $1; p[NR] = $2 }
		END { if (NR) printf "   %-28s %8.0f puts/s, p99 median %6.1f ms, max %6.1f ms (%d %s)\n", name, ops / NR, p[int((NR + 1) / 2)] / 1000, p[NR] / 1000, NR, unit }'
}
report "all keys, idle" idle-all chunks
report "all keys, migrating" busy-all chunks
report "other slots, idle" idle-other chunks
report "other slots, each rebalance" busy-other-rebalance rounds
report "other slots, each drain" busy-other-drain rounds
# seconds PREFIX: "time p99_us" of every whole second of the other slots'
# writers (the short last interval, of the requests still in flight at the
# end, is left out).
seconds() {
	local f t0
	for f in "$dir/$1"-other-*.json; do
		if [ ! -s "$f" ] || [ ! -s "${f%.json}.end" ]; then
			continue
		fi
		t0=$(awk -v end="$(cat "${f%.json}.end")" -v took="$(field elapsed_seconds "$f")" 'BEGIN { printf "%.3f", end - took }')
		{ grep -o '"end_seconds": *[0-9.e+-]*\|"p99_us": *[0-9.e+-]*' "$f" || true; } |
			awk -v t0="$t0" -F': *' '
				$1 ~ /end_seconds/ { end = $2; next }
				end != "" { if (end - prev >= 0.9) printf "%.3f %s\n", t0 + end, $2; prev = end; end = "" }'
	done
}
# stats NAME: the median, p90 and largest of the per-second p99s (µs) on stdin.
stats() {
	sort -g | awk -v name="$1" '{ v[NR] = $1 }
		END { if (NR) printf "   %-24s per-second p99: median %6.1f ms, p90 %6.1f ms, max %6.1f ms (%d s)\n",
			name, v[int((NR + 1) / 2)] / 1000, v[int(0.9 * NR + 0.999999)] / 1000, v[NR] / 1000, NR }'
}
# during KIND: the per-second p99s of the busy seconds wholly within a
# round of KIND (rebalance or drain).
during() {
	{ sed 's/^/round /' "$dir/phases"; seconds busy | sed 's/^/second /'; } | awk -v kind="$1" '
		$1 == "round" && $4 == kind { from[++n] = $2; to[n] = $3; next }
		$1 == "second" { for (i = 1; i <= n; i++) if ($2 - 1 >= from[i] && $2 <= to[i]) { print $3; break } }'
}
echo "   the other slots' writers second by second (--report-interval 1s):"
seconds idle | awk '{ print $2 }' | stats "idle"
during rebalance | stats "rebalancing onto g3"
during drain | stats "draining g3"
echo "   $((rounds - 2 * quiet_pairs)) rounds with writers in $busy_secs s; $(uptime)"
