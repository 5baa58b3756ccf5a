//! `pseudonym-loadtest`: see `pseudonym-loadtest --help` and BENCHMARKS.md.

use clap::Parser;

/// The allocator the service runs on, for the in-process crypto baseline (Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pseudonym_loadtest::run(pseudonym_loadtest::Opts::parse()).await?;
    Ok(())
}
