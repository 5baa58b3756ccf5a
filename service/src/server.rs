//! Serving: one entry, [`run`], that serves a [`Service`] on a listener until a shutdown future
//! completes, then drains. `pseudonymd`, the tests and the end-to-end replicas all start the
//! service through it.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::config::{Config, TokenFormat};
use crate::connections::ConnectionLimit;
use crate::engine::Engine;
use crate::error::Error;
use crate::keyring::Keyring;
use crate::keys::Keys;

/// A service ready to serve: its state, its routes and its TLS settings.
pub struct Service {
    state: AppState,
    router: Router,
    tls: Option<RustlsConfig>,
}

impl Service {
    /// The service `config` describes, serving `keys`.
    pub fn new(config: &Config, keys: &Keys) -> Result<Service, Error> {
        let state = state(config, keys)?;
        Ok(Service {
            router: api::router(state.clone()),
            tls: tls(config)?,
            state,
        })
    }

    /// What every request shares: keys in service, limits, metrics.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The listener's TLS settings (reloaded in place on SIGHUP); `None` for plain HTTP.
    pub fn tls(&self) -> Option<&RustlsConfig> {
        self.tls.as_ref()
    }

    /// Every route with its layers, to send requests to in process (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The same service with `wrap` around its routes (the end-to-end tests inject faults so).
    pub fn map_router(self, wrap: impl FnOnce(Router) -> Router) -> Service {
        Service {
            router: wrap(self.router),
            ..self
        }
    }
}

/// Binds the configured address (port 0 picks a free one).
pub async fn bind(config: &Config) -> Result<TcpListener, Error> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })
}

/// The listener's TLS settings, to serve with and to reload: `None` for plain HTTP.
fn tls(config: &Config) -> Result<Option<RustlsConfig>, Error> {
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
pub async fn run(
    listener: TcpListener,
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Service { state, router, tls } = service;
    let app = router.into_make_service();
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
fn state(config: &Config, keys: &Keys) -> Result<AppState, Error> {
    let audit = AuditLog::open(config.audit_log.as_deref(), config.audit_fail_closed).map_err(
        |source| Error::Audit {
            path: config.audit_log.clone().unwrap_or_default(),
            source,
        },
    )?;
    Ok(AppState::new(
        engine(config, &keys.keyring)?,
        keys.api_keys.clone(),
        config,
        config.formats()?,
        audit,
    ))
}

/// The engine of `keyring`, checked against what the configuration asks of it.
pub(crate) fn engine(config: &Config, keyring: &Keyring) -> Result<Engine, Error> {
    if config.compat_tokens == TokenFormat::Lambda && keyring.lambda_key().is_none() {
        return Err(Error::LambdaKeyMissing);
    }
    config.formats()?.check(keyring)?;
    Ok(Engine::new(keyring)
        .with_compat_domain(config.compat_domain()?)
        .with_tink_domains(config.tink_domains()))
}
