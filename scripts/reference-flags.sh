#!/bin/sh
# Prints the command and flag sections of docs/reference.md from the help
# of the thunderctl binary given as $1 (default bin/thunderctl), so the
# reference says what the binary does: after changing a command or a flag,
# `make reference` puts it between the "generated" markers of
# docs/reference.md.
set -eu
bin=${1:-bin/thunderctl}

# rows turns the OPTIONS (or GLOBAL OPTIONS) block of a help page into
# markdown table rows, leaving out the flags listed in $2 (a regexp).
rows() {
	awk -v skip="$2" '
	/^(GLOBAL )?OPTIONS:/ { on = 1; next }
	on && /^[A-Z]/ { on = 0 }
	on && /^   -/ {
		line = $0; sub(/^   /, "", line)
		n = match(line, /  +/)
		flag = substr(line, 1, n - 1); desc = substr(line, n + RLENGTH)
		name = flag; sub(/ .*/, "", name); sub(/,$/, "", name)
		if (skip != "" && name ~ skip) next
		def = ""
		if (match(desc, / \(default: [^)]*\)/)) {
			def = substr(desc, RSTART + 11, RLENGTH - 12)
			desc = substr(desc, 1, RSTART - 1) substr(desc, RSTART + RLENGTH)
		}
		sub(/ \[\$[A-Z0-9_]+\]$/, "", desc)
		if (desc ~ /\(required\)/) { sub(/ \(required\)/, "", desc); def = "required" }
		gsub(/\|/, "\\|", desc)
		if (def == "false") def = ""
		gsub(/^"|"$/, "", def)
		if (def != "" && def !~ / /) def = "`" def "`"
		printf "| `%s` | %s | %s |\n", flag, desc, def
	}' "$1"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" --help > "$tmp/root"
global=$(awk '/^GLOBAL OPTIONS:/{on=1;next} on&&/^   -/{f=$1; sub(/,$/,"",f); printf "%s%s", sep, f; sep="|"}' "$tmp/root")
global="^($global|--help)$"

echo "### Global flags"
echo
echo "Every command takes these; each is also read from \`THUNDER_<FLAG>\` and the config file."
echo
echo "| flag | meaning | default |"
echo "|---|---|---|"
rows "$tmp/root" '^--help$'

for cmd in "serve coord" "serve data" "dev" "get" "put" "del" "scan" "bench" \
	"admin status" "admin zk" "admin zk secure" "admin slots" "admin failover" "admin node resync" \
	"admin rebalance" "admin drain" "admin group weight" "admin group remove" \
	"admin backup run" "admin backup list" "admin backup verify" \
	"admin backup schedule set" "admin backup schedule show" "admin backup schedule clear" \
	"admin restore" "admin certs init" "admin certs issue" "version"; do
	# shellcheck disable=SC2086
	"$bin" $cmd --help > "$tmp/cmd"
	echo
	echo "### \`thunderctl $cmd\`"
	echo
	awk '/^NAME:/{getline; sub(/^ *[^-]* - /, ""); print; exit}' "$tmp/cmd"
	echo
	usage=$(awk '/^USAGE:/{getline; sub(/^ */, ""); print; exit}' "$tmp/cmd")
	echo "Usage: \`$usage\`"
	# The description: prose as it is, command lines in a code block.
	awk '
	/^DESCRIPTION:/ { on = 1; next }
	on && /^[A-Z]/ { exit }
	on {
		sub(/^ */, "")
		if ($0 == "") next
		if (/^thunderctl /) { if (!code) print "\n```sh"; code = 1; print; next }
		if (code) { print "```"; code = 0 }
		print "\n" $0
	}
	END { if (code) print "```" }' "$tmp/cmd"
	rows "$tmp/cmd" "$global" > "$tmp/rows"
	if [ -s "$tmp/rows" ]; then
		echo
		echo "| flag | meaning | default |"
		echo "|---|---|---|"
		cat "$tmp/rows"
	fi
done
