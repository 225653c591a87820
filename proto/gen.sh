#!/usr/bin/env bash
# Regenerates proto/tempestpb from proto/*.proto. Installs protoc (Debian's
# protobuf-compiler) and protoc-gen-go (pinned to go.mod's protobuf) if missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v protoc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq protobuf-compiler
fi
GOBIN="$(go env GOPATH)/bin"
ver=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
if ! "$GOBIN/protoc-gen-go" --version 2>/dev/null | grep -q "$ver"; then
  GOBIN="$GOBIN" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$ver"
fi
protoc --plugin=protoc-gen-go="$GOBIN/protoc-gen-go" \
  --go_out=tempestpb --go_opt=paths=source_relative -I . ./*.proto
