#!/usr/bin/env bash
# Regenerates the Go code of proto/ with buf and the pinned local plugins.
# Tools: buf in tools/buf/go.mod, protoc-gen-go(-grpc) in tools/protoc/go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
go tool -modfile=tools/buf/go.mod buf lint
go tool -modfile=tools/buf/go.mod buf generate
