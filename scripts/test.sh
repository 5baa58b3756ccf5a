#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: formatting, lints, Rust tests, and the
# Python tests in a project venv (.venv) that this script creates and fills.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\n== %s  (%d s in)\n' "$*" $((SECONDS - started)); }

step "python venv (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r tests/python/requirements.txt

step "haproxy (Debian), for the fleet test"
if ! command -v haproxy >/dev/null; then
  as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get install -y -qq haproxy >/dev/null || { $as_root apt-get update -qq && $as_root apt-get install -y -qq haproxy >/dev/null; }
fi

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

step "fuzz: token parsing, request decoding, AES-SIV against aes-siv, Arrow bodies, format-preserving pseudonyms; 20 s each, quick build (real runs: scripts/fuzz.sh 600)"
./scripts/fuzz.sh 20 --quick

# The whole workspace, as `cargo test` just built it: the same features, so nothing but the
# benches themselves is compiled again (with `-p` for a few crates, 88 crates were, 172 s).
# Each bench runs once (criterion's test mode): a bench that panics fails here, not in the
# next engineer's `cargo bench`.
step "benchmarks, each run once (unoptimized, as the tests: their code works, not the dist profile's speed)"
cargo test --workspace --locked --bench '*'

step "python wheel (maturin, release) into .venv"
rm -rf target/wheels
.venv/bin/maturin build --release --locked -m python/Cargo.toml --out target/wheels
.venv/bin/python -m pip install --quiet --force-reinstall --no-deps target/wheels/pseudonym-*.whl
.venv/bin/python -m mypy.stubtest --mypy-config-file python/mypy.ini pseudonym._internal
.venv/bin/python -m mypy --strict --config-file python/mypy.ini python/python/pseudonym

step "pytest (the service, the Python API, PySpark local[2])"
# `cargo test` built it already; `--workspace` keeps its features, so this only checks it.
cargo build --workspace --locked --bin pseudonymd
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
.venv/bin/python -m pytest -q tests/python

# The build's disk use, shown so its growth is noticed: a fresh CI build once filled this
# machine's shared disk (target/ then grew past 45 GB with full debug info; 12 GB since).
step "all tests passed; target/ holds $(du -sh target | cut -f1), $(df -h --output=avail . | tail -1 | tr -d ' ') left on the disk"
