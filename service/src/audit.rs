//! The audit trail: one JSON line per re-identification or rewrap request, refused ones
//! included, to its own sink, apart from the log: a file (`audit_log`), or standard output. No
//! log filter turns it off. Lines name the API key, the domain, counts, the outcome and, for a
//! refusal, its code; never a value, a token or a key.
//!
//! One thread owns the sink and writes each line before the request that caused it is answered;
//! request tasks wait for it without blocking a runtime thread. With `audit_fail_closed`, a line
//! that cannot be written fails its request: no plaintext leaves without its audit line, and each
//! line is synced to disk before the answer.
//!
//! Lines of requests refused before anything was read ([`AuditLog::record_refusal`]) never wait:
//! they queue if there is room (at most [`QUEUE`] lines) and are otherwise counted as dropped,
//! so a flood of requests without a key can neither stall the service nor push real lines back.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use serde::Serialize;
use tokio::sync::oneshot;

/// Lines that may wait for the writer at once.
pub const QUEUE: usize = 4096;

/// Where audit lines go, and what a failed write means.
#[derive(Debug)]
pub struct AuditLog {
    writer: mpsc::SyncSender<Command>,
    fail_closed: bool,
    dropped: AtomicU64,
}

/// What happened to an audited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every item succeeded.
    Ok,
    /// Some items failed (listed per item in the answer).
    Partial,
    /// The request was refused: no key, a key that may not do this, or an invalid request.
    Refused,
}

/// One audited request.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    /// Milliseconds since the Unix epoch.
    pub time_unix_ms: u128,
    /// `reidentify` or `rewrap`.
    pub operation: &'static str,
    /// Name of the API key from the key file; `null` when no known key was presented.
    pub api_key: Option<&'a str>,
    /// The domain asked for; `null` when the request named none or not a valid one.
    pub domain: Option<&'a str>,
    /// Non-null items in the request (0 when it was refused before they were read).
    pub count: usize,
    /// Items that failed.
    pub failed: usize,
    /// What happened.
    pub outcome: Outcome,
    /// For a refusal, the error code the caller got (`unauthorized`, `forbidden`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

enum Command {
    /// A line, and whom to tell once it is written (nobody for a refusal).
    Line(Vec<u8>, Option<oneshot::Sender<io::Result<()>>>),
    Reopen(oneshot::Sender<io::Result<()>>),
}

fn line_of(record: &AuditRecord<'_>) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// The sink the writer thread owns.
enum Sink {
    Stdout,
    File { path: PathBuf, file: File },
}

impl AuditLog {
    /// Audit lines appended to `path` (created with mode 0600 if missing), or to standard output
    /// without a path. With `fail_closed`, [`AuditLog::record`] failures must fail the request.
    pub fn open(path: Option<&Path>, fail_closed: bool) -> io::Result<AuditLog> {
        let sink = match path {
            None => Sink::Stdout,
            Some(path) => Sink::File {
                path: path.to_owned(),
                file: open_append(path)?,
            },
        };
        let (writer, commands) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("pseudonym-audit".to_owned())
            .spawn(move || write_lines(sink, commands, fail_closed))?;
        Ok(AuditLog {
            writer,
            fail_closed,
            dropped: AtomicU64::new(0),
        })
    }

    /// Whether a line that cannot be written must fail its request.
    pub fn fail_closed(&self) -> bool {
        self.fail_closed
    }

    /// Writes one line and waits until it is written (flushed to the file or stdout; synced to
    /// disk with `fail_closed`).
    pub async fn record(&self, record: &AuditRecord<'_>) -> Result<(), Error> {
        self.write(record).await.map_err(Error::AuditWrite)
    }

    async fn write(&self, record: &AuditRecord<'_>) -> io::Result<()> {
        let (done, written) = oneshot::channel();
        let line = Command::Line(line_of(record)?, Some(done));
        let mut pending = Some(line);
        // The queue is bounded: wait for room without blocking a runtime thread.
        while let Some(command) = pending.take() {
            match self.writer.try_send(command) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(command)) => {
                    pending = Some(command);
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => {
                    return Err(io::Error::other("the audit writer stopped"));
                }
            }
        }
        written
            .await
            .map_err(|_| io::Error::other("the audit writer stopped"))??;
        Ok(())
    }

    /// Queues the line of a request refused before anything was read, without waiting; when
    /// the queue is full the line is dropped and counted ([`AuditLog::dropped`]).
    pub fn record_refusal(&self, record: &AuditRecord<'_>) {
        let queued = line_of(record)
            .ok()
            .is_some_and(|line| self.writer.try_send(Command::Line(line, None)).is_ok());
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusal lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Opens the file again by its path, after log rotation moved it (SIGHUP). On failure the
    /// file open before stays in use.
    pub async fn reopen(&self) -> Result<(), Error> {
        self.reopen_file().await.map_err(Error::AuditWrite)
    }

    async fn reopen_file(&self) -> io::Result<()> {
        let (done, reopened) = oneshot::channel();
        self.writer
            .try_send(Command::Reopen(done))
            .map_err(|_| io::Error::other("the audit queue is full or its writer stopped"))?;
        // A sink that hangs (a full pipe, a dead network mount) must not hang the caller.
        tokio::time::timeout(std::time::Duration::from_secs(5), reopened)
            .await
            .map_err(|_| io::Error::other("the audit writer did not answer within 5 s"))?
            .map_err(|_| io::Error::other("the audit writer stopped"))??;
        Ok(())
    }
}

impl AuditRecord<'_> {
    /// A record stamped now.
    pub fn now(operation: &'static str, outcome: Outcome) -> AuditRecord<'static> {
        AuditRecord {
            time_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |t| t.as_millis()),
            operation,
            api_key: None,
            domain: None,
            count: 0,
            failed: 0,
            outcome,
            reason: None,
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The writer thread: one line at a time, each written whole (and with `sync`, synced to disk)
/// before it is acknowledged. After a failed write the next line starts on a line of its own, so
/// a fragment never corrupts the line after it. Ends when the log is dropped.
fn write_lines(mut sink: Sink, commands: mpsc::Receiver<Command>, sync: bool) {
    let mut after_failure = false;
    for command in commands {
        match command {
            Command::Line(line, done) => {
                let start = if after_failure { &b"\n"[..] } else { &b""[..] };
                let written = match &mut sink {
                    Sink::Stdout => {
                        let mut out = io::stdout().lock();
                        out.write_all(start)
                            .and_then(|()| out.write_all(&line))
                            .and_then(|()| out.flush())
                    }
                    Sink::File { file, .. } => file
                        .write_all(start)
                        .and_then(|()| file.write_all(&line))
                        .and_then(|()| if sync { file.sync_data() } else { Ok(()) }),
                };
                after_failure = written.is_err();
                if let Some(done) = done {
                    let _ = done.send(written);
                }
            }
            Command::Reopen(done) => {
                let reopened = match &mut sink {
                    Sink::Stdout => Ok(()),
                    Sink::File { path, file } => open_append(path).map(|new| *file = new),
                };
                let _ = done.send(reopened);
            }
        }
    }
}
