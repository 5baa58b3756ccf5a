//! Helpers shared by the service's integration tests: a server on a loopback port, API keys.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pseudonym_service::auth::{self, ApiKeyEntry, ApiKeys, Operation};
use pseudonym_service::config::Config;
use pseudonym_service::keyring::Keyring;
use pseudonym_service::keys::Keys;
use pseudonym_service::server::{self, Service};
use secrecy::ExposeSecret;

/// API keys of the test servers: one per kind of caller.
pub struct TestKeys {
    /// May do everything in every domain.
    pub admin: String,
    /// May only pseudonymize, only in `vin`.
    pub writer: String,
}

/// Writes a new keyring and an API key file into `dir`.
pub fn write_keys(dir: &Path) -> (PathBuf, PathBuf, TestKeys) {
    let keyring_file = dir.join("keyring.toml");
    Keyring::generate()
        .save(&keyring_file)
        .expect("save keyring");
    let api_keys_file = dir.join("api-keys.toml");
    let (entries, keys) = test_keys();
    for entry in entries {
        auth::append_entry(&api_keys_file, entry).expect("append key");
    }
    (keyring_file, api_keys_file, keys)
}

/// The test servers' API keys, and the key file entries that admit them.
fn test_keys() -> (Vec<ApiKeyEntry>, TestKeys) {
    let mut entries = Vec::new();
    let mut add = |name: &str, operations: &[Operation], domains: &[&str]| {
        let (key, entry) = auth::generate_key(
            name,
            operations.iter().copied().collect(),
            domains
                .iter()
                .map(|d| d.to_string())
                .collect::<BTreeSet<_>>(),
        );
        entries.push(entry);
        key.expose_secret().to_owned()
    };
    let keys = TestKeys {
        admin: add(
            "admin",
            &[
                Operation::Pseudonymize,
                Operation::Reidentify,
                Operation::Rewrap,
            ],
            &["*"],
        ),
        writer: add("writer", &[Operation::Pseudonymize], &["vin"]),
    };
    (entries, keys)
}

/// A service running in this process on a loopback port; stops when dropped.
pub struct TestServer {
    pub url: String,
    pub keys: TestKeys,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    /// Starts a server with the default configuration changed by `configure`.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with(Keyring::generate(), configure).await
    }

    /// Starts a server with `keyring` and the default configuration changed by `configure`.
    pub async fn start_with(keyring: Keyring, configure: impl FnOnce(&mut Config)) -> TestServer {
        let (entries, keys) = test_keys();
        let api_keys = ApiKeys::new(entries).expect("valid API keys");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..Config::default()
        };
        configure(&mut config);
        let service = Service::new(&config, &Keys::in_memory(keyring, api_keys)).expect("service");
        let listener = server::bind(&config).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::run(listener, service, async {
            let _ = rx.await;
        }));
        TestServer {
            url,
            keys,
            _shutdown: tx,
        }
    }

    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.post_raw(path, key, body.to_string()).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        body: String,
    ) -> (u16, serde_json::Value) {
        post_json(&self.url, path, key, body).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("request sent");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }
}

/// POSTs `body` to `url` + `path` (with `key` as `x-api-key` if given); the status and the JSON
/// answer (`Null` if there is none).
pub async fn post_json(
    url: &str,
    path: &str,
    key: Option<&str>,
    body: String,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let json = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A `pseudonymd` with a new keyring and API key file in `dir` (the keyring at
/// `dir/keyring.toml`), started with `extra` arguments.
pub fn start_daemon(dir: &Path, extra: &[&str]) -> (Daemon, TestKeys) {
    let (keyring, api_keys, keys) = write_keys(dir);
    let mut args = vec![
        "--keyring-file",
        keyring.to_str().expect("utf-8 path"),
        "--api-keys-file",
        api_keys.to_str().expect("utf-8 path"),
    ];
    args.extend(extra);
    (Daemon::start(&args, &[]), keys)
}

/// A `pseudonymd` process on a loopback port, killed when dropped. Its stderr is collected.
pub struct Daemon {
    pub url: String,
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts the binary with `args` and `envs` and waits until it listens (its `--ready-file`
    /// names the address).
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        use std::io::BufRead;
        let ready_dir = tempfile::tempdir().expect("tempdir");
        let ready_file = ready_dir.path().join("ready.json");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pseudonymd"))
            .args(["--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready_file)
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("PSEUDONYM_KEYRING")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("pseudonymd starts");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        // Both pipes are read as they come (standard output is the audit trail by default), so
        // neither fills and blocks the service.
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut sink = sink.lock().expect("not poisoned");
                    sink.push_str(&line);
                    sink.push('\n');
                }
            })
        };
        let readers = vec![
            collect(Box::new(child.stderr.take().expect("piped"))),
            collect(Box::new(child.stdout.take().expect("piped"))),
        ];
        let started = std::time::Instant::now();
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                let ready: serde_json::Value = serde_json::from_str(&text).expect("ready JSON");
                break ready["url"].as_str().expect("url").to_owned();
            }
            let exited = child.try_wait().expect("process status").is_some();
            if exited || started.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("pseudonymd did not start: {}", output.lock().expect("lock"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        Daemon {
            url,
            child,
            output,
            readers,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP: the service reloads its keys and TLS files.
    pub fn hangup(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -HUP");
    }

    /// Waits until the process has written `text` to stderr.
    pub fn wait_for_output(&self, text: &str) {
        let started = std::time::Instant::now();
        while !self.output().contains(text) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no {text:?} in: {}",
                self.output()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().expect("lock").clone()
    }

    /// Stops the process (SIGKILL) and returns everything it wrote to stdout and stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output.lock().expect("lock").clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The keyring of a golden vector file (its `keyring` object: `primary`, and `keys` of `version`
/// and `secret`): test keys only.
pub fn golden_keyring(keyring: &serde_json::Value) -> Keyring {
    let mut text = format!("primary = {}\n", keyring["primary"]);
    for key in keyring["keys"].as_array().expect("keys") {
        text.push_str(&format!(
            "[[keys]]\nversion = {}\nsecret = {}\n",
            key["version"], key["secret"]
        ));
    }
    Keyring::from_toml(&text, "golden").expect("golden keyring")
}

impl TestServer {
    /// POSTs an Arrow stream of `values` to `/v1/<route>` in the domain `vin` (`route` may go
    /// on with `&` and more of the query); the answer's batch, which must be a 200.
    pub async fn post_arrow(
        &self,
        route: &str,
        values: arrow_array::StringArray,
    ) -> arrow_array::RecordBatch {
        use arrow_array::Array;
        let (path, query) = route.split_once('&').unwrap_or((route, ""));
        let field = arrow_schema::Field::new("values", values.data_type().clone(), true);
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![field]));
        let column: arrow_array::ArrayRef = std::sync::Arc::new(values);
        let batch = arrow_array::RecordBatch::try_new(schema.clone(), vec![column]).expect("batch");
        let mut body = Vec::new();
        let mut writer =
            arrow_ipc::writer::StreamWriter::try_new(&mut body, &schema).expect("writer");
        writer.write(&batch).expect("written");
        writer.finish().expect("finished");
        drop(writer);
        let response = reqwest::Client::new()
            .post(format!("{}/v1/{path}?domain=vin&{query}", self.url))
            .header("content-type", "application/vnd.apache.arrow.stream")
            .header("x-api-key", &self.keys.admin)
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), 200);
        let bytes = response.bytes().await.expect("body");
        let mut reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                .expect("an Arrow stream");
        reader.next().expect("a batch").expect("readable")
    }
}
