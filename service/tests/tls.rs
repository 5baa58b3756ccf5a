//! HTTPS and mTLS through a running `pseudonymd`, with certificates made here by a throwaway
//! CA: the Rust client trusts the CA, presents a client certificate when asked, and a SIGHUP
//! brings in a new certificate without a restart (a bad one keeps the old).

mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, write_keys};
use pseudonym_client::{Client, Mode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A CA that signs server and client certificates.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` and its key, as PEM.
    fn sign(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("signed");
        (certificate.pem(), key.serialize_pem())
    }

    /// Writes a server certificate for loopback into `dir`.
    fn write_server_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = self.sign(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_file, cert).expect("write");
        std::fs::write(&key_file, key).expect("write");
        (cert_file, key_file)
    }

    /// A client identity: the client's key and certificate in one PEM.
    fn client_identity(&self, name: &str) -> String {
        let (cert, key) = self.sign(&[name], ExtendedKeyUsagePurpose::ClientAuth);
        format!("{key}{cert}")
    }
}

struct TlsDaemon {
    daemon: Daemon,
    admin: String,
    cert_file: PathBuf,
    key_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(ca: &TestCa, client_ca: Option<&TestCa>) -> TlsDaemon {
    start_with(ca, client_ca, &[])
}

fn start_with(ca: &TestCa, client_ca: Option<&TestCa>, extra: &[&str]) -> TlsDaemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keyring, api_keys, keys) = write_keys(dir.path());
    let (cert_file, key_file) = ca.write_server_files(dir.path());
    let path = |path: &Path| path.to_str().expect("utf-8").to_owned();
    let mut args = vec![
        "--keyring-file".to_owned(),
        path(&keyring),
        "--api-keys-file".to_owned(),
        path(&api_keys),
        "--tls-cert-file".to_owned(),
        path(&cert_file),
        "--tls-key-file".to_owned(),
        path(&key_file),
    ];
    if let Some(client_ca) = client_ca {
        let ca_file = dir.path().join("client-ca.pem");
        std::fs::write(&ca_file, client_ca.pem()).expect("write");
        args.extend(["--tls-client-ca-file".to_owned(), path(&ca_file)]);
    }
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(extra);
    TlsDaemon {
        daemon: Daemon::start(&args, &[]),
        admin: keys.admin,
        cert_file,
        key_file,
        _dir: dir,
    }
}

fn client(url: &str, key: &str, root: &TestCa, identity: Option<String>) -> Client {
    let mut builder = Client::builder()
        .url(url)
        .api_key(key)
        .root_certificates_pem(root.pem())
        .retry_policy(pseudonym_client::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        });
    if let Some(identity) = identity {
        builder = builder.client_identity_pem(identity);
    }
    builder.build().expect("client")
}

async fn round_trip(client: &Client) -> Result<(), pseudonym_client::Error> {
    let values = [Some("WVWZZZ1JZXW000001"), None];
    let tokens = client
        .pseudonymize("vin", Mode::Deterministic, &values)
        .await?;
    let back = client.reidentify("vin", &tokens).await?;
    assert!(back.errors.is_empty());
    assert_eq!(back.values, [Some("WVWZZZ1JZXW000001".to_owned()), None]);
    Ok(())
}

#[tokio::test]
async fn https_serves_clients_that_trust_the_ca_and_reloads_its_certificate() {
    let ca = TestCa::new("pseudonym test CA");
    let server = start(&ca, None);
    let url = &server.daemon.url;
    assert!(url.starts_with("https://"), "{url}");

    round_trip(&client(url, &server.admin, &ca, None))
        .await
        .expect("a client that trusts the CA");
    let stranger = TestCa::new("another CA");
    round_trip(&client(url, &server.admin, &stranger, None))
        .await
        .expect_err("a client that does not trust the CA");
    let plain = reqwest::get(url.replace("https://", "http://") + "/healthz").await;
    assert!(
        plain.map_or(true, |answer| !answer.status().is_success()),
        "plain HTTP must not be served"
    );

    // A new certificate from another CA, brought in by SIGHUP on the same socket.
    let renewed = TestCa::new("renewed CA");
    let dir = server.cert_file.parent().expect("folder").to_owned();
    let (cert_file, key_file) = renewed.write_server_files(&dir);
    assert_eq!(
        (&cert_file, &key_file),
        (&server.cert_file, &server.key_file)
    );
    server.daemon.hangup();
    server.daemon.wait_for_output("reloaded keys");
    round_trip(&client(url, &server.admin, &renewed, None))
        .await
        .expect("the renewed certificate is served");

    // A broken certificate file keeps the one in service.
    std::fs::write(&server.cert_file, "not a certificate").expect("write");
    server.daemon.hangup();
    server.daemon.wait_for_output("reload failed");
    round_trip(&client(url, &server.admin, &renewed, None))
        .await
        .expect("the last good certificate stays in service");
    let output = server.daemon.stop();
    assert!(output.contains("server.pem"), "{output}");
    assert!(!output.contains("PRIVATE KEY"), "{output}");
}

#[tokio::test]
async fn mtls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let ca = TestCa::new("pseudonym test CA");
    let clients = TestCa::new("client CA");
    let server = start(&ca, Some(&clients));
    let url = &server.daemon.url;

    round_trip(&client(
        url,
        &server.admin,
        &ca,
        Some(clients.client_identity("etl-job")),
    ))
    .await
    .expect("a client certificate from the client CA");
    round_trip(&client(url, &server.admin, &ca, None))
        .await
        .expect_err("no client certificate");
    let forger = TestCa::new("forger CA");
    round_trip(&client(
        url,
        &server.admin,
        &ca,
        Some(forger.client_identity("etl-job")),
    ))
    .await
    .expect_err("a client certificate from another CA");
}

/// Found in review: connections that never finished their request stayed open forever, over
/// HTTPS too. A connection that starts no TLS handshake is closed after the header timeout, and
/// one beyond the cap at once, before any handshake; clients are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_closes_silent_connections_and_those_beyond_the_cap() {
    let ca = TestCa::new("pseudonym test CA");
    let server = start_with(
        &ca,
        None,
        &["--header-read-timeout-ms", "2000", "--max-connections", "8"],
    );
    let url = &server.daemon.url;
    let addr = url.trim_start_matches("https://").to_owned();
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connects"),
        );
    }
    // All at once: the 500 ms handshake timeout must not run out while they are checked.
    let checks: Vec<_> = silent
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let closed = closed_within(&mut stream, 1000).await;
                (stream, closed)
            })
        })
        .collect();
    let mut silent = Vec::new();
    let mut at_once = 0;
    for check in checks {
        let (stream, closed) = check.await.expect("check ran");
        at_once += usize::from(closed);
        silent.push(stream);
    }
    assert_eq!(
        at_once, 4,
        "the connections beyond 8 are closed before any handshake"
    );
    for stream in &mut silent {
        assert!(
            closed_within(stream, 10_000).await,
            "no handshake: closed after 2 s"
        );
    }
    round_trip(&client(url, &server.admin, &ca, None))
        .await
        .expect("silent connections were closed and gave their place back");
}

/// Whether the server closes `stream` within `wait_ms`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait_ms: u64) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 64];
    let wait = std::time::Duration::from_millis(wait_ms);
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buffer)).await,
        Ok(Ok(0) | Err(_))
    )
}
