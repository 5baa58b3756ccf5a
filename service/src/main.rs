//! `pseudonymd`: runs the pseudonymization service, and creates keyrings and API keys for it.
//!
//! With no keyring configured it runs in dev mode: it creates a keyring and an all-powerful API
//! key under `.pseudonym-dev/` on first start and reuses them afterwards.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use pseudonym_client::wire::InvalidDomain;
use pseudonym_service::auth::{self, Operation};
use pseudonym_service::config::{Config, LogFormat, TokenFormat};
use pseudonym_service::keygen::{self, Change};
use pseudonym_service::keyring::Keyring;
use pseudonym_service::keys::{self, KEYRING_ENV, KeySource};
use pseudonym_service::kms::KeyringStore;
use pseudonym_service::lambda::LambdaKey;
use pseudonym_service::reload;
use pseudonym_service::server::{self, Service};
use pseudonym_service::tink_export;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// A request's batch buffers stay with the allocator for the next request (the workspace's
/// Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "pseudonymd",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (what `pseudonymd` does without a subcommand).
    Serve(Box<ServeArgs>),
    /// Create a keyring file, or add a key version to one.
    Keygen(KeygenArgs),
    /// Create an API key: adds its digest to the key file and prints the key once, on stdout.
    ApiKey(ApiKeyArgs),
}

/// Settings of `serve`. Each overrides the configuration file's field of the same name; its
/// default, shown in `--help`, is that field's (see [`with_config_defaults`]).
#[derive(Args, Serialize, Default)]
struct ServeArgs {
    /// Configuration file (TOML); see README for every field.
    #[arg(long, env = "PSEUDONYM_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free one (see --ready-file).
    #[arg(long, env = "PSEUDONYM_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Once listening, write `{"url": "http://127.0.0.1:PORT", "pid": N}` to this file, so a
    /// script or test that started the service on port 0 learns where it is.
    #[arg(long, env = "PSEUDONYM_READY_FILE")]
    #[serde(skip)]
    ready_file: Option<PathBuf>,
    /// Keyring file. Without it and without PSEUDONYM_KEYRING (the file's content), dev mode.
    #[arg(long, env = "PSEUDONYM_KEYRING_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keyring_file: Option<PathBuf>,
    /// API key file (digests, operations, domains).
    #[arg(long, env = "PSEUDONYM_API_KEYS_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_keys_file: Option<PathBuf>,
    /// Folder for dev mode's keyring and API key.
    #[arg(long, env = "PSEUDONYM_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Domain of the routes compatible with the replaced service.
    #[arg(long, env = "PSEUDONYM_COMPAT_DOMAIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    compat_domain: Option<String>,
    /// What /pseudonymization answers: `native` tokens, or the Lambda service's (`lambda`,
    /// needs its key in the keyring).
    #[arg(long, env = "PSEUDONYM_COMPAT_TOKENS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    compat_tokens: Option<TokenFormat>,
    /// Require an API key (any valid one) for GET /metrics.
    #[arg(long, env = "PSEUDONYM_METRICS_REQUIRE_API_KEY")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    metrics_require_api_key: bool,
    /// Refuse (503) a re-identification whose audit line cannot be written.
    #[arg(long, env = "PSEUDONYM_AUDIT_FAIL_CLOSED")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    audit_fail_closed: bool,
    /// File to append the audit trail to, reopened on SIGHUP; without it, standard output.
    #[arg(long, env = "PSEUDONYM_AUDIT_LOG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_log: Option<PathBuf>,
    /// Log filter, e.g. `info` or `debug`.
    #[arg(long, env = "PSEUDONYM_LOG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<String>,
    /// Log line format.
    #[arg(long, env = "PSEUDONYM_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args, Serialize, Default)]
struct TlsArgs {
    /// PEM certificate chain: serve HTTPS (with --tls-key-file).
    #[arg(long = "tls-cert-file", env = "PSEUDONYM_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long = "tls-key-file", env = "PSEUDONYM_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
    /// PEM CA certificates: require client certificates signed by one (mTLS).
    #[arg(long = "tls-client-ca-file", env = "PSEUDONYM_TLS_CLIENT_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca_file: Option<PathBuf>,
}

#[derive(Args, Serialize, Default)]
struct LimitArgs {
    /// Most values per request.
    #[arg(long, env = "PSEUDONYM_MAX_VALUES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_values: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, env = "PSEUDONYM_MAX_BODY_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<usize>,
    /// Longest value in bytes.
    #[arg(long, env = "PSEUDONYM_MAX_VALUE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_value_bytes: Option<usize>,
    /// Request timeout in milliseconds.
    #[arg(long, env = "PSEUDONYM_REQUEST_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    request_timeout_ms: Option<u64>,
    /// Requests handled at once before answering 503.
    #[arg(long, env = "PSEUDONYM_MAX_CONCURRENT_REQUESTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_requests: Option<usize>,
    /// Requests one API key may have in flight before answering 429, unless its entry sets its
    /// own.
    #[arg(long, env = "PSEUDONYM_MAX_CONCURRENT_REQUESTS_PER_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_requests_per_key: Option<usize>,
    /// Values one API key may send per second before answering 429, unless its entry sets its
    /// own (0: no budget).
    #[arg(long, env = "PSEUDONYM_MAX_VALUES_PER_SECOND_PER_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_values_per_second_per_key: Option<u32>,
    /// Time for a request's headers (and a TLS handshake) to arrive; also the idle time of an
    /// HTTP/1 connection, in milliseconds.
    #[arg(long, env = "PSEUDONYM_HEADER_READ_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    header_read_timeout_ms: Option<u64>,
    /// Connections open at once; more are closed when accepted.
    #[arg(long, env = "PSEUDONYM_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
}

#[derive(Args)]
struct KeygenArgs {
    /// The service's configuration file: its keyring_file, and its [kms] to seal the keyring.
    #[arg(long, env = "PSEUDONYM_CONFIG")]
    config: Option<PathBuf>,
    /// The keyring file to create or change [default: the configuration's keyring_file].
    #[arg(long, env = "PSEUDONYM_KEYRING_FILE")]
    keyring_file: Option<PathBuf>,
    /// Create the keyring file from this plain keyring (to seal an existing keyring with the
    /// configured [kms]; delete the plain file afterwards).
    #[arg(long, conflicts_with_all = ["add", "set_primary", "retire", "import_lambda_secret", "retire_lambda"])]
    import: Option<PathBuf>,
    /// Add the Lambda service's key (the AWS sample's): the JSON of its Secrets Manager secret
    /// (encodedSecretKey, encodedNonceKey, nonceStrPos, nonceEndPos). Creates the keyring, with a
    /// new version 1, if the file does not exist. (--import-seed-secret: deprecated spelling.)
    #[arg(long, value_name = "SECRET_JSON", alias = "import-seed-secret", conflicts_with_all = ["add", "set_primary", "retire", "retire_lambda"])]
    import_lambda_secret: Option<PathBuf>,
    /// Remove the Lambda service's key: its tokens stop re-identifying (rewrap them first).
    /// (--retire-seed: deprecated spelling.)
    #[arg(long, alias = "retire-seed", conflicts_with_all = ["add", "set_primary", "retire"])]
    retire_lambda: bool,
    /// Add a new version to an existing keyring (and make it primary unless --stage).
    #[arg(long)]
    add: bool,
    /// With --add: keep the current primary, so every replica can hold the new key before any
    /// replica makes pseudonyms with it.
    #[arg(long, requires = "add")]
    stage: bool,
    /// Make an existing version the primary.
    #[arg(long, conflicts_with = "add")]
    set_primary: Option<u32>,
    /// Remove a version: its pseudonyms stop re-identifying (rewrap them first).
    #[arg(long, conflicts_with_all = ["add", "set_primary"])]
    retire: Option<u32>,
    /// With --set-primary or --retire: the base URLs of every replica (comma-separated), asked
    /// on /readyz first. Refuses --set-primary N unless each holds N, and --retire N while any
    /// still makes pseudonyms with N.
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    check_replicas: Vec<String>,
    /// Write the Tink keyset of this Tink domain to the file --to names (mode 0600), wrapped by
    /// the [kms] transit key if one is configured. Its [tink.<domain>] table must say
    /// export = true: whoever holds the keyset re-identifies the domain's Tink tokens without
    /// the service. Audited.
    #[arg(long, value_name = "DOMAIN", requires = "to", conflicts_with_all = ["import", "import_lambda_secret", "retire_lambda", "add", "set_primary", "retire", "check_replicas"])]
    export_tink_keyset: Option<String>,
    /// With --export-tink-keyset: the file to write; it must not exist yet.
    #[arg(long, value_name = "FILE", requires = "export_tink_keyset")]
    to: Option<PathBuf>,
}

#[derive(Args)]
struct ApiKeyArgs {
    /// The API key file to add the key to (created if missing).
    #[arg(long, env = "PSEUDONYM_API_KEYS_FILE")]
    api_keys_file: PathBuf,
    /// A name for the key's holder, shown in logs instead of the key.
    #[arg(long)]
    name: String,
    /// Operations the key may call.
    #[arg(long, value_delimiter = ',', default_value = "pseudonymize")]
    operations: Vec<OperationArg>,
    /// Domains the key may use, or `*` for all.
    #[arg(long, value_delimiter = ',', required = true)]
    domains: Vec<String>,
    /// Requests the key may have in flight at once [default: the service's
    /// limits.max_concurrent_requests_per_key].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_requests: Option<u32>,
    /// Values the key may send per second, on average over a second [default: the service's
    /// limits.max_values_per_second_per_key].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_values_per_second: Option<u32>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OperationArg {
    Pseudonymize,
    Reidentify,
    Rewrap,
}

/// The deprecated spellings of flags and values, and what replaces them: `seed` was this
/// service's name for the Lambda service (README, "Migrating from the AWS sample").
const DEPRECATED: [(&str, &str); 3] = [
    ("--import-seed-secret", "--import-lambda-secret"),
    ("--retire-seed", "--retire-lambda"),
    (
        "seed",
        "lambda (as --compat-tokens or PSEUDONYM_COMPAT_TOKENS)",
    ),
];

/// Warns, on standard error, of each deprecated spelling on the command line or in
/// `PSEUDONYM_COMPAT_TOKENS` (a configuration file's are warned of by [`load_config`]).
fn warn_of_deprecated_spellings() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let compat_tokens = std::env::var("PSEUDONYM_COMPAT_TOKENS").ok();
    for (old, new) in DEPRECATED {
        let used = match old {
            "seed" => {
                compat_tokens.as_deref() == Some("seed")
                    || args
                        .windows(2)
                        .any(|pair| pair == ["--compat-tokens", "seed"])
                    || args.iter().any(|arg| arg == "--compat-tokens=seed")
            }
            flag => args
                .iter()
                .any(|arg| arg == flag || arg.starts_with(&format!("{flag}="))),
        };
        if used {
            warn_of_deprecated(old, new);
        }
    }
}

fn warn_of_deprecated(old: &str, new: &str) {
    eprintln!("pseudonymd: warning: {old} is deprecated and goes in the next release; use {new}");
}

/// [`Config::load`], warning on standard error of each deprecated spelling in the file.
fn load_config(file: Option<&Path>, overrides: impl Serialize) -> anyhow::Result<Config> {
    if let Some(file) = file {
        for (old, new) in Config::deprecated_in(file) {
            warn_of_deprecated(&format!("{old} in {}", file.display()), new);
        }
    }
    Ok(Config::load(file, overrides)?)
}

fn main() -> ExitCode {
    warn_of_deprecated_spellings();
    let matches = with_config_defaults(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let outcome = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Keygen(args)) => keygen(args),
        Some(Command::ApiKey(args)) => api_key(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pseudonymd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `command` with the default of every flag that overrides a configuration field appended to its
/// help, read from [`Config::default`] (the field of the flag's name, at the top or in
/// `[limits]` or `[tls]`): defaults are written once, in `config.rs`, and `--help` shows them.
fn with_config_defaults(command: clap::Command) -> clap::Command {
    let defaults = serde_json::to_value(Config::default()).expect("the configuration serializes");
    let default_of = |id: &str| {
        let value = [&defaults, &defaults["limits"], &defaults["tls"]]
            .into_iter()
            .find_map(|table| table.get(id))?;
        match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    };
    let annotate = |command: clap::Command| {
        let ids: Vec<String> = command
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect();
        ids.into_iter()
            .fold(command, |command, id| match default_of(&id) {
                Some(default) => command.mut_arg(&id, |arg| {
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    arg.help(format!("{help} [default: {default}]"))
                }),
                None => command,
            })
    };
    annotate(command).mut_subcommand("serve", annotate)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), &args)?;
    init_logging(&config)?;
    log_panics_without_their_message();
    #[cfg(unix)]
    fit_open_files(config.limits.max_connections);
    let keys = keys::load_keys(&config, keyring_from_env())?;
    if let KeySource::Dev(dir) = &keys.source {
        warn_dev_mode(dir);
    }
    let versions: Vec<u32> = keys.keyring.keys().map(|(version, _)| version).collect();
    let service = Service::new(&config, &keys)?;
    drop(keys);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = server::bind(&config).await?;
        let addr = listener.local_addr().context("listening socket")?;
        let scheme = if service.tls().is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{addr}");
        tracing::info!(
            primary = service.state().primary_version(),
            ?versions,
            client_certificates = config.tls.client_ca_file.is_some(),
            "listening on {url}"
        );
        if let Some(path) = &args.ready_file {
            write_ready_file(path, &url)?;
        }
        #[cfg(unix)]
        tokio::spawn(reload::reload_on_sighup(
            config.clone(),
            service.state().clone(),
            service.tls().cloned(),
            keyring_from_env,
        ));
        server::run(listener, service, server::shutdown_signal())
            .await
            .context("server failed")
    })
}

/// Files the service has open besides its connections, at most: listeners, the keyring, the
/// runtime's own.
#[cfg(unix)]
const FILES_BESIDES_CONNECTIONS: u64 = 64;

/// Raises the soft limit on open files, up to the hard one, so that `limits.max_connections`
/// connections fit under it (as Go's runtime does at start: many systems default to 1,024).
/// Warns if even the hard limit is too low: a connection beyond it fails when accepted, where
/// the cap would have closed it.
#[cfg(unix)]
fn fit_open_files(max_connections: usize) {
    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(FILES_BESIDES_CONNECTIONS);
    match rlimit::increase_nofile_limit(needed) {
        Ok(open_files) if open_files >= needed => {}
        Ok(open_files) => tracing::warn!(
            open_files,
            max_connections,
            "limits.max_connections does not fit under the open-file limit (ulimit -n, hard \
             limit included): connections beyond it fail when accepted"
        ),
        Err(error) => tracing::warn!(%error, "cannot read or raise the open-file limit"),
    }
}

/// Writes where the service listens to `path`, whole or not at all (a reader polling for the
/// file never sees half of it).
fn write_ready_file(path: &std::path::Path, url: &str) -> anyhow::Result<()> {
    let ready = serde_json::json!({ "url": url, "pid": std::process::id() });
    let partial = path.with_extension("partial");
    std::fs::write(&partial, format!("{ready}\n"))
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("--ready-file {}", path.display()))
}

fn keyring_from_env() -> Option<SecretString> {
    std::env::var(KEYRING_ENV).ok().map(SecretString::from)
}

fn warn_dev_mode(dir: &std::path::Path) {
    let banner = "=".repeat(78);
    tracing::warn!(
        data_dir = %dir.display(),
        "DEV MODE: no keyring configured; using a dev keyring and API key created in this folder"
    );
    eprintln!(
        "{banner}\n  DEV MODE - not for real data.\n  \
         No keyring is configured, so pseudonymd uses the dev keyring in {dir}/{}\n  \
         (created on first start, reused afterwards) and the dev API key in {dir}/{}.\n  \
         For production, create a keyring with `pseudonymd keygen` and set --keyring-file.\n{banner}",
        keys::DEV_KEYRING,
        keys::DEV_API_KEY,
        dir = dir.display(),
    );
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("configuration: log: not a valid filter: {}", config.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// A panic is logged with where it happened, not with its message: a message could quote the
/// bytes of a request. (A request's panic is also answered 500 `internal`, see `api`.)
fn log_panics_without_their_message() {
    std::panic::set_hook(Box::new(|panic| {
        let location = panic
            .location()
            .map(|at| format!("{}:{}", at.file(), at.line()));
        tracing::error!(location, "panicked");
    }));
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), KeygenOverrides::default())?;
    let formats = config.formats()?;
    let path = args
        .keyring_file
        .or(config.keyring_file.clone())
        .context("no keyring file: pass --keyring-file or a --config that names one")?;
    let store = KeyringStore::new(&path, config.kms.as_ref())?;
    if let (Some(domain), Some(to)) = (&args.export_tink_keyset, &args.to) {
        eprintln!("{}", tink_export::export(&config, &store, domain, to)?);
        return Ok(());
    }
    let change = if let Some(plain) = &args.import {
        Change::Import(Keyring::load(plain)?)
    } else if let Some(secret) = &args.import_lambda_secret {
        Change::ImportLambda(read_lambda_secret(secret)?)
    } else if args.retire_lambda {
        Change::RetireLambda
    } else if args.add {
        Change::Add { stage: args.stage }
    } else if let Some(version) = args.set_primary {
        Change::SetPrimary(version)
    } else if let Some(version) = args.retire {
        Change::Retire(version)
    } else {
        Change::Create
    };
    let done = keygen::apply(&store, change, &args.check_replicas, &formats)?;
    let sealed = match config.kms {
        Some(_) => " (sealed)",
        None => "",
    };
    eprintln!("{done}{sealed}");
    Ok(())
}

/// The replaced service's key from its secret JSON, read without leaving a copy behind.
fn read_lambda_secret(path: &std::path::Path) -> anyhow::Result<LambdaKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    LambdaKey::from_secret_json(&text).with_context(|| format!("{}", path.display()))
}

/// `keygen` reads the configuration file but takes no serve flags.
#[derive(Serialize, Default)]
struct KeygenOverrides {}

fn api_key(args: ApiKeyArgs) -> anyhow::Result<()> {
    let operations: BTreeSet<Operation> = args
        .operations
        .iter()
        .map(|op| match op {
            OperationArg::Pseudonymize => Operation::Pseudonymize,
            OperationArg::Reidentify => Operation::Reidentify,
            OperationArg::Rewrap => Operation::Rewrap,
        })
        .collect();
    let domains: BTreeSet<String> = args.domains.into_iter().collect();
    if let Some(bad) = domains
        .iter()
        .find(|d| *d != "*" && pseudonym_service::Domain::new(d).is_err())
    {
        anyhow::bail!("--domains: {bad:?}: {InvalidDomain} (or * for every domain)");
    }
    let (key, mut entry) = auth::generate_key(&args.name, operations, domains);
    entry.max_concurrent_requests = args.max_concurrent_requests.map(|n| n as usize);
    entry.max_values_per_second = args.max_values_per_second;
    auth::append_entry(&args.api_keys_file, entry)?;
    eprintln!(
        "added API key {:?} to {}; the key follows on stdout and is not stored anywhere else",
        args.name,
        args.api_keys_file.display()
    );
    println!("{}", key.expose_secret());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_show_the_configuration_defaults() {
        let command = with_config_defaults(Cli::command());
        let serve = command.find_subcommand("serve").expect("serve").clone();
        let defaults = Config::default();
        for command in [&command, &serve] {
            let help = |id: &str| {
                let arg = command.get_arguments().find(|arg| arg.get_id() == id);
                arg.and_then(|arg| arg.get_help()).map(ToString::to_string)
            };
            let shows = |id: &str, default: String| {
                let help = help(id).unwrap_or_default();
                assert!(
                    help.ends_with(&format!(" [default: {default}]")),
                    "{id}: {help}"
                );
            };
            shows("listen", defaults.listen.to_string());
            shows("max_values", defaults.limits.max_values.to_string());
            shows(
                "request_timeout_ms",
                defaults.limits.request_timeout_ms.to_string(),
            );
            shows("compat_domain", defaults.compat_domain.clone());
            shows("log_format", "text".to_owned());
            shows("audit_fail_closed", defaults.audit_fail_closed.to_string());
            let no_default = help("keyring_file").unwrap_or_default();
            assert!(!no_default.contains("[default:"), "{no_default}");
        }
    }
}
