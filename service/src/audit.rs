//! The audit trail: one JSON line per re-identification or rewrap request, refused ones
//! included, to its own sink, apart from the log: a file (`audit_log`), or standard output. No
//! log filter turns it off. Lines name the API key, the domain, counts, the outcome and, for a
//! refusal, its code; never a value, a token or a key.
//!
//! One thread owns the sink and writes each line before the request that caused it is answered;
//! request tasks wait for it without blocking a runtime thread, for at most [`ACK_WAIT`]: a line
//! not written by then counts as a failed write (a sink that hangs, a full pipe, a dead network
//! mount, must not hang every privileged request). With `audit_fail_closed`, a line that cannot
//! be written fails its request: no plaintext leaves without its audit line, and each such line
//! is synced to disk before the answer.
//!
//! Lines of refused requests ([`AuditLog::record_refusal`]: no or unknown key, a domain or
//! operation the key may not use, an unreadable body) never wait, since nothing was released:
//! they queue if fewer than [`REFUSALS_QUEUED`] refusals wait already and are otherwise counted
//! as dropped, so a flood of refusals can neither stall the service nor take the queue's room
//! from the lines of requests that release plaintext.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{ApiError, Error};
use serde::Serialize;
use tokio::sync::oneshot;

/// Lines that may wait for the writer at once.
pub const QUEUE: usize = 4096;

/// Refusal lines that may wait for the writer at once: a quarter of the queue, the rest kept for
/// the lines of requests that release plaintext.
pub const REFUSALS_QUEUED: usize = QUEUE / 4;

/// How long a request waits for its line to be written.
pub const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where audit lines go, and what a failed write means.
#[derive(Debug)]
pub struct AuditLog {
    writer: mpsc::SyncSender<Command>,
    fail_closed: bool,
    dropped: AtomicU64,
    /// Refusal lines queued and not written yet (the writer counts them down).
    refusals_queued: Arc<AtomicUsize>,
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

/// A privileged request's audit line, until it is written: the caller's name once its key is
/// recognised, and whether the request's own code wrote the line. A line the request did not
/// write is written for it when it ends ([`AuditLog::record_unanswered`]), so no privileged
/// request goes without one.
#[derive(Debug, Default)]
pub struct Pending {
    caller: OnceLock<String>,
    recorded: AtomicBool,
}

impl Pending {
    /// Names the caller, once its API key is recognised.
    pub fn note_caller(&self, name: &str) {
        let _ = self.caller.set(name.to_owned());
    }

    /// The request's line was written (or queued).
    pub fn mark_recorded(&self) {
        self.recorded.store(true, Ordering::SeqCst);
    }

    /// Whether the request's own code wrote its line.
    pub fn was_recorded(&self) -> bool {
        self.recorded.load(Ordering::SeqCst)
    }
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
    /// A line, and whom to tell once it is written.
    Line(Vec<u8>, oneshot::Sender<io::Result<()>>),
    /// A refusal's line: nobody waits for it.
    Refusal(Vec<u8>),
    Reopen(oneshot::Sender<io::Result<()>>),
}

/// Appends the line of an operation outside any request (`keygen --export-tink-keyset`) to
/// `path`, or to standard output without one, synced to disk before it returns: the operation
/// goes ahead only once its line is written.
pub fn record_now(path: Option<&Path>, record: &AuditRecord<'_>) -> io::Result<()> {
    let line = line_of(record)?;
    match path {
        Some(path) => {
            let mut file = open_append(path)?;
            file.write_all(&line)?;
            file.sync_all()
        }
        None => {
            let mut out = io::stdout().lock();
            out.write_all(&line)?;
            out.flush()
        }
    }
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
        let refusals_queued = Arc::new(AtomicUsize::new(0));
        let queued = refusals_queued.clone();
        std::thread::Builder::new()
            .name("pseudonym-audit".to_owned())
            .spawn(move || write_lines(sink, commands, &queued, fail_closed))?;
        Ok(AuditLog {
            writer,
            fail_closed,
            dropped: AtomicU64::new(0),
            refusals_queued,
        })
    }

    /// Whether a line that cannot be written must fail its request.
    pub fn fail_closed(&self) -> bool {
        self.fail_closed
    }

    /// Writes one line and waits until it is written (flushed to the file or stdout; synced to
    /// disk with `fail_closed`), for at most [`ACK_WAIT`].
    pub async fn record(&self, record: &AuditRecord<'_>) -> Result<(), Error> {
        tokio::time::timeout(ACK_WAIT, self.write(record))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the audit writer did not write the line within 2 s",
                ))
            })
            .map_err(Error::AuditWrite)
    }

    async fn write(&self, record: &AuditRecord<'_>) -> io::Result<()> {
        let (done, written) = oneshot::channel();
        let line = Command::Line(line_of(record)?, done);
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

    /// Writes the line of a request that releases something (its answer), marking `pending`
    /// written when the answer goes out. A line that cannot be written fails the request
    /// (`audit_unavailable`) only with `audit_fail_closed`, and `pending` stays unwritten so
    /// the refusal gets its own line ([`AuditLog::record_unanswered`]); else the failure is
    /// logged and the answer goes out.
    pub async fn record_answer(
        &self,
        record: &AuditRecord<'_>,
        pending: Option<&Pending>,
    ) -> Result<(), ApiError> {
        match self.record(record).await {
            Ok(()) => {}
            Err(error) if self.fail_closed => {
                tracing::error!(%error, "audit line not written: the request is refused");
                return Err(ApiError::AuditUnavailable);
            }
            Err(error) => tracing::error!(%error, "audit line not written"),
        }
        if let Some(pending) = pending {
            pending.mark_recorded();
        }
        Ok(())
    }

    /// Queues the line of a refusal the request's own code saw, marking `pending` written.
    pub fn record_refused(&self, record: &AuditRecord<'_>, pending: Option<&Pending>) {
        self.record_refusal(record);
        if let Some(pending) = pending {
            pending.mark_recorded();
        }
    }

    /// The line of a privileged request that ended without one (refused before its code could
    /// write it: no or unknown key, an unreadable or oversized body, overload, a timeout):
    /// `operation` refused for `reason`, queued without waiting.
    pub fn record_unanswered(
        &self,
        operation: &'static str,
        pending: &Pending,
        reason: &'static str,
    ) {
        if pending.was_recorded() {
            return;
        }
        let mut record = AuditRecord::now(operation, Outcome::Refused);
        record.api_key = pending.caller.get().map(String::as_str);
        record.reason = Some(reason);
        self.record_refusal(&record);
    }

    /// Queues the line of a refused request, without waiting; when [`REFUSALS_QUEUED`] wait
    /// already (or the queue is full) the line is dropped and counted ([`AuditLog::dropped`]).
    pub fn record_refusal(&self, record: &AuditRecord<'_>) {
        let room = self
            .refusals_queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                (queued < REFUSALS_QUEUED).then_some(queued + 1)
            })
            .is_ok();
        let queued = room
            && line_of(record)
                .ok()
                .is_some_and(|line| self.writer.try_send(Command::Refusal(line)).is_ok());
        if room && !queued {
            self.refusals_queued.fetch_sub(1, Ordering::SeqCst);
        }
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

/// The writer thread: one line at a time, each written whole before it is acknowledged (with
/// `sync`, a line someone waits for is synced to disk first, and with it every refusal before
/// it). After a failed write the next line starts on a line of its own, so a fragment never
/// corrupts the line after it. Ends when the log is dropped.
fn write_lines(
    mut sink: Sink,
    commands: mpsc::Receiver<Command>,
    refusals_queued: &AtomicUsize,
    sync: bool,
) {
    let mut after_failure = false;
    for command in commands {
        let (line, done) = match command {
            Command::Line(line, done) => (line, Some(done)),
            Command::Refusal(line) => {
                refusals_queued.fetch_sub(1, Ordering::SeqCst);
                (line, None)
            }
            Command::Reopen(done) => {
                let reopened = match &mut sink {
                    Sink::Stdout => Ok(()),
                    Sink::File { path, file } => open_append(path).map(|new| *file = new),
                };
                let _ = done.send(reopened);
                continue;
            }
        };
        let start = if after_failure { &b"\n"[..] } else { &b""[..] };
        let synced = sync && done.is_some();
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
                .and_then(|()| if synced { file.sync_data() } else { Ok(()) }),
        };
        after_failure = written.is_err();
        if let Some(done) = done {
            let _ = done.send(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes lines until its pipe is full, then hangs: a FIFO whose reader never
    /// reads. The reader is returned, to keep it open.
    #[cfg(target_os = "linux")]
    fn stalled_sink(dir: &Path) -> (PathBuf, File) {
        let fifo = dir.join("audit.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Read and write, so the open does not wait for a writer (Linux allows it on a FIFO).
        let reader = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .expect("reader");
        (fifo, reader)
    }

    /// Found in review: a request waited for its line with no bound, even fail-open, so a sink
    /// that hangs hung every privileged request; and refusals shared the writer with them.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_sink_holds_a_request_for_at_most_the_wait_and_refusals_keep_their_share() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (fifo, _reader) = stalled_sink(dir.path());
        let log = AuditLog::open(Some(&fifo), false).expect("opened");
        let record = AuditRecord::now("reidentify", Outcome::Ok);
        for _ in 0..10 * QUEUE {
            log.record_refusal(&record);
        }
        // The pipe took a few hundred lines and the writer hangs on the next; of the rest, no
        // more than their share waits in the queue.
        let dropped = log.dropped() as usize;
        assert!(
            dropped >= 10 * QUEUE - REFUSALS_QUEUED - 1_000,
            "{dropped} dropped"
        );
        let started = std::time::Instant::now();
        let written = tokio::time::timeout(ACK_WAIT * 5, log.record(&record))
            .await
            .expect("bounded by ACK_WAIT");
        assert!(written.is_err(), "not written: the sink hangs");
        assert!(started.elapsed() < ACK_WAIT * 2, "{:?}", started.elapsed());
    }
}
