#!/usr/bin/env bash
# make bench: the engine and request-path Go benchmarks, then a short
# cluster benchmark (one group of 3 data nodes, acks=all) of durable puts and
# gets, printed as a table. Figures on a shared machine move by tens of
# percent between runs; a peer measured in the same sitting gives a ratio
# that holds. When PEER_BENCH names a script that prints etcd's figures for
# the same workload (lines "etcd put ... ops/s=N p50=.. p99=.." and
# "etcd get-linearizable ... ops/s=N ..."), it runs right after and the
# table gains etcd's figures and the ratios. It is optional.
#
# Usage: scripts/bench.sh BIN   (env: BENCH_DURATION=10s, GO_BENCHTIME=1s, PEER_BENCH=path)
set -euo pipefail
bin=${1:-bin/thunderctl}
duration=${BENCH_DURATION:-10s}
go=${GO:-go}

echo "== Go benchmarks (datastore engine, client request path)"
"$go" test -run '^$' -bench . -benchtime "${GO_BENCHTIME:-1s}" ./datastore/ ./client/...

# shellcheck source=scripts/devcluster.sh
source "$(dirname "$0")/devcluster.sh"
dev_up "$bin" bench --groups 1 --replicas 3 --coords 1

# field NAME FILE: a number from the bench's JSON output.
field() { sed -n "s/^  \"$1\": \([0-9.e+]*\).*/\1/p" "$2" | head -1; }
echo
echo "== cluster: 1 group of 3, acks=all, 64 clients, 16 B keys over 100,000, 100 B values, $duration each"
"$bin" bench --duration "$duration" --keys 100000 --reads 0 --report-interval 1s -o json >"$dir/put.json"
"$bin" bench --duration "$duration" --keys 100000 --reads 100 -o json >"$dir/get.json"
put_ops=$(field ops_per_sec "$dir/put.json") put_p50=$(field p50_us "$dir/put.json") put_p99=$(field p99_us "$dir/put.json")
get_ops=$(field ops_per_sec "$dir/get.json") get_p50=$(field p50_us "$dir/get.json") get_p99=$(field p99_us "$dir/get.json")
worst=$(sed -n 's/^      "p99_us": \([0-9.e+]*\).*/\1/p' "$dir/put.json" | sort -g | tail -1)

etcd_put="" etcd_get=""
if [ -n "${PEER_BENCH:-}" ]; then
	echo "== peer: $PEER_BENCH (etcd only)"
	ONLY=etcd SKIP_INSTALL=1 REPS=1 "$PEER_BENCH" >"$dir/peer.out" 2>&1 || echo "peer benchmark failed (see its output below)"
	etcd_put=$(grep -m1 '^etcd put  64cl' "$dir/peer.out" || true)
	etcd_get=$(grep -m1 '^etcd get-linearizable' "$dir/peer.out" || true)
	[ -n "$etcd_put" ] || tail -5 "$dir/peer.out"
fi
ops() { sed -n 's/.*ops\/s=\([0-9.]*\).*/\1/p' <<<"$1"; }
lat() { sed -n "s/.* $1=\([0-9.]*m*s\).*/\1/p" <<<"$2"; }

echo
printf '%-26s %12s %10s %10s %14s %12s %8s\n' workload ops/s p50 p99 "etcd ops/s" "etcd p99" ratio
row() { # name ops p50us p99us etcdline
	local e r=""
	e=$(ops "$5")
	[ -n "$e" ] && r=$(awk -v a="$2" -v b="$e" 'BEGIN{printf "%.1fx", a/b}')
	printf '%-26s %12.0f %8.2fms %8.2fms %14s %12s %8s\n' "$1" "$2" "$(awk -v u="$3" 'BEGIN{print u/1000}')" \
		"$(awk -v u="$4" 'BEGIN{print u/1000}')" "${e:--}" "$(lat p99 "$5")" "${r:--}"
}
row "durable put (acks=all)" "$put_ops" "$put_p50" "$put_p99" "$etcd_put"
row "get (primary)" "$get_ops" "$get_p50" "$get_p99" "$etcd_get"
printf 'worst one-second put p99: %.2fms\n' "$(awk -v u="$worst" 'BEGIN{print u/1000}')"
