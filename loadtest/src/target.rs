//! The service under test: a URL given, or a `pseudonymd` this tool starts on loopback; and the
//! service's resident memory, sampled while a run goes when its process is on this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A `pseudonymd` started by this tool in dev mode, in a temporary folder; stopped on drop.
pub struct Spawned {
    /// Where it listens.
    pub url: String,
    /// Its dev API key.
    pub api_key: String,
    /// Its process id.
    pub pid: u32,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts `binary` on a free loopback port with `extra` arguments, and with `config` as its
    /// configuration file if given.
    pub fn start(binary: &Path, extra: &[String], config: Option<&str>) -> anyhow::Result<Spawned> {
        let dir = tempfile::tempdir().context("temporary folder")?;
        let ready = dir.path().join("ready.json");
        let mut extra = extra.to_vec();
        if let Some(text) = config {
            let file = dir.path().join("pseudonymd.toml");
            std::fs::write(&file, text).context("the started service's configuration")?;
            extra.extend(["--config".to_owned(), file.display().to_string()]);
        }
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .arg("--ready-file")
            .arg(&ready)
            .arg("--data-dir")
            .arg(dir.path())
            .args(&extra)
            .env_remove("PSEUDONYM_KEYRING")
            .env_remove("PSEUDONYM_KEYRING_FILE")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let started = Instant::now();
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let ready: serde_json::Value =
                    serde_json::from_str(&text).context("the service's ready file")?;
                break ready["url"].as_str().unwrap_or_default().to_owned();
            }
            if child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                bail!("{} stopped before it listened", binary.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let api_key = std::fs::read_to_string(dir.path().join("dev-api-key"))
            .context("dev API key of the started service")?;
        Ok(Spawned {
            url,
            api_key,
            pid: child.id(),
            child,
            _dir: dir,
        })
    }

    /// The release build next to this tool, if any.
    pub fn default_binary() -> PathBuf {
        let here = std::env::current_exe().unwrap_or_default();
        here.with_file_name("pseudonymd")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process in bytes, from `/proc` (Linux only).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every 100 ms and keeps the highest value, until dropped.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let sink = peak.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if let Some(rss) = rss_bytes(pid) {
                    sink.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        RssSampler { peak, task }
    }

    /// The highest RSS seen, in MiB.
    pub fn peak_mib(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
