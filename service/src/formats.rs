//! Format-preserving domains: the `[format_preserving.<domain>]` tables of the configuration,
//! each a format and the key version its pseudonyms are made and opened with.
//!
//! A format-preserving pseudonym carries no key version, so the domain pins one. Rotating it is
//! explicit: add a version, rewrap the domain's columns into new ones (from the pinned version
//! to the primary), then pin the new version and switch to the new columns (README).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Keyring;
use crate::error::Error;
use pseudonym_client::wire::Domain;
use pseudonym_engine::format::{Format, Outside};

/// One `[format_preserving.<domain>]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    /// A named alphabet: `digits`, `alnum`, `alnum-upper`, `alnum-lower` or `vin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabet: Option<String>,
    /// Or a custom alphabet: its distinct characters, in numeral order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub characters: Option<String>,
    /// What becomes of a character outside the alphabet: `keep` it in place (the default) or
    /// `refuse` the value (`outside_alphabet`).
    #[serde(default)]
    pub outside: Outside,
    /// The key version the domain's pseudonyms are made and opened with.
    pub key_version: u32,
}

/// A format-preserving domain's format and pinned key version.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The format.
    pub format: Format,
    /// The key version.
    pub key_version: u32,
}

/// The format-preserving domains, by domain.
#[derive(Debug, Clone, Default)]
pub struct Formats(BTreeMap<String, Pinned>);

impl Formats {
    /// The formats of the configuration's tables, each checked; an error names the domain.
    pub fn from_config(tables: &BTreeMap<String, FormatConfig>) -> Result<Self, Error> {
        let mut formats = BTreeMap::new();
        for (domain, table) in tables {
            let invalid = |problem: String| Error::FormatInvalid {
                domain: domain.clone(),
                problem,
            };
            Domain::new(domain).map_err(|e| invalid(e.to_string()))?;
            let format = Format::new(
                table.alphabet.as_deref(),
                table.characters.as_deref(),
                table.outside,
            )
            .map_err(|e| invalid(e.to_string()))?;
            if table.key_version == 0 {
                return Err(invalid("key_version must be 1 or more".to_owned()));
            }
            let pinned = Pinned {
                format,
                key_version: table.key_version,
            };
            formats.insert(domain.clone(), pinned);
        }
        Ok(Formats(formats))
    }

    /// Checks that `keyring` holds every pinned version: a keyring without one would make
    /// the domain's pseudonyms unreadable.
    pub fn check(&self, keyring: &Keyring) -> Result<(), Error> {
        for (domain, pinned) in &self.0 {
            if !keyring
                .keys()
                .any(|(version, _)| version == pinned.key_version)
            {
                return Err(Error::FormatInvalid {
                    domain: domain.clone(),
                    problem: format!("key_version {} is not in the keyring", pinned.key_version),
                });
            }
        }
        Ok(())
    }

    /// Each domain's pinned key version.
    pub fn pins(&self) -> BTreeMap<String, u32> {
        self.0
            .iter()
            .map(|(domain, pinned)| (domain.clone(), pinned.key_version))
            .collect()
    }

    /// A domain that pins `version`, if one does.
    pub fn pinning(&self, version: u32) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, pinned)| pinned.key_version == version)
            .map(|(domain, _)| domain.as_str())
    }

    /// The format of `domain`, if it is format-preserving.
    pub fn get(&self, domain: Domain<'_>) -> Option<&Pinned> {
        self.0.get(domain.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(alphabet: Option<&str>, characters: Option<&str>, key_version: u32) -> FormatConfig {
        FormatConfig {
            alphabet: alphabet.map(str::to_owned),
            characters: characters.map(str::to_owned),
            outside: Outside::Keep,
            key_version,
        }
    }

    #[test]
    fn bad_tables_are_refused_with_their_domain() {
        let cases = [
            ("VIN", table(Some("vin"), None, 1), "domain must be"),
            ("vin", table(Some("hex"), None, 1), "unknown alphabet"),
            ("vin", table(Some("vin"), Some("01"), 1), "either alphabet"),
            ("vin", table(None, Some("00"), 1), "distinct"),
            ("vin", table(Some("vin"), None, 0), "key_version"),
        ];
        for (domain, table, problem) in cases {
            let tables = BTreeMap::from([(domain.to_owned(), table)]);
            let message = Formats::from_config(&tables)
                .expect_err("a bad table")
                .to_string();
            assert!(
                message.contains(domain) && message.contains(problem),
                "{message}"
            );
        }
    }

    #[test]
    fn a_pinned_version_must_be_in_the_keyring() {
        let tables = BTreeMap::from([("vin".to_owned(), table(Some("vin"), None, 2))]);
        let formats = Formats::from_config(&tables).expect("valid");
        let mut keyring = Keyring::generate();
        let message = formats
            .check(&keyring)
            .expect_err("no version 2")
            .to_string();
        assert!(message.contains("format_preserving.vin"), "{message}");
        keyring
            .add_version(false)
            .expect("a version number is free");
        formats.check(&keyring).expect("version 2 is there");
        let vin = Domain::new("vin").expect("valid");
        assert_eq!(formats.get(vin).map(|p| p.key_version), Some(2));
    }
}
