//! `pseudonym-sql`: SQL over Parquet, CSV and JSON files with `pseudonymize()`,
//! `reidentify()` and `rewrap()`, on Apache DataFusion. See `pseudonym-sql --help`.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use indicatif::{ProgressBar, ProgressStyle};
use pseudonym_client::Client;
use pseudonym_udf::{Service, generate, tables};

/// As DataFusion's own command line does (and the workspace's Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXAMPLES: &str = "\
Examples:
  export PSEUDONYM_URL=http://127.0.0.1:8080 PSEUDONYM_API_KEY=$(cat .pseudonym-dev/dev-api-key)

  # Pseudonymize a column of a Parquet file into a new Parquet file
  pseudonym-sql -t cars=cars.parquet \\
    \"COPY (SELECT dept_id, pseudonymize(vin, 'vin') AS vin, example_ts FROM cars) TO 'out.parquet'\"

  # Look at the result, and back (needs a key allowed to re-identify)
  pseudonym-sql -t out=out.parquet \"SELECT vin, reidentify(vin, 'vin') FROM out LIMIT 5\"

  # Test data in the AWS sample's shape (dept_id, vin, example_ts)
  pseudonym-sql generate --rows 1000000 --cardinality 100000 cars.parquet

Functions:
  pseudonymize(value, domain [, mode [, on_error]])
                                         mode: 'deterministic' (default), 'randomized', 'hash',
                                         'format-preserving' (a domain the service gives a
                                         format; on_error as for reidentify)
  reidentify(token, domain [, on_error]) on_error: 'error' (default: fail the query) or 'null'
  rewrap(token, domain [, on_error])     the token again under the primary key version (also
                                         turns the replaced AWS service's tokens into ours)
  The domain and mode are string literals, checked when the query is planned. The functions
  nest: reidentify(pseudonymize(x, 'd'), 'd').";

/// SQL over files with pseudonymize() and reidentify().
#[derive(Parser)]
#[command(name = "pseudonym-sql", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// SQL statements to run, in order (separate several in one argument with `;`). Without
    /// any, and without --file, statements are read from standard input.
    sql: Vec<String>,
    /// A file of SQL statements separated by `;`.
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Register a file or folder as a table: NAME=PATH (.parquet, .csv, .json). Repeatable.
    #[arg(short, long = "table", value_name = "NAME=PATH")]
    tables: Vec<String>,
    /// Service URL; several (comma-separated or repeated) spread load and fail over.
    #[arg(long, env = "PSEUDONYM_URL", value_delimiter = ',')]
    url: Vec<String>,
    /// API key.
    #[arg(long, env = "PSEUDONYM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// PEM CA certificates to trust for an https service whose certificate a private CA signed.
    #[arg(long, env = "PSEUDONYM_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// PEM client certificate for a service that requires one (mTLS), with --client-key-file.
    #[arg(long, env = "PSEUDONYM_CLIENT_CERT_FILE", requires = "client_key_file")]
    client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, env = "PSEUDONYM_CLIENT_KEY_FILE", requires = "client_cert_file")]
    client_key_file: Option<PathBuf>,
    /// Values per request to the service.
    #[arg(long, default_value_t = pseudonym_client::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Requests in flight per record batch.
    #[arg(long, default_value_t = pseudonym_client::DEFAULT_MAX_IN_FLIGHT)]
    concurrency: usize,
    /// Deterministic and hash pseudonyms to remember across record batches, so repeated values
    /// are sent once per run (0: off).
    #[arg(long, default_value_t = 1_000_000)]
    cache_values: usize,
    /// Rows per DataFusion record batch (each is one set of service calls).
    #[arg(long, default_value_t = 32_768)]
    rows_per_batch: usize,
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    format: Output,
    /// No progress display.
    #[arg(short, long)]
    quiet: bool,
    /// Print each statement's wall time to standard error.
    #[arg(long)]
    timing: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Write test data in the AWS sample's shape (dept_id, vin, example_ts) to a Parquet file.
    Generate {
        /// Rows to write.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Distinct VINs.
        #[arg(long, default_value_t = 100_000)]
        cardinality: u64,
        /// The Parquet file to write.
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// Aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per row.
    Json,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pseudonym-sql: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The client (its network I/O and its work on each record batch) runs on a runtime of its
    // own, which DataFusion's threads await (or block on, for nested calls). A thread per core,
    // so the record batches of several partitions are prepared and read back at the same time.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("pseudonym-io")
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    let engine = tokio::runtime::Builder::new_multi_thread()
        .thread_name("datafusion")
        .enable_all()
        .build()
        .context("cannot start the query runtime")?;
    let result = engine.block_on(execute(cli, io.handle().clone()));
    io.shutdown_background();
    engine.shutdown_background();
    result
}

async fn execute(cli: Cli, io: tokio::runtime::Handle) -> anyhow::Result<()> {
    let config = SessionConfig::new().with_batch_size(cli.rows_per_batch);
    let ctx = SessionContext::new_with_config(config);
    if let Some(Command::Generate {
        rows,
        cardinality,
        out,
    }) = &cli.command
    {
        generate::parquet(&ctx, out, *rows, *cardinality).await?;
        eprintln!(
            "wrote {rows} rows ({cardinality} distinct VINs) to {}",
            out.display()
        );
        return Ok(());
    }

    let service = if cli.url.is_empty() {
        None
    } else {
        let api_key = cli
            .api_key
            .clone()
            .context("--api-key (or PSEUDONYM_API_KEY) is needed with --url")?;
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let mut builder = Client::builder()
            .urls(cli.url.iter().cloned())
            .api_key(api_key)
            .batch_size(cli.batch_size)
            .max_in_flight(cli.concurrency)
            .cache_capacity(cli.cache_values);
        if let Some(ca_file) = &cli.ca_file {
            builder = builder.root_certificates_pem(read(ca_file)?);
        }
        if let (Some(cert), Some(key)) = (&cli.client_cert_file, &cli.client_key_file) {
            let mut identity = read(key)?;
            identity.push(b'\n');
            identity.extend(read(cert)?);
            builder = builder.client_identity_pem(identity);
        }
        let client = builder.build()?;
        let service = Service::new(client, io);
        service.register(&ctx);
        Some(service)
    };
    for table in &cli.tables {
        let (name, path) = table
            .split_once('=')
            .with_context(|| format!("--table {table}: expected NAME=PATH"))?;
        tables::register(&ctx, name, &PathBuf::from(path)).await?;
    }

    let statements = statements(&cli)?;
    if statements.is_empty() {
        bail!("no SQL given (pass it as an argument, with --file, or on standard input)");
    }
    for statement in statements {
        let started = std::time::Instant::now();
        let progress = (!cli.quiet).then(|| Progress::start(service.clone()));
        let frame = plan(&ctx, statement).await.map_err(|e| {
            if service.is_none() && e.to_string().contains("pseudonymize") {
                anyhow::anyhow!("{e}\n(pseudonymize and reidentify need --url and --api-key)")
            } else {
                anyhow::Error::new(e)
            }
        })?;
        let batches = frame.collect().await;
        drop(progress);
        print(&batches?, cli.format)?;
        if cli.timing {
            eprintln!("time: {:.3} s", started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// The statements of the SQL given (arguments, then `--file`, or else standard input), split by
/// DataFusion's own parser, so a `;` inside a string literal or a comment stays where it is.
fn statements(cli: &Cli) -> anyhow::Result<VecDeque<Statement>> {
    let mut text = cli.sql.join(";\n");
    if let Some(file) = &cli.file {
        text.push_str(";\n");
        text.push_str(
            &std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
        );
    }
    if cli.sql.is_empty() && cli.file.is_none() {
        std::io::stdin().read_to_string(&mut text)?;
    }
    Ok(DFParser::parse_sql(&text)?)
}

/// Plans one parsed statement and gives its result to collect.
async fn plan(
    ctx: &SessionContext,
    statement: Statement,
) -> datafusion::error::Result<datafusion::prelude::DataFrame> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    ctx.execute_logical_plan(plan).await
}

fn print(batches: &[RecordBatch], format: Output) -> anyhow::Result<()> {
    use datafusion::arrow::{csv, json, util::pretty};
    if batches.iter().all(|b| b.num_rows() == 0) && batches.iter().all(|b| b.num_columns() == 0) {
        return Ok(());
    }
    let stdout = std::io::stdout().lock();
    match format {
        Output::Table => println!("{}", pretty::pretty_format_batches(batches)?),
        Output::Csv => {
            let mut writer = csv::Writer::new(stdout);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Output::Json => {
            let mut writer = json::LineDelimitedWriter::new(stdout);
            writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
            writer.finish()?;
        }
    }
    Ok(())
}

/// A spinner on stderr while a statement runs (hidden when stderr is no terminal): time so far
/// and values sent to the service.
struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(service: Option<Service>) -> Progress {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let sent = service.as_ref().map_or(0, Service::values_sent);
                shown.set_message(format!("{sent} values through pseudonym"));
            }
        });
        Progress { bar, task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
