#!/usr/bin/env bash
# Runs every benchmark and prints BENCHMARKS.md-ready markdown: the machine,
# the command, and one table row per benchmark with all its reported metrics.
# Usage: scripts/bench.sh [go test -bench regexp] > bench.md
set -euo pipefail
cd "$(dirname "$0")/.."
pattern="${1:-.}"
pkgs=(./store/ ./global/ ./kds/ ./zone/xds/ ./residency/ ./testcluster/ ./cmd/meshtrace-cp/)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
go test -run '^$' -bench "$pattern" -benchmem -count=1 -timeout 30m "${pkgs[@]}" | tee "$raw" >&2

echo "## Benchmarks ($(date -u +%Y-%m-%d))"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3-), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
echo
echo "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg). Other work on the machine inflates wall-clock figures: note it beside every number."
echo
echo "Command: \`scripts/bench.sh\` (\`go test -run '^\$' -bench . -benchmem ${pkgs[*]}\`)."
echo
echo "| package | benchmark | iterations | metrics |"
echo "| --- | --- | --- | --- |"
awk '
/^pkg: / { pkg = $2; sub(/.*meshtrace\/meshtrace\//, "", pkg) }
/^Benchmark/ {
	name = $1; iters = $2; m = ""
	for (i = 3; i + 1 <= NF; i += 2) { m = m (m == "" ? "" : ", ") $i " " $(i+1) }
	printf "| %s | %s | %s | %s |\n", pkg, name, iters, m
}' "$raw"
