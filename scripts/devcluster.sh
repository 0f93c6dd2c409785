# shellcheck shell=bash
# Sourced by the scripts that need a throwaway local cluster.
#
# stop_all PID...: interrupts each process (a dev cluster stops its
# daemons on SIGINT), then waits for every one of them.
stop_all() {
	local p
	for p in "$@"; do
		kill -INT "$p" 2>/dev/null || true
	done
	for p in "$@"; do
		wait "$p" 2>/dev/null || true
	done
}


# dev_up BIN NAME [dev flags...] starts `BIN dev` in a new temporary
# directory $dir, waits until it serves, exports THUNDER_ZK and
# THUNDER_CLUSTER, and stops it and removes $dir when the script exits.
dev_up() {
	local bin=$1 name=$2
	shift 2
	dir=$(mktemp -d "/tmp/thunderyurts-$name.XXXXXX")
	local ready="$dir/ready"
	"$bin" dev --dir "$dir/cluster" --ready-file "$ready" "$@" >"$dir/dev.out" 2>"$dir/dev.log" &
	dev=$!
	trap 'kill -INT "$dev" 2>/dev/null && wait "$dev" 2>/dev/null; rm -rf "$dir"' EXIT
	for _ in $(seq 1 600); do
		[ -s "$ready" ] && break
		kill -0 "$dev" 2>/dev/null || { cat "$dir/dev.log"; echo "dev cluster failed to start" >&2; exit 1; }
		sleep 0.1
	done
	[ -s "$ready" ] || { cat "$dir/dev.log"; echo "dev cluster did not come up within 60s" >&2; exit 1; }
	# shellcheck disable=SC1090
	source "$ready"
}
