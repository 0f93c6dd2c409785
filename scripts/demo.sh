#!/usr/bin/env bash
# make demo: start a dev cluster, use it, stop it. Usage: scripts/demo.sh BIN
set -euo pipefail
bin=${1:-bin/thunderctl}
dir=$(mktemp -d /tmp/thunderyurts-demo.XXXXXX)
ready="$dir/ready"
"$bin" dev --dir "$dir/cluster" --groups 2 --coords 2 --ready-file "$ready" >"$dir/dev.out" 2>"$dir/dev.log" &
dev=$!
cleanup() { kill -INT "$dev" 2>/dev/null && wait "$dev" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 600); do
	[ -s "$ready" ] && break
	kill -0 "$dev" 2>/dev/null || { cat "$dir/dev.log"; echo "dev cluster failed to start" >&2; exit 1; }
	sleep 0.1
done
[ -s "$ready" ] || { cat "$dir/dev.log"; echo "dev cluster did not come up within 60s" >&2; exit 1; }
cat "$dir/dev.out"
# shellcheck disable=SC1090
source "$ready"
run() { echo "\$ thunderctl $*"; "$bin" "$@"; }
echo
run put greeting "hello, world"
run put user:1 ada
run put user:2 grace
run get greeting
run scan --prefix user:
run admin status
echo
echo "demo done; stopping the cluster"
