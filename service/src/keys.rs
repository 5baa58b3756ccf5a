//! Where the keys come from: the `PSEUDONYM_KEYRING` environment variable, the configured
//! files (a keyring sealed by a KMS included), or dev mode's files, created on first start.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::auth::{self, ApiKeys, Operation};
use crate::config::Config;
use crate::error::Error;
use crate::keyring::Keyring;
use crate::kms::KeyringStore;

/// Name of the environment variable that may hold a whole keyring file's content.
pub const KEYRING_ENV: &str = "PSEUDONYM_KEYRING";

/// File names inside `data_dir` in dev mode.
pub const DEV_KEYRING: &str = "keyring.toml";
/// The dev API key file list.
pub const DEV_API_KEYS: &str = "api-keys.toml";
/// The dev API key itself (all operations, all domains), readable by its owner only.
pub const DEV_API_KEY: &str = "dev-api-key";

/// Where the keyring came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `PSEUDONYM_KEYRING` environment variable.
    Environment,
    /// A keyring file named in the configuration.
    File(PathBuf),
    /// Dev mode: files the service created itself in `data_dir`.
    Dev(PathBuf),
    /// Given in memory, by [`Keys::in_memory`].
    Memory,
}

/// Keys ready to serve with.
#[derive(Debug)]
pub struct Keys {
    /// The keyring.
    pub keyring: Keyring,
    /// The API keys.
    pub api_keys: ApiKeys,
    /// Where the keyring came from.
    pub source: KeySource,
}

/// Loads the keyring from `keyring_env` (the content of [`KEYRING_ENV`]), else from the
/// configured file, else from dev mode's files, creating them on first start.
pub fn load_keys(config: &Config, keyring_env: Option<SecretString>) -> Result<Keys, Error> {
    let (keyring, source) = match (keyring_env, &config.keyring_file) {
        (Some(text), _) => (
            Keyring::from_toml(text.expose_secret(), KEYRING_ENV)?,
            KeySource::Environment,
        ),
        (None, Some(path)) => (
            KeyringStore::new(path, config.kms.as_ref())?.load()?,
            KeySource::File(path.clone()),
        ),
        (None, None) => match production_setting(config) {
            Some(setting) => return Err(Error::KeyringMissing { setting }),
            None => return load_dev_keys(config),
        },
    };
    let api_keys_file = config
        .api_keys_file
        .as_deref()
        .ok_or(Error::MissingApiKeys)?;
    Ok(Keys {
        keyring,
        api_keys: load_api_keys(api_keys_file)?,
        source,
    })
}

/// A setting that only a production deployment has, which rules dev mode out.
fn production_setting(config: &Config) -> Option<&'static str> {
    [
        ("api_keys_file", config.api_keys_file.is_some()),
        ("kms", config.kms.is_some()),
        ("tls", config.tls.cert_file.is_some()),
        ("audit_log", config.audit_log.is_some()),
        ("audit_fail_closed", config.audit_fail_closed),
        ("metrics_require_api_key", config.metrics_require_api_key),
        (
            "listen (an address other than loopback)",
            !config.listen.ip().is_loopback(),
        ),
    ]
    .into_iter()
    .find_map(|(setting, set)| set.then_some(setting))
}

fn load_api_keys(path: &Path) -> Result<ApiKeys, Error> {
    let api_keys = ApiKeys::load(path)?;
    if api_keys.is_empty() {
        return Err(Error::NoApiKeys(path.to_owned()));
    }
    Ok(api_keys)
}

fn load_dev_keys(config: &Config) -> Result<Keys, Error> {
    let dir = &config.data_dir;
    let dev_error = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::DevFiles { path, source }
    };
    create_private_dir(dir).map_err(dev_error(dir))?;

    let keyring_path = dir.join(DEV_KEYRING);
    let keyring = if keyring_path.exists() {
        Keyring::load(&keyring_path)?
    } else {
        let keyring = Keyring::generate();
        keyring.save(&keyring_path)?;
        keyring
    };

    let api_keys_path = dir.join(DEV_API_KEYS);
    let key_path = dir.join(DEV_API_KEY);
    if !key_path.exists() {
        let (key, entry) = auth::generate_key(
            "dev",
            [
                Operation::Pseudonymize,
                Operation::Reidentify,
                Operation::Rewrap,
            ]
            .into(),
            ["*".to_owned()].into(),
        );
        crate::keyring::write_private_file(&key_path, key.expose_secret().as_bytes())
            .map_err(dev_error(&key_path))?;
        auth::append_entry(&api_keys_path, entry)?;
    }
    Ok(Keys {
        keyring,
        api_keys: load_api_keys(&api_keys_path)?,
        source: KeySource::Dev(dir.clone()),
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
impl Keys {
    /// Keys given in memory (tests, fuzzing, embedding): no file is read or written.
    pub fn in_memory(keyring: Keyring, api_keys: ApiKeys) -> Keys {
        Keys {
            keyring,
            api_keys,
            source: KeySource::Memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    #[test]
    fn dev_mode_creates_its_keys_once_and_reuses_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().join("dev"),
            ..Config::default()
        };
        let first = load_keys(&config, None).expect("dev mode starts");
        assert_eq!(first.source, KeySource::Dev(config.data_dir.clone()));
        let key = std::fs::read_to_string(config.data_dir.join(DEV_API_KEY)).expect("key file");
        assert!(first.api_keys.authenticate(&key).is_some());

        let second = load_keys(&config, None).expect("dev mode restarts");
        assert_eq!(second.api_keys.len(), 1);
        let a = Engine::new(&first.keyring);
        let b = Engine::new(&second.keyring);
        let vin = crate::Domain::new("vin").expect("valid");
        let mode = pseudonym_client::Mode::Deterministic;
        assert_eq!(
            a.pseudonymize(vin, mode, &[Some("x")]),
            b.pseudonymize(vin, mode, &[Some("x")])
        );
    }

    /// Found in review: with an API key file and no keyring, dev mode appended an all-powerful
    /// key to that (production) file and served a throw-away keyring.
    #[test]
    fn production_settings_without_a_keyring_refuse_to_start_and_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_keys_file = dir.path().join("prod-keys.toml");
        std::fs::write(&api_keys_file, "").expect("write");
        let config = Config {
            data_dir: dir.path().join("dev"),
            api_keys_file: Some(api_keys_file.clone()),
            ..Config::default()
        };
        let error = load_keys(&config, None).expect_err("no dev mode");
        assert!(error.to_string().contains("api_keys_file"), "{error}");
        assert_eq!(std::fs::read_to_string(&api_keys_file).expect("read"), "");
        assert!(!config.data_dir.exists());

        let config = Config {
            data_dir: dir.path().join("dev"),
            audit_log: Some(dir.path().join("audit.jsonl")),
            ..Config::default()
        };
        let error = load_keys(&config, None).expect_err("no dev mode");
        assert!(error.to_string().contains("audit_log"), "{error}");

        let config = Config {
            data_dir: dir.path().join("dev"),
            listen: "0.0.0.0:0".parse().expect("address"),
            ..Config::default()
        };
        let error = load_keys(&config, None).expect_err("no dev mode on every interface");
        assert!(error.to_string().contains("listen"), "{error}");
    }

    #[test]
    fn a_configured_keyring_needs_an_api_key_file() {
        let keyring = Keyring::generate();
        let text = SecretString::from(keyring.to_toml().to_string());
        let error = load_keys(&Config::default(), Some(text)).expect_err("no key file");
        assert!(matches!(error, Error::MissingApiKeys));
    }
}
