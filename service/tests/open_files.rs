//! `pseudonymd` raises its open-file limit to fit `limits.max_connections` (Linux: the limits
//! are read from `/proc`). Its own test binary: the test lowers the limit of its process, which
//! the service inherits.
#![cfg(target_os = "linux")]

mod common;

use common::start_daemon;

/// The soft limit on open files of process `pid`.
fn soft_open_files(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open-file limit");
    line.split_whitespace()
        .nth(3)
        .expect("a soft limit")
        .parse()
        .expect("a number")
}

#[test]
fn the_open_file_limit_is_raised_to_fit_the_connection_cap() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("the open-file limit");
    let low = hard.min(256);
    rlimit::setrlimit(rlimit::Resource::NOFILE, low, hard).expect("a lower soft limit");
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, _) = start_daemon(dir.path(), &["--max-connections", "2000"]);
    let soft = soft_open_files(daemon.pid());
    if hard >= 2000 + 64 {
        assert!(soft >= 2000 + 64, "soft limit {soft}, hard {hard}");
    } else {
        // Only as far as the hard limit, and the service says that the cap does not fit.
        assert_eq!(soft, hard);
        daemon.wait_for_output("does not fit under the open-file limit");
    }
}
