#!/usr/bin/env bash
# Fails when the committed generated code of proto/ is stale: regenerates into
# a temporary directory and compares with what is in the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go tool -modfile=tools/buf/go.mod buf lint
go tool -modfile=tools/buf/go.mod buf generate -o "$tmp"
status=0
# Every generated file must match, and no committed .pb.go may lack a source.
while IFS= read -r f; do
  rel="${f#"$tmp"/}"
  if ! diff -u "$rel" "$f" >/dev/null 2>&1; then
    echo "stale generated file: $rel (run scripts/generate.sh)" >&2
    diff -u "$rel" "$f" >&2 || true
    status=1
  fi
done < <(find "$tmp" -name '*.pb.go' | sort)
while IFS= read -r f; do
  if [ ! -f "$tmp/$f" ]; then
    echo "generated file without a source: $f" >&2
    status=1
  fi
done < <(find proto -name '*.pb.go' | sort)
if [ "$status" -eq 0 ]; then
  echo "generated code is up to date"
fi
exit "$status"
