//! Checks of a key rollout across a fleet, made by `keygen` before it changes the keyring.
//!
//! Replicas share nothing but the keyring they load, so a fleet is in a safe state only if no
//! replica makes pseudonyms of a version another replica cannot open yet. `keygen
//! --check-replicas` asks every replica's `/readyz` which versions it holds, with their
//! fingerprints, and refuses `--set-primary N` unless all of them hold `N` under the secret of
//! the keyring being changed (the same fingerprint: a number alone could name another secret),
//! and `--retire N` while any of them still makes pseudonyms with `N`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// What one replica's `/readyz` says of its keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReplicaKeys {
    /// The version it makes pseudonyms with.
    pub primary_key_version: u32,
    /// Every version it can open.
    pub key_versions: Vec<u32>,
    /// The fingerprint of each version it holds (none from a replica older than them).
    #[serde(default)]
    pub key_fingerprints: BTreeMap<u32, String>,
}

/// Asks each of `urls` (base URLs, `http://host:port`) what keys it holds.
pub fn fetch(urls: &[String]) -> Result<Vec<(String, ReplicaKeys)>, RolloutError> {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| unreachable(urls.first().map_or("", String::as_str), e))?;
    urls.iter()
        .map(|url| {
            let answer = client
                .get(format!("{}/readyz", url.trim_end_matches('/')))
                .send()
                .map_err(|e| unreachable(url, e))?;
            if !answer.status().is_success() {
                return Err(RolloutError::Unreachable {
                    url: url.clone(),
                    reason: format!("HTTP {}", answer.status()),
                });
            }
            let keys = answer.json().map_err(|e| unreachable(url, e))?;
            Ok((url.clone(), keys))
        })
        .collect()
}

fn unreachable(url: &str, error: reqwest::Error) -> RolloutError {
    RolloutError::Unreachable {
        url: url.to_owned(),
        reason: error.without_url().to_string(),
    }
}

/// Whether every replica holds `version` with the secret whose fingerprint is `fingerprint`,
/// so it may become the primary.
pub fn check_set_primary(
    replicas: &[(String, ReplicaKeys)],
    version: u32,
    fingerprint: &str,
) -> Result<(), RolloutError> {
    for (url, keys) in replicas {
        if !keys.key_versions.contains(&version) {
            return Err(RolloutError::LacksVersion {
                url: url.clone(),
                version,
                held: keys.key_versions.clone(),
            });
        }
        let found = keys.key_fingerprints.get(&version);
        if found.map(String::as_str) != Some(fingerprint) {
            return Err(RolloutError::KeyDiffers {
                url: url.clone(),
                version,
                expected: fingerprint.to_owned(),
                found: found.cloned(),
            });
        }
    }
    Ok(())
}

/// Whether no replica makes pseudonyms with `version` any more, so it may be retired.
pub fn check_retire(replicas: &[(String, ReplicaKeys)], version: u32) -> Result<(), RolloutError> {
    match replicas
        .iter()
        .find(|(_, keys)| keys.primary_key_version == version)
    {
        Some((url, _)) => Err(RolloutError::StillPrimary {
            url: url.clone(),
            version,
        }),
        None => Ok(()),
    }
}

/// Why a replica refuses a key change (or could not be asked).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A replica could not say which keys it holds.
    #[error(
        "replica {url} did not answer /readyz as ready ({reason}); every replica must, to check the rollout"
    )]
    Unreachable {
        /// The replica.
        url: String,
        /// What went wrong, without any response body.
        reason: String,
    },
    /// A replica would be unable to open pseudonyms of the new primary.
    #[error(
        "replica {url} does not hold key version {version} (it holds {held:?}): reload it \
         (SIGHUP) with the staged keyring first, or it cannot open what the others would make"
    )]
    LacksVersion {
        /// The replica.
        url: String,
        /// The version asked for.
        version: u32,
        /// The versions it holds.
        held: Vec<u32>,
    },
    /// A replica holds the version under another secret (or does not say which one it holds).
    #[error(
        "replica {url} holds key version {version} with {}; it must be this keyring's \
         ({expected}), or the replicas would make pseudonyms the others cannot open: \
         give every replica the same keyring file",
        found.as_deref().map_or("no fingerprint (an older pseudonymd: upgrade it first)".to_owned(), |f| format!("fingerprint {f}"))
    )]
    KeyDiffers {
        /// The replica.
        url: String,
        /// The version asked for.
        version: u32,
        /// This keyring's fingerprint of it.
        expected: String,
        /// The replica's, if it reports one.
        found: Option<String>,
    },
    /// A replica still makes pseudonyms with the version to retire.
    #[error(
        "replica {url} still makes pseudonyms with key version {version}: roll out the new \
         primary to every replica (and rewrap) before retiring it"
    )]
    StillPrimary {
        /// The replica.
        url: String,
        /// The version to retire.
        version: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(url: &str, primary: u32, versions: &[u32]) -> (String, ReplicaKeys) {
        (
            url.to_owned(),
            ReplicaKeys {
                primary_key_version: primary,
                key_versions: versions.to_vec(),
                key_fingerprints: versions.iter().map(|&v| (v, format!("f{v}"))).collect(),
            },
        )
    }

    #[test]
    fn a_version_becomes_primary_only_once_every_replica_holds_it() {
        let staging = [replica("a", 1, &[1, 2]), replica("b", 1, &[1])];
        let refused = check_set_primary(&staging, 2, "f2").expect_err("b lacks 2");
        assert!(matches!(&refused, RolloutError::LacksVersion { url, .. } if url == "b"));
        assert!(refused.to_string().contains("does not hold key version 2"));
        let staged = [replica("a", 1, &[1, 2]), replica("b", 1, &[1, 2])];
        assert!(check_set_primary(&staged, 2, "f2").is_ok());
    }

    /// Found in review: replicas were compared by version number only, so two replicas with
    /// different secrets under one number passed.
    #[test]
    fn a_replica_with_another_secret_under_the_number_is_refused() {
        let mut other = replica("b", 1, &[1, 2]);
        other.1.key_fingerprints.insert(2, "another".to_owned());
        let fleet = [replica("a", 1, &[1, 2]), other];
        let refused = check_set_primary(&fleet, 2, "f2").expect_err("b differs");
        assert!(matches!(&refused, RolloutError::KeyDiffers { url, .. } if url == "b"));
        let mut older = replica("c", 1, &[1, 2]);
        older.1.key_fingerprints.clear();
        let refused = check_set_primary(&[older], 2, "f2").expect_err("c does not say");
        assert!(
            refused.to_string().contains("older pseudonymd"),
            "{refused}"
        );
        let answer = r#"{"primary_key_version":1,"key_versions":[1,2],"key_fingerprints":{"1":"f1","2":"f2"}}"#;
        let parsed: ReplicaKeys = serde_json::from_str(answer).expect("what /readyz answers");
        assert_eq!(parsed, replica("d", 1, &[1, 2]).1);
    }

    #[test]
    fn a_version_is_retired_only_once_no_replica_makes_pseudonyms_with_it() {
        let rolling = [replica("a", 2, &[1, 2]), replica("b", 1, &[1, 2])];
        assert!(matches!(
            check_retire(&rolling, 1),
            Err(RolloutError::StillPrimary { url, version: 1 }) if url == "b"
        ));
        let rolled = [replica("a", 2, &[1, 2]), replica("b", 2, &[1, 2])];
        assert!(check_retire(&rolled, 1).is_ok());
    }

    #[test]
    fn a_replica_that_does_not_answer_is_named() {
        let refused = fetch(&["http://127.0.0.1:9".to_owned()]).expect_err("nothing listens");
        assert!(refused.to_string().contains("replica http://127.0.0.1:9"));
    }
}
