#!/usr/bin/env bash
# make demo: start a dev cluster, use it, stop it. Usage: scripts/demo.sh BIN
set -euo pipefail
bin=${1:-bin/thunderctl}
# shellcheck source=scripts/devcluster.sh
source "$(dirname "$0")/devcluster.sh"
dev_up "$bin" demo --groups 2 --coords 2
cat "$dir/dev.out"
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
