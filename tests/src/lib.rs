//! Helpers for the end-to-end tests: service replicas on loopback ports that can be killed, and
//! fault-injecting fronts.
//!
//! Each [`Replica`] runs on its own Tokio runtime, so [`Replica::kill`] drops its listener and
//! every open connection at once, as `kill -9` would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use pseudonym_service::api::AppState;
use pseudonym_service::auth::{self, ApiKeyEntry, ApiKeys, Operation};
use pseudonym_service::config::Config;
use pseudonym_service::keyring::Keyring;
use pseudonym_service::keys::Keys;
use pseudonym_service::server::{self, Service};
use pseudonym_service::{Domain, Engine};
use secrecy::ExposeSecret;

/// A keyring and an all-powerful API key, in memory: every replica of a fixture serves the same.
pub struct Fixture {
    /// The service configuration (defaults, on a loopback port).
    pub config: Config,
    /// The API key (all operations, all domains).
    pub api_key: String,
    keyring: zeroize::Zeroizing<String>,
    entry: ApiKeyEntry,
}

impl Fixture {
    /// A new random keyring and key.
    pub fn new() -> Fixture {
        Fixture::with_keyring(&Keyring::generate())
    }

    /// `keyring` and a new key.
    pub fn with_keyring(keyring: &Keyring) -> Fixture {
        let (key, entry) = auth::generate_key(
            "e2e",
            [
                Operation::Pseudonymize,
                Operation::Reidentify,
                Operation::Rewrap,
            ]
            .into(),
            ["*".to_owned()].into(),
        );
        Fixture {
            config: Config {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                // Audit lines would go to the test's standard output.
                audit_log: Some("/dev/null".into()),
                ..Config::default()
            },
            api_key: key.expose_secret().to_owned(),
            keyring: keyring.to_toml(),
            entry,
        }
    }

    /// The keys, as a replica serves them.
    pub fn keys(&self) -> Keys {
        Keys::in_memory(
            Keyring::from_toml(&self.keyring, "fixture").expect("keyring"),
            ApiKeys::new(vec![self.entry.clone()]).expect("API key"),
        )
    }

    /// What the engine itself answers, without any HTTP: the reference for end-to-end results.
    pub fn direct_pseudonyms(
        &self,
        domain: &str,
        mode: pseudonym_client::Mode,
        values: &[Option<String>],
    ) -> Vec<Option<String>> {
        let engine = Engine::new(&self.keys().keyring);
        engine.pseudonymize(Domain::new(domain).expect("valid domain"), mode, values)
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

/// How a replica misbehaves before it serves normally.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Serve every request.
    None,
    /// Answer the first `n` requests `503` without `Retry-After`.
    Unavailable(usize),
    /// Answer the first `n` requests `429` with `Retry-After: 1`.
    TooManyRequests(usize),
    /// Answer every request `503`.
    AlwaysUnavailable,
    /// Refuse every Arrow request as a service older than the Arrow form did: `400 bad_json`.
    RefusesArrow,
}

/// A service replica on a loopback port, on a runtime of its own.
pub struct Replica {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    addr: SocketAddr,
    fault: Fault,
    /// The service's state, for its metrics.
    pub state: AppState,
    /// Requests that reached this replica, faulty answers included.
    pub requests: Arc<AtomicUsize>,
    /// Of those, requests in the Arrow form.
    pub arrow_requests: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    /// Starts a replica of `fixture` that misbehaves as `fault` says.
    pub fn start(fixture: &Fixture, fault: Fault) -> Replica {
        Replica::start_at(fixture, fault, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts the replica again on its own port after [`Replica::kill`], as a restarted
    /// process would come back.
    pub fn restart(&mut self, fixture: &Fixture) {
        self.kill();
        *self = Replica::start_at(fixture, self.fault, self.addr);
    }

    fn start_at(fixture: &Fixture, fault: Fault, addr: SocketAddr) -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let requests = Arc::new(AtomicUsize::new(0));
        let arrow_requests = Arc::new(AtomicUsize::new(0));
        let (counter, arrow_counter) = (requests.clone(), arrow_requests.clone());
        let service = Service::new(&fixture.config, &fixture.keys())
            .expect("service")
            .map_router(|router: Router| {
                router.layer(axum::middleware::from_fn(
                    move |request: Request, next: Next| {
                        let seen = counter.fetch_add(1, Ordering::SeqCst);
                        let arrow = is_arrow(&request);
                        if arrow {
                            arrow_counter.fetch_add(1, Ordering::SeqCst);
                        }
                        async move { inject(fault, seen, arrow, request, next).await }
                    },
                ))
            });
        let state = service.state().clone();
        let listener = std::net::TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("non-blocking socket");
        let addr = listener.local_addr().expect("address");
        let url = format!("http://{addr}");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio socket");
            server::run(listener, service, std::future::pending()).await
        });
        Replica {
            url,
            addr,
            fault,
            state,
            requests,
            arrow_requests,
            runtime: Some(runtime),
        }
    }

    /// Stops the replica at once: listener and open connections are dropped mid-request.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Non-null values this replica pseudonymized (from its metrics).
    pub fn values_pseudonymized(&self) -> u64 {
        let metrics = self.state.metrics().render();
        metrics
            .lines()
            .filter(|line| line.starts_with("pseudonym_values_total{operation=\"pseudonymize\""))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn is_arrow(request: &Request) -> bool {
    let content_type = request.headers().get(axum::http::header::CONTENT_TYPE);
    content_type.is_some_and(|value| value == pseudonym_client::wire::ARROW_STREAM)
}

async fn inject(fault: Fault, seen: usize, arrow: bool, request: Request, next: Next) -> Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    if let (Fault::RefusesArrow, true) = (fault, arrow) {
        let body = r#"{"error":{"code":"bad_json","message":"the body is not valid JSON"}}"#;
        let json = [(header::CONTENT_TYPE, "application/json")];
        return (StatusCode::BAD_REQUEST, json, body).into_response();
    }
    let failing = match fault {
        Fault::None | Fault::RefusesArrow => None,
        Fault::Unavailable(n) => (seen < n).then_some((StatusCode::SERVICE_UNAVAILABLE, None)),
        Fault::TooManyRequests(n) => {
            (seen < n).then_some((StatusCode::TOO_MANY_REQUESTS, Some("1")))
        }
        Fault::AlwaysUnavailable => Some((StatusCode::SERVICE_UNAVAILABLE, None)),
    };
    match failing {
        Some((status, retry_after)) => {
            let mut response = (status, "injected fault").into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from_static(seconds),
                );
            }
            response
        }
        None => next.run(request).await,
    }
}

/// A TCP front that accepts and at once drops the first `drops` connections, then forwards
/// every later one to `target`. Runs on the caller's runtime until dropped.
pub struct DroppingProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl DroppingProxy {
    /// Starts the proxy in front of `target` (`http://host:port`).
    pub async fn start(target: &str, drops: usize) -> DroppingProxy {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                accepted += 1;
                if accepted <= drops {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        DroppingProxy { url, task }
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
