#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: formatting, lints, Rust tests, and the
# Python tests in a project venv (.venv) that this script creates and fills.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "python venv (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r tests/python/requirements.txt

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "client builds alone, with and without its features"
cargo check --locked -p pseudonym-client
cargo check --locked -p pseudonym-client --no-default-features
cargo check --locked -p pseudonym-client --features arrow

step "cargo test"
cargo test --workspace --locked

step "benchmarks compile"
cargo bench --workspace --locked --no-run

step "pytest"
cargo build --locked -p pseudonym-service --bin pseudonymd
.venv/bin/python -m pytest -q tests/python

step "all tests passed"
