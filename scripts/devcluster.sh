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

# metric ADDR NAME: a gauge from a daemon's /metrics (bash's /dev/tcp: no curl needed).
metric() { (
	exec 3<>"/dev/tcp/${1%:*}/${1##*:}"
	printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
	sed -n "s/^$2 \([0-9.e+]*\)\r*$/\1/p" <&3
); }

# settle BIN: waits (up to a minute) until every data node of the cluster
# THUNDER_ZK names has applied all it committed to its data file. Right
# after a burst of writes the members' apply rounds run on for seconds and
# take the cores and the disk from whatever is measured next.
settle() {
	local addrs a applied hw
	# The data nodes' addresses: the "nodes" part of the status (exit 1 on
	# warnings, such as a group owning no slots).
	addrs=$("$1" admin status -o json 2>/dev/null | sed -n '/"nodes"/,$ s/.*"http": *"\([^"]*\)".*/\1/p' || true)
	[ -n "$addrs" ] || { echo "settle: no data node listed by admin status" >&2; exit 1; }
	for _ in $(seq 1 600); do
		local done=1
		for a in $addrs; do
			applied=$(metric "$a" thunder_data_applied_seq) hw=$(metric "$a" thunder_data_high_watermark)
			[ -n "$hw" ] && [ "$applied" = "$hw" ] || done=0
		done
		[ "$done" = 1 ] && return 0
		sleep 0.1
	done
	echo "the data nodes did not apply their logs within a minute" >&2
	exit 1
}
