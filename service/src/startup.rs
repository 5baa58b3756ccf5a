//! From a [`Config`] to a running service: where keys come from (file, environment or dev
//! mode), the server loop and graceful shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::auth::{self, ApiKeys, ApiKeysError, Operation};
use crate::config::{Config, ConfigError, TokenFormat};
use crate::connections::ConnectionLimit;
use crate::engine::Engine;
use crate::keyring::{Keyring, KeyringError};
use crate::kms::{KeyringStore, KmsError};
use crate::tls::TlsError;

/// Name of the environment variable that may hold a whole keyring file's content.
pub const KEYRING_ENV: &str = "PSEUDONYM_KEYRING";

/// File names inside `data_dir` in dev mode.
pub const DEV_KEYRING: &str = "keyring.toml";
/// The dev API key file list.
pub const DEV_API_KEYS: &str = "api-keys.toml";
/// The dev API key itself (all operations, all domains), readable by its owner only.
pub const DEV_API_KEY: &str = "dev-api-key";

/// Where the keyring came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `PSEUDONYM_KEYRING` environment variable.
    Environment,
    /// A keyring file named in the configuration.
    File(PathBuf),
    /// Dev mode: files the service created itself in `data_dir`.
    Dev(PathBuf),
}

/// Keys ready to serve with.
#[derive(Debug)]
pub struct Keys {
    /// The keyring.
    pub keyring: Keyring,
    /// The API keys.
    pub api_keys: ApiKeys,
    /// Where the keyring came from.
    pub source: KeySource,
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The keyring is unusable.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The API key file is unusable.
    #[error(transparent)]
    ApiKeys(#[from] ApiKeysError),
    /// A keyring is configured but no API key file.
    #[error(
        "configuration: api_keys_file: required when a keyring is configured (create one with `pseudonymd api-key`)"
    )]
    MissingApiKeys,
    /// No keyring, but a production setting: dev mode would serve a throw-away keyring.
    #[error(
        "no keyring configured, but {setting} is: that is not dev mode. Set keyring_file (or PSEUDONYM_KEYRING), or remove {setting} to run in dev mode"
    )]
    KeyringMissing {
        /// The production setting found.
        setting: &'static str,
    },
    /// The API key file lists no key: every request would be refused.
    #[error("API key file {0} lists no keys (add one with `pseudonymd api-key`)")]
    NoApiKeys(PathBuf),
    /// Dev mode could not write its files.
    #[error("dev mode: cannot write {path}: {source}")]
    DevFiles {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The audit log could not be opened.
    #[error("audit_log {path}: {source}")]
    Audit {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The sealed keyring could not be opened.
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `compat_tokens = "seed"` without the replaced service's key.
    #[error(
        "configuration: compat_tokens: \"seed\" needs the replaced service's key in the keyring (pseudonymd keygen --import-seed-secret)"
    )]
    SeedKeyMissing,
    /// A configuration that cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Loads the keyring from `keyring_env` (the content of [`KEYRING_ENV`]), else from the
/// configured file, else from dev mode's files, creating them on first start.
pub fn load_keys(config: &Config, keyring_env: Option<SecretString>) -> Result<Keys, StartupError> {
    let (keyring, source) = match (keyring_env, &config.keyring_file) {
        (Some(text), _) => (
            Keyring::from_toml(text.expose_secret(), KEYRING_ENV)?,
            KeySource::Environment,
        ),
        (None, Some(path)) => (
            KeyringStore::new(path, config.kms.as_ref())?.load()?,
            KeySource::File(path.clone()),
        ),
        (None, None) => match production_setting(config) {
            Some(setting) => return Err(StartupError::KeyringMissing { setting }),
            None => return load_dev_keys(config),
        },
    };
    let api_keys_file = config
        .api_keys_file
        .as_deref()
        .ok_or(StartupError::MissingApiKeys)?;
    Ok(Keys {
        keyring,
        api_keys: load_api_keys(api_keys_file)?,
        source,
    })
}

/// A setting that only a production deployment has, which rules dev mode out.
fn production_setting(config: &Config) -> Option<&'static str> {
    [
        ("api_keys_file", config.api_keys_file.is_some()),
        ("kms", config.kms.is_some()),
        ("tls", config.tls.cert_file.is_some()),
        ("audit_log", config.audit_log.is_some()),
        ("audit_fail_closed", config.audit_fail_closed),
        ("metrics_require_api_key", config.metrics_require_api_key),
        (
            "listen (an address other than loopback)",
            !config.listen.ip().is_loopback(),
        ),
    ]
    .into_iter()
    .find_map(|(setting, set)| set.then_some(setting))
}

fn load_api_keys(path: &Path) -> Result<ApiKeys, StartupError> {
    let api_keys = ApiKeys::load(path)?;
    if api_keys.is_empty() {
        return Err(StartupError::NoApiKeys(path.to_owned()));
    }
    Ok(api_keys)
}

fn load_dev_keys(config: &Config) -> Result<Keys, StartupError> {
    let dir = &config.data_dir;
    let dev_error = |path: &Path| {
        let path = path.to_owned();
        move |source| StartupError::DevFiles { path, source }
    };
    create_private_dir(dir).map_err(dev_error(dir))?;

    let keyring_path = dir.join(DEV_KEYRING);
    let keyring = if keyring_path.exists() {
        Keyring::load(&keyring_path)?
    } else {
        let keyring = Keyring::generate();
        keyring.save(&keyring_path)?;
        keyring
    };

    let api_keys_path = dir.join(DEV_API_KEYS);
    let key_path = dir.join(DEV_API_KEY);
    if !key_path.exists() {
        let (key, entry) = auth::generate_key(
            "dev",
            [
                Operation::Pseudonymize,
                Operation::Reidentify,
                Operation::Rewrap,
            ]
            .into(),
            ["*".to_owned()].into(),
        );
        crate::keyring::write_private_file(&key_path, key.expose_secret().as_bytes())
            .map_err(dev_error(&key_path))?;
        auth::append_entry(&api_keys_path, entry)?;
    }
    Ok(Keys {
        keyring,
        api_keys: load_api_keys(&api_keys_path)?,
        source: KeySource::Dev(dir.clone()),
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Binds the configured address (port 0 picks a free one).
pub async fn bind(config: &Config) -> Result<TcpListener, StartupError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartupError::Listen {
            addr: config.listen,
            source,
        })
}

/// The listener's TLS settings, to serve with and to reload: `None` for plain HTTP.
pub fn tls(config: &Config) -> Result<Option<RustlsConfig>, StartupError> {
    if !config.tls.enabled()? {
        return Ok(None);
    }
    Ok(Some(RustlsConfig::from_config(config.tls.server_config()?)))
}

/// How often an HTTP/2 connection is pinged, and how long its answer may take, so a peer that
/// vanished does not hold a connection.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then stops accepting, marks the service not ready and
/// gives in-flight requests up to the request timeout to finish.
///
/// Every connection is bounded: at most `limits.max_connections` open, the TLS handshake, the
/// first request's headers and each later request's headers (so an idle HTTP/1 connection too)
/// within `limits.header_read_timeout_ms`; HTTP/2 peers answer pings.
pub async fn serve(
    listener: TcpListener,
    tls: Option<RustlsConfig>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = api::router(state.clone()).into_make_service();
    let handle = Handle::<std::net::SocketAddr>::new();
    let drain = state.limits().request_timeout();
    let headers = state.limits().header_read_timeout();
    let connections = ConnectionLimit::new(state.limits().max_connections);
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            state.set_not_ready();
            tracing::info!("shutting down: finishing in-flight requests");
            handle.graceful_shutdown(Some(drain));
        }
    });
    let mut server = axum_server::Server::from_listener(listener)
        .handle(handle)
        .first_request_timeout(headers);
    let http = server.http_builder();
    http.http1().header_read_timeout(headers);
    http.http2()
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    match tls {
        None => server.acceptor(connections).serve(app).await,
        Some(tls) => {
            let tls = RustlsAcceptor::new(tls)
                .handshake_timeout(headers)
                .acceptor(connections);
            server.acceptor(tls).serve(app).await
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The state a configuration and its keys give.
pub fn state(config: &Config, keys: &Keys) -> Result<AppState, StartupError> {
    let audit = AuditLog::open(config.audit_log.as_deref(), config.audit_fail_closed).map_err(
        |source| StartupError::Audit {
            path: config.audit_log.clone().unwrap_or_default(),
            source,
        },
    )?;
    Ok(AppState::new(
        engine(config, &keys.keyring)?,
        keys.api_keys.clone(),
        config,
        audit,
    ))
}

/// The engine of `keyring`, checked against what the configuration asks of it.
fn engine(config: &Config, keyring: &Keyring) -> Result<Engine, StartupError> {
    if config.compat_tokens == TokenFormat::Seed && keyring.seed_key().is_none() {
        return Err(StartupError::SeedKeyMissing);
    }
    Ok(Engine::new(keyring).with_compat_domain(config.compat_domain()?))
}

/// Loads the keys and the TLS files again from the sources of the start and serves them from
/// the next request (or connection) on. On any error everything in service stays as it was.
pub fn reload(
    config: &Config,
    state: &AppState,
    tls: Option<&RustlsConfig>,
    keyring_env: Option<SecretString>,
) -> Result<Keys, StartupError> {
    let keys = load_keys(config, keyring_env)?;
    let server_config = tls.map(|_| config.tls.server_config()).transpose()?;
    state.replace_keys(engine(config, &keys.keyring)?, keys.api_keys.clone());
    if let (Some(tls), Some(server_config)) = (tls, server_config) {
        tls.reload_from_config(server_config);
    }
    Ok(keys)
}

/// Reloads the keyring, API keys and TLS files on every SIGHUP, logging what happened, until
/// the process ends. `keyring_env` reads `PSEUDONYM_KEYRING` afresh each time.
#[cfg(unix)]
pub async fn reload_on_sighup(
    config: Config,
    state: AppState,
    tls: Option<RustlsConfig>,
    keyring_env: fn() -> Option<SecretString>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: keys reload only on restart");
        return;
    };
    while hangups.recv().await.is_some() {
        let (config, reloading, tls) = (config.clone(), state.clone(), tls.clone());
        // Blocking: a keyring sealed by a KMS is opened over HTTP.
        reload_logged(&state, move || {
            reload(&config, &reloading, tls.as_ref(), keyring_env())
        })
        .await;
        // After log rotation moved the audit file away, write to a new one at its path.
        if let Err(error) = state.reopen_audit().await {
            tracing::error!(%error, "audit log not reopened; the file open before stays in use");
        }
    }
}

/// Runs one reload on a blocking thread and logs and counts its outcome. A reload that panics
/// is an error like any other: the keys in service stay, and the next SIGHUP reloads again.
pub async fn reload_logged(
    state: &AppState,
    reload: impl FnOnce() -> Result<Keys, StartupError> + Send + 'static,
) {
    let outcome = match tokio::task::spawn_blocking(reload).await {
        Ok(Ok(keys)) => {
            tracing::info!(
                primary = keys.keyring.primary(),
                versions = ?keys.keyring.keys().map(|(v, _)| v).collect::<Vec<_>>(),
                api_keys = keys.api_keys.len(),
                "reloaded keys"
            );
            "ok"
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "reload failed; the keys loaded before stay in service");
            "failed"
        }
        Err(_) => {
            tracing::error!("reload panicked; the keys loaded before stay in service");
            "panicked"
        }
    };
    state.metrics().add_reload(outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_mode_creates_its_keys_once_and_reuses_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().join("dev"),
            ..Config::default()
        };
        let first = load_keys(&config, None).expect("dev mode starts");
        assert_eq!(first.source, KeySource::Dev(config.data_dir.clone()));
        let key = std::fs::read_to_string(config.data_dir.join(DEV_API_KEY)).expect("key file");
        assert!(first.api_keys.authenticate(&key).is_some());

        let second = load_keys(&config, None).expect("dev mode restarts");
        assert_eq!(second.api_keys.len(), 1);
        let a = Engine::new(&first.keyring);
        let b = Engine::new(&second.keyring);
        let vin = crate::Domain::new("vin").expect("valid");
        let mode = pseudonym_client::Mode::Deterministic;
        assert_eq!(
            a.pseudonymize(vin, mode, &[Some("x")]),
            b.pseudonymize(vin, mode, &[Some("x")])
        );
    }

    /// Found in review: with an API key file and no keyring, dev mode appended an all-powerful
    /// key to that (production) file and served a throw-away keyring.
    #[test]
    fn production_settings_without_a_keyring_refuse_to_start_and_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_keys_file = dir.path().join("prod-keys.toml");
        std::fs::write(&api_keys_file, "").expect("write");
        let config = Config {
            data_dir: dir.path().join("dev"),
            api_keys_file: Some(api_keys_file.clone()),
            ..Config::default()
        };
        let error = load_keys(&config, None).expect_err("no dev mode");
        assert!(error.to_string().contains("api_keys_file"), "{error}");
        assert_eq!(std::fs::read_to_string(&api_keys_file).expect("read"), "");
        assert!(!config.data_dir.exists());

        let config = Config {
            data_dir: dir.path().join("dev"),
            audit_log: Some(dir.path().join("audit.jsonl")),
            ..Config::default()
        };
        let error = load_keys(&config, None).expect_err("no dev mode");
        assert!(error.to_string().contains("audit_log"), "{error}");

        let config = Config {
            data_dir: dir.path().join("dev"),
            listen: "0.0.0.0:0".parse().expect("address"),
            ..Config::default()
        };
        let error = load_keys(&config, None).expect_err("no dev mode on every interface");
        assert!(error.to_string().contains("listen"), "{error}");
    }

    /// Found in review: a panic in a reload ended the reload task, so later SIGHUPs did
    /// nothing, silently.
    #[tokio::test]
    async fn a_reload_that_panics_is_logged_and_counted_and_the_next_one_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().join("dev"),
            ..Config::default()
        };
        let keys = load_keys(&config, None).expect("dev keys");
        let state = state(&config, &keys).expect("state");
        reload_logged(&state, || panic!("a reload that panics")).await;
        let again = config.clone();
        reload_logged(&state, move || load_keys(&again, None)).await;
        let metrics = state.metrics().render();
        for line in [
            "pseudonym_reloads_total{outcome=\"panicked\"} 1",
            "pseudonym_reloads_total{outcome=\"ok\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
    }

    #[test]
    fn a_configured_keyring_needs_an_api_key_file() {
        let keyring = Keyring::generate();
        let text = SecretString::from(keyring.to_toml().to_string());
        let error = load_keys(&Config::default(), Some(text)).expect_err("no key file");
        assert!(matches!(error, StartupError::MissingApiKeys));
    }
}
