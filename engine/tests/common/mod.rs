//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use pseudonym_engine::Keyring;
use serde::Deserialize;

/// The `keyring` object of a golden vector file: test keys only.
#[derive(Deserialize)]
pub struct GoldenKeyring {
    pub primary: u32,
    pub keys: Vec<GoldenKey>,
}

/// One key version of a [`GoldenKeyring`].
#[derive(Deserialize)]
pub struct GoldenKey {
    pub version: u32,
    pub secret: String,
}

impl GoldenKeyring {
    /// The keyring, with `primary` as its primary version.
    pub fn with_primary(&self, primary: u32) -> Keyring {
        let mut text = format!("primary = {primary}\n");
        for key in &self.keys {
            text.push_str(&format!(
                "[[keys]]\nversion = {}\nsecret = \"{}\"\n",
                key.version, key.secret
            ));
        }
        Keyring::from_toml(&text, "golden").expect("golden keyring")
    }

    /// The keyring as the file says, its primary included.
    pub fn keyring(&self) -> Keyring {
        self.with_primary(self.primary)
    }
}
