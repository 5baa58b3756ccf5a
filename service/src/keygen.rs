//! What `pseudonymd keygen` does to a keyring file: create it, seal a plain one, add, stage,
//! promote and retire versions, import and retire the replaced service's key.
//!
//! Every change loads the file, changes the keyring in memory and saves it whole (sealed again
//! when a KMS is configured), so a refused change leaves the file as it was. Changes that can
//! break a fleet (a new primary, a retirement) are checked against the replicas first when
//! their URLs are given (see [`crate::rollout`]).

use crate::Engine;
use crate::error::Error;
use crate::formats::Formats;
use crate::keyring::{Keyring, KeyringError};
use crate::kms::KeyringStore;
use crate::lambda::LambdaKey;
use crate::rollout;

/// One change to a keyring file.
#[derive(Debug)]
pub enum Change {
    /// Create the file with a new version 1 as primary.
    Create,
    /// Create the file from this plain keyring (sealing it, with a KMS configured).
    Import(Keyring),
    /// Add the replaced service's key; creates the file (with a new version 1) if missing.
    ImportLambda(LambdaKey),
    /// Remove the replaced service's key.
    RetireLambda,
    /// Add a version; primary at once unless `stage`.
    Add {
        /// Keep the current primary, so every replica can hold the new version first.
        stage: bool,
    },
    /// Make an existing version the primary.
    SetPrimary(u32),
    /// Remove a version: its pseudonyms stop re-identifying.
    Retire(u32),
}

/// Applies `change` to the keyring file of `store`, after asking `replicas` (base URLs; empty:
/// no check) where the change concerns them. A version that a format-preserving domain of
/// `formats` pins is never retired: its pseudonyms carry no version to find another by. Returns
/// what was done, for the operator.
pub fn apply(
    store: &KeyringStore,
    change: Change,
    replicas: &[String],
    formats: &Formats,
) -> Result<String, Error> {
    let path = store.path().display().to_string();
    let exists = store.path().exists();
    if !replicas.is_empty() && !matches!(change, Change::SetPrimary(_) | Change::Retire(_)) {
        return Err(Error::Refused(
            "--check-replicas goes with --set-primary or --retire".to_owned(),
        ));
    }
    let creates = matches!(change, Change::Create | Change::Import(_));
    if creates && exists {
        return Err(Error::Refused(format!(
            "{path} already exists; use --add, --set-primary or --retire to change it"
        )));
    }
    if !creates && !exists && !matches!(change, Change::ImportLambda(_)) {
        return Err(Error::Refused(format!(
            "{path} does not exist; run keygen without a change to create it"
        )));
    }
    let current = || match exists {
        true => store.load(),
        false => Ok(Keyring::generate()),
    };
    let (keyring, done) = match change {
        Change::Create => (
            Keyring::generate(),
            format!("created {path} with key version 1 (primary)"),
        ),
        Change::Import(plain) => (plain, format!("wrote the given keyring to {path}")),
        Change::ImportLambda(key) => {
            let mut keyring = current()?;
            if !keyring.import_lambda_key(key)? {
                return Ok(format!(
                    "{path} already holds the replaced service's key; nothing changed"
                ));
            }
            let created = match exists {
                true => "",
                false => " (created, with a new key version 1 as primary)",
            };
            let done = format!("added the replaced service's key to {path}{created}");
            (keyring, done)
        }
        Change::RetireLambda => {
            let mut keyring = current()?;
            keyring.retire_lambda_key()?;
            (
                keyring,
                format!("retired the replaced service's key from {path}"),
            )
        }
        Change::Add { stage } => {
            let mut keyring = current()?;
            let version = keyring.add_version(!stage)?;
            let primary = keyring.primary();
            let done = format!("added key version {version} to {path}; primary is {primary}");
            (keyring, done)
        }
        Change::SetPrimary(version) => {
            let mut keyring = current()?;
            if !replicas.is_empty() {
                let fingerprints = Engine::new(&keyring).fingerprints();
                let fingerprint = fingerprints
                    .get(&version)
                    .ok_or(KeyringError::MissingPrimary(version))?;
                rollout::check_set_primary(&rollout::fetch(replicas)?, version, fingerprint)?;
            }
            keyring.set_primary(version)?;
            (keyring, format!("primary of {path} is now {version}"))
        }
        Change::Retire(version) => {
            if let Some(domain) = formats.pinning(version) {
                return Err(Error::Refused(format!(
                    "key version {version} is pinned by the format-preserving domain {domain}: \
                     rewrap its columns to another version and pin that one first (README)"
                )));
            }
            if !replicas.is_empty() {
                rollout::check_retire(&rollout::fetch(replicas)?, version)?;
            }
            let mut keyring = current()?;
            keyring.retire(version)?;
            (
                keyring,
                format!("retired key version {version} from {path}"),
            )
        }
    };
    store.save(&keyring)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `change` without replicas to ask or versions pinned.
    fn alone(store: &KeyringStore, change: Change) -> Result<String, Error> {
        apply(store, change, &[], &Formats::default())
    }

    fn versions(store: &KeyringStore) -> (u32, Vec<u32>) {
        let keyring = store.load().expect("keyring loads");
        (keyring.primary(), keyring.keys().map(|(v, _)| v).collect())
    }

    #[test]
    fn a_rotation_stages_promotes_and_retires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyringStore::new(&dir.path().join("keyring.toml"), None).expect("store");
        alone(&store, Change::Create).expect("created");
        assert_eq!(versions(&store), (1, vec![1]));

        alone(&store, Change::Add { stage: true }).expect("staged");
        assert_eq!(versions(&store), (1, vec![1, 2]));
        alone(&store, Change::SetPrimary(2)).expect("promoted");
        assert_eq!(versions(&store), (2, vec![1, 2]));
        alone(&store, Change::Retire(1)).expect("retired");
        assert_eq!(versions(&store), (2, vec![2]));

        alone(&store, Change::Add { stage: false }).expect("added as primary");
        assert_eq!(versions(&store), (3, vec![2, 3]));
    }

    #[test]
    fn refused_changes_leave_the_file_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.toml");
        let store = KeyringStore::new(&path, None).expect("store");
        let missing = alone(&store, Change::Add { stage: false }).expect_err("no file");
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        assert!(!path.exists());

        alone(&store, Change::Create).expect("created");
        let before = std::fs::read(&path).expect("read");
        for change in [Change::Create, Change::Retire(1), Change::SetPrimary(7)] {
            alone(&store, change).expect_err("refused");
            assert_eq!(std::fs::read(&path).expect("read"), before);
        }
        let misplaced = apply(
            &store,
            Change::Add { stage: true },
            &["http://x".to_owned()],
            &Formats::default(),
        );
        assert!(
            misplaced
                .expect_err("refused")
                .to_string()
                .contains("--check-replicas")
        );
    }

    #[test]
    fn a_version_pinned_by_a_format_preserving_domain_is_not_retired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyringStore::new(&dir.path().join("keyring.toml"), None).expect("store");
        alone(&store, Change::Create).expect("created");
        alone(&store, Change::Add { stage: false }).expect("added");
        let tables: std::collections::BTreeMap<_, _> =
            toml::from_str("[phone]\nalphabet = \"digits\"\nkey_version = 1\n").expect("parses");
        let formats = Formats::from_config(&tables).expect("valid");
        let refused = apply(&store, Change::Retire(1), &[], &formats).expect_err("pinned");
        assert!(refused.to_string().contains("phone"), "{refused}");
        assert_eq!(versions(&store), (2, vec![1, 2]));
        alone(&store, Change::Retire(1)).expect("retired once nothing pins it");
    }

    #[test]
    fn a_plain_keyring_is_imported_only_into_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyringStore::new(&dir.path().join("keyring.toml"), None).expect("store");
        let mut plain = Keyring::generate();
        plain.add_version(true).expect("a version number is free");
        let expected = plain.to_toml();
        alone(&store, Change::Import(plain)).expect("imported");
        assert_eq!(store.load().expect("loads").to_toml(), expected);
        let again = alone(&store, Change::Import(Keyring::generate()));
        assert!(
            again
                .expect_err("exists")
                .to_string()
                .contains("already exists")
        );
    }

    #[test]
    fn a_set_primary_checked_against_an_unreachable_replica_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyringStore::new(&dir.path().join("keyring.toml"), None).expect("store");
        alone(&store, Change::Create).expect("created");
        alone(&store, Change::Add { stage: true }).expect("staged");
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        let replicas = ["http://127.0.0.1:9".to_owned()];
        let error = apply(
            &store,
            Change::SetPrimary(2),
            &replicas,
            &Formats::default(),
        )
        .expect_err("refused");
        assert!(error.to_string().contains("did not answer"), "{error}");
        assert_eq!(versions(&store), (1, vec![1, 2]));
    }
}
