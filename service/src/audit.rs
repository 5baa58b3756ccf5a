//! The audit trail: one JSON line per re-identification or rewrap request, refused ones
//! included, to its own sink (a file, or the `pseudonym::audit` log target), apart from the
//! access log. Lines name the API key, the domain, counts and the outcome, never a value.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Where audit lines go.
#[derive(Debug)]
pub struct AuditLog {
    file: Option<Mutex<BufWriter<File>>>,
}

/// What happened to an audited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every item succeeded.
    Ok,
    /// Some items failed (listed per item in the answer).
    Partial,
    /// The API key may not do this, or the request was not valid.
    Refused,
}

/// One audited request.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    /// Milliseconds since the Unix epoch.
    pub time_unix_ms: u128,
    /// `reidentify` or `rewrap`.
    pub operation: &'static str,
    /// Name of the API key from the key file.
    pub api_key: &'a str,
    /// The domain asked for.
    pub domain: &'a str,
    /// Non-null items in the request.
    pub count: usize,
    /// Items that failed.
    pub failed: usize,
    /// What happened.
    pub outcome: Outcome,
}

impl AuditLog {
    /// Audit lines appended to `path` (created with mode 0600 if missing), or, without a path,
    /// written as `tracing` events of target `pseudonym::audit`.
    pub fn open(path: Option<&Path>) -> std::io::Result<AuditLog> {
        let file = match path {
            None => None,
            Some(path) => {
                let mut options = OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Some(Mutex::new(BufWriter::new(options.open(path)?)))
            }
        };
        Ok(AuditLog { file })
    }

    /// Records one request. A sink that fails is reported in the service log; the request
    /// itself is not failed for it.
    pub fn record(
        &self,
        operation: &'static str,
        api_key: &str,
        domain: &str,
        count: usize,
        failed: usize,
        outcome: Outcome,
    ) {
        let record = AuditRecord {
            time_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |t| t.as_millis()),
            operation,
            api_key,
            domain,
            count,
            failed,
            outcome,
        };
        let Some(file) = &self.file else {
            tracing::info!(target: "pseudonym::audit", operation, api_key, domain, count, failed, outcome = ?outcome, "audit");
            return;
        };
        let written = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|line| {
                let mut file = file
                    .lock()
                    .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
                file.write_all(&line)?;
                file.write_all(b"\n")?;
                file.flush()
            });
        if let Err(error) = written {
            tracing::error!(%error, "cannot write the audit log");
        }
    }
}
