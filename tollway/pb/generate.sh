#!/usr/bin/env bash
# Regenerates tollway/pb from proto/. Never edit the generated files by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/tollway/pb/*.proto
