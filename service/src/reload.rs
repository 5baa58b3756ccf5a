//! Reloading keys and TLS files in a running service (SIGHUP), all or nothing.

use axum_server::tls_rustls::RustlsConfig;
use secrecy::SecretString;

use crate::api::AppState;
use crate::config::Config;
use crate::error::Error;
use crate::keys::{Keys, load_keys};
use crate::server::engine;

/// Loads the keys and the TLS files again from the sources of the start and serves them from
/// the next request (or connection) on. On any error everything in service stays as it was.
pub fn reload(
    config: &Config,
    state: &AppState,
    tls: Option<&RustlsConfig>,
    keyring_env: Option<SecretString>,
) -> Result<Keys, Error> {
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
    reload: impl FnOnce() -> Result<Keys, Error> + Send + 'static,
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
        let service = crate::server::Service::new(&config, &keys).expect("service");
        let state = service.state();
        reload_logged(state, || panic!("a reload that panics")).await;
        let again = config.clone();
        reload_logged(state, move || load_keys(&again, None)).await;
        let metrics = state.metrics().render();
        for line in [
            "pseudonym_reloads_total{outcome=\"panicked\"} 1",
            "pseudonym_reloads_total{outcome=\"ok\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
    }
}
