//! `pseudonym-loadtest`: see `pseudonym-loadtest --help` and BENCHMARKS.md.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pseudonym_loadtest::run(pseudonym_loadtest::Opts::parse()).await?;
    Ok(())
}
