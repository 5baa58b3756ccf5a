//! `pseudonym-loadtest` raises its open-file limit to fit the connections of its run. Its own
//! test binary: the test lowers the limit of its process.
#![cfg(unix)]

use pseudonym_loadtest::fit_open_files;
use rlimit::Resource;

#[test]
fn the_open_file_limit_is_raised_to_fit_the_runs_connections() {
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).expect("the open-file limit");
    let low = hard.min(256);
    rlimit::setrlimit(Resource::NOFILE, low, hard).expect("a lower soft limit");

    // A run that fits is left as it is.
    if low >= 10 + 64 {
        assert_eq!(fit_open_files(10), None);
        assert_eq!(rlimit::getrlimit(Resource::NOFILE).expect("limit").0, low);
    }

    let warning = fit_open_files(2000);
    let (soft, _) = rlimit::getrlimit(Resource::NOFILE).expect("the open-file limit");
    if hard >= 2000 + 64 {
        assert!(soft >= 2000 + 64, "soft limit {soft}, hard {hard}");
        assert_eq!(warning, None);
    } else {
        // Only as far as the hard limit, and the tool says that the run does not fit.
        assert_eq!(soft, hard);
        let warning = warning.expect("a warning");
        assert!(warning.contains("2000 requests in flight"), "{warning}");
    }
}
