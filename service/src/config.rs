//! The service's configuration: one typed struct, defaults written once, layered from an optional
//! TOML file and then flags or `PSEUDONYM_*` environment variables (see `pseudonymd --help`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::formats::{FormatConfig, Formats};
use crate::kms::KmsConfig;
use crate::tls::TlsConfig;
use pseudonym_client::wire::{Domain, InvalidDomain};

/// Everything `pseudonymd` needs to serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Keyring file. Without it (and without `PSEUDONYM_KEYRING`), the service runs in dev mode.
    pub keyring_file: Option<PathBuf>,
    /// API key file. Required unless in dev mode, where it defaults to one in `data_dir`.
    pub api_keys_file: Option<PathBuf>,
    /// Where dev mode keeps the keyring and API key it creates.
    pub data_dir: PathBuf,
    /// Domain used by the routes compatible with the replaced service, which name none; the
    /// replaced service's own tokens belong to it.
    pub compat_domain: String,
    /// What `/pseudonymization` answers: our tokens, or the replaced service's, byte for byte.
    pub compat_tokens: TokenFormat,
    /// Whether `GET /metrics` needs an API key (any valid one): its counters show how much is
    /// re-identified, by whom and when.
    pub metrics_require_api_key: bool,
    /// Refuse a re-identification or rewrap (503 `audit_unavailable`) whose audit line cannot
    /// be written, instead of answering it anyway.
    pub audit_fail_closed: bool,
    /// File the audit trail is appended to (reopened on SIGHUP); without it, standard output.
    pub audit_log: Option<PathBuf>,
    /// Log filter in `tracing` syntax, e.g. `info` or `pseudonym_service=debug`.
    pub log: String,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Request limits.
    pub limits: Limits,
    /// HTTPS, and client certificates (mTLS). Without it, plain HTTP.
    pub tls: TlsConfig,
    /// The OpenBao/Vault transit key that seals `keyring_file`. Without it, the file is plain.
    pub kms: Option<KmsConfig>,
    /// Format-preserving domains, by domain: `[format_preserving.vin]` with `alphabet` (or
    /// `characters`), `outside` and `key_version`.
    pub format_preserving: BTreeMap<String, FormatConfig>,
    /// Domains whose deterministic pseudonyms are Tink tokens, by domain: `[tink.crm]`,
    /// optionally with `export = true`.
    pub tink: BTreeMap<String, TinkConfig>,
}

/// One `[tink.<domain>]` table: the domain's deterministic pseudonyms are Tink tokens, which
/// BigQuery and Tink libraries read with the domain's keyset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinkConfig {
    /// Whether `pseudonymd keygen --export-tink-keyset <domain>` may write the domain's keyset
    /// (the key then leaves the service: whoever holds it re-identifies without an audit line).
    #[serde(default)]
    pub export: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whose tokens a route makes: ours, or the replaced service's (`compat_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// Our tokens (`d1.…`), as `/v1/pseudonymize` makes them.
    #[default]
    Native,
    /// The Lambda service's tokens (the AWS sample's), made with its imported key (`keygen
    /// --import-lambda-secret`): switch services first, change no data. `seed` is its
    /// deprecated spelling, read for one more release.
    #[serde(alias = "seed")]
    #[value(alias = "seed")]
    Lambda,
}

/// Bounds on what one request may ask and how long it may take. See README for how the defaults
/// were chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most values (or pseudonyms) in one request; more answers 413 `too_many_values`.
    pub max_values: usize,
    /// Largest request body in bytes; more answers 413 `body_too_large`.
    pub max_body_bytes: usize,
    /// Longest value in UTF-8 bytes; longer answers 422 `value_too_long`.
    pub max_value_bytes: usize,
    /// Time after which a request is answered 503 `timeout`.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 `overloaded` at once, not queued.
    pub max_concurrent_requests: usize,
    /// Requests one API key may have in flight at once, unless its entry sets its own; more are
    /// answered 429 `too_many_requests`, so one caller cannot take the whole service.
    pub max_concurrent_requests_per_key: usize,
    /// Values (or pseudonyms) one API key may send per second, on average over a second,
    /// unless its entry sets its own; beyond, 429 `too_many_requests` with the wait in
    /// `Retry-After`. 0: no budget.
    pub max_values_per_second_per_key: u32,
    /// Time for a request's headers to arrive: from the connection's opening (TLS handshake
    /// included) or from the previous answer, so also how long an idle HTTP/1 connection stays
    /// open. Slower connections are closed.
    pub header_read_timeout_ms: u64,
    /// Connections open at once (HTTP and HTTPS); more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            keyring_file: None,
            api_keys_file: None,
            data_dir: PathBuf::from(".pseudonym-dev"),
            compat_domain: "default".to_owned(),
            compat_tokens: TokenFormat::Native,
            metrics_require_api_key: false,
            audit_fail_closed: false,
            audit_log: None,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            tls: TlsConfig::default(),
            kms: None,
            format_preserving: BTreeMap::new(),
            tink: BTreeMap::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_values: 10_000,
            max_body_bytes: 8 * 1024 * 1024,
            max_value_bytes: 4096,
            request_timeout_ms: 10_000,
            max_concurrent_requests: 256,
            max_concurrent_requests_per_key: 64,
            max_values_per_second_per_key: 0,
            header_read_timeout_ms: 30_000,
            max_connections: 1000,
        }
    }
}

impl Limits {
    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The header read timeout as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// Longest token accepted for re-identification: that of a `max_value_bytes` value in the
    /// widest mode (randomized: nonce and tag around the ciphertext), plus a long header.
    pub fn max_token_bytes(&self) -> usize {
        crate::token::encoded_len(12, self.max_value_bytes + 32)
    }
}

impl Config {
    /// Defaults, then the TOML `file` if given, then `overrides` (flags and environment).
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Config, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Error::ConfigInvalid {
                    field: "config",
                    problem: "the configuration file does not exist",
                });
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The deprecated spellings a configuration file uses (`compat_tokens = "seed"`), each with
    /// what replaces it; none for a file that cannot be read (its error comes from
    /// [`Config::load`]).
    pub fn deprecated_in(file: &Path) -> Vec<(&'static str, &'static str)> {
        let compat_tokens =
            Figment::from(Toml::file_exact(file)).extract_inner::<String>("compat_tokens");
        match compat_tokens.is_ok_and(|value| value == "seed") {
            true => vec![("compat_tokens = \"seed\"", "compat_tokens = \"lambda\"")],
            false => Vec::new(),
        }
    }

    /// The domain of the routes compatible with the replaced service, checked.
    pub fn compat_domain(&self) -> Result<Domain<'_>, Error> {
        Domain::new(&self.compat_domain).map_err(|_| Error::ConfigInvalid {
            field: "compat_domain",
            problem: InvalidDomain::MESSAGE,
        })
    }

    /// The format-preserving domains, each checked.
    pub fn formats(&self) -> Result<Formats, Error> {
        Formats::from_config(&self.format_preserving)
    }

    /// The domains whose deterministic pseudonyms are Tink tokens (checked by
    /// [`Config::validate`]).
    pub fn tink_domains(&self) -> impl Iterator<Item = Domain<'_>> {
        self.tink
            .keys()
            .filter_map(|domain| Domain::new(domain).ok())
    }

    /// Checks the values that parse but cannot work.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |field, problem| Err(Error::ConfigInvalid { field, problem });
        self.compat_domain()?;
        if self.format_preserving.contains_key(&self.compat_domain) {
            return invalid(
                "compat_domain",
                "is format-preserving, but the AWS sample's callers make and read tokens",
            );
        }
        self.formats()?;
        for domain in self.tink.keys() {
            if Domain::new(domain).is_err() {
                return invalid("tink", InvalidDomain::MESSAGE);
            }
            if self.format_preserving.contains_key(domain) {
                return invalid(
                    "tink",
                    "a domain is Tink or format-preserving, not both (one is a token, the other not)",
                );
            }
        }
        if self.kms.is_some() && self.keyring_file.is_none() {
            return invalid("kms", "seals a keyring file: set keyring_file too");
        }
        if self.tls.enabled().is_err() {
            return invalid(
                "tls",
                "cert_file and key_file go together, and client_ca_file needs them",
            );
        }
        let limits = &self.limits;
        let positive = [
            ("limits.max_values", limits.max_values),
            ("limits.max_body_bytes", limits.max_body_bytes),
            ("limits.max_value_bytes", limits.max_value_bytes),
            (
                "limits.max_concurrent_requests",
                limits.max_concurrent_requests,
            ),
            (
                "limits.request_timeout_ms",
                usize::try_from(limits.request_timeout_ms).unwrap_or(usize::MAX),
            ),
            (
                "limits.header_read_timeout_ms",
                usize::try_from(limits.header_read_timeout_ms).unwrap_or(usize::MAX),
            ),
            ("limits.max_connections", limits.max_connections),
            (
                "limits.max_concurrent_requests_per_key",
                limits.max_concurrent_requests_per_key,
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return invalid(field, "must be greater than 0");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<&'static str>,
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pseudonymd.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ncompat_domain = \"vin\"\n[limits]\nmax_values = 900\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), Flags { listen: None }).expect("valid");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.compat_domain, "vin");
        assert_eq!(config.limits.max_values, 900);
        assert_eq!(
            config.limits.max_value_bytes,
            Limits::default().max_value_bytes
        );

        let flags = Flags {
            listen: Some("127.0.0.1:9001"),
        };
        let config = Config::load(Some(&file), flags).expect("valid");
        assert_eq!(config.listen.port(), 9001);
    }

    #[test]
    fn bad_fields_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pseudonymd.toml");
        std::fs::write(&file, "[limits]\nmax_valeus = 900\n").expect("write");
        let message = Config::load(Some(&file), Flags { listen: None })
            .expect_err("typo")
            .to_string();
        assert!(message.contains("max_valeus"), "{message}");

        std::fs::write(&file, "[limits]\nmax_values = 0\n").expect("write");
        let message = Config::load(Some(&file), Flags { listen: None })
            .expect_err("zero")
            .to_string();
        assert!(message.contains("limits.max_values"), "{message}");

        std::fs::write(
            &file,
            "[kms]\naddress = \"http://127.0.0.1:8200\"\nkey = \"k\"\n",
        )
        .expect("write");
        let message = Config::load(Some(&file), Flags { listen: None })
            .expect_err("kms without a keyring file")
            .to_string();
        assert!(message.contains("kms: seals a keyring file"), "{message}");

        std::fs::write(
            &file,
            "compat_domain = \"vin\"\n[format_preserving.vin]\nalphabet = \"vin\"\nkey_version = 1\n",
        )
        .expect("write");
        let message = Config::load(Some(&file), Flags { listen: None })
            .expect_err("a format-preserving compat_domain")
            .to_string();
        assert!(
            message.contains("compat_domain: is format-preserving"),
            "{message}"
        );

        // `seed`, the deprecated spelling of `lambda`, still reads.
        std::fs::write(&file, "compat_tokens = \"seed\"\n").expect("write");
        let config = Config::load(Some(&file), Flags { listen: None }).expect("seed still reads");
        assert_eq!(config.compat_tokens, TokenFormat::Lambda);
        assert_eq!(
            Config::deprecated_in(&file),
            [("compat_tokens = \"seed\"", "compat_tokens = \"lambda\"")]
        );
        std::fs::write(&file, "compat_tokens = \"lambda\"\n").expect("write");
        assert_eq!(Config::deprecated_in(&file), []);
    }
}
