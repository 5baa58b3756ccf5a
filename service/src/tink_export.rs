//! What `pseudonymd keygen --export-tink-keyset <domain> --to <file>` writes: the Tink keyset
//! of one domain's Tink tokens, for the engines that must re-identify them without the service
//! (BigQuery, Tink libraries, Kafka tools).
//!
//! Exporting is the one way a key leaves the service, so it is permitted per domain on its own
//! (`[tink.<domain>] export = true`), its audit line (refused or done) is written and synced
//! before anything else happens, and the keyset goes only to a file of mode 0600, never to a
//! terminal. With `[kms]`, the file is Tink's *encrypted* keyset: the binary keyset wrapped by
//! the transit key, exactly as Tink's HashiCorp Vault AEAD (`<mount>/keys/<key>`) wraps and
//! unwraps it, so the plain key is never on disk.

use std::path::Path;

use secrecy::ExposeSecret;

use crate::audit::{self, AuditRecord, Outcome};
use crate::config::Config;
use crate::error::Error;
use crate::kms::KeyringStore;
use crate::{Domain, Engine};

/// The audit trail's name of the operation.
pub const OPERATION: &str = "export_tink_keyset";

/// Writes the Tink keyset of `domain` to `to`, a file that must not exist yet, if the
/// configuration permits it. Every attempt leaves an audit line in `audit_log` (which must be
/// set) before anything else: `refused` with a reason, or `ok` just before the keyset is
/// written, then a second line, `refused` with `write_failed`, if writing it fails. Returns what
/// was done, for the operator (no key material).
pub fn export(
    config: &Config,
    store: &KeyringStore,
    domain: &str,
    to: &Path,
) -> Result<String, Error> {
    let audit_log = config.audit_log.as_deref().ok_or_else(|| {
        Error::Refused(
            "exporting a keyset needs audit_log in the configuration: the export's audit line \
             must be kept"
                .to_owned(),
        )
    })?;
    let checked = Domain::new(domain).ok();
    let audit = |outcome, count, reason| {
        let record = AuditRecord {
            domain: checked.map(|d| d.as_str()),
            count,
            reason,
            ..AuditRecord::now(OPERATION, outcome)
        };
        audit::record_now(Some(audit_log), &record).map_err(Error::AuditWrite)
    };
    let Some(checked) = checked else {
        audit(Outcome::Refused, 0, Some("invalid_domain"))?;
        return Err(Error::Refused(format!("{domain:?} is not a domain name")));
    };
    if !config.tink.get(domain).is_some_and(|tink| tink.export) {
        audit(Outcome::Refused, 0, Some("export_not_permitted"))?;
        return Err(Error::Refused(format!(
            "the keyset of {domain} may not be exported: its [tink.{domain}] table must say \
             export = true (exporting lets whoever holds the file re-identify without the service)"
        )));
    }
    if to.exists() {
        audit(Outcome::Refused, 0, Some("file_exists"))?;
        return Err(Error::Refused(format!(
            "{} exists: the keyset is written only to a new file",
            to.display()
        )));
    }
    let keyset = Engine::new(&store.load()?).tink_keyset(checked);
    let ids = keyset.key_ids();
    let (contents, wrapped) = match store.transit() {
        Some(transit) => {
            let wrapped = transit.encrypt(keyset.to_binary().expose_secret())?;
            (keyset.to_encrypted_json(wrapped.as_bytes()).into(), true)
        }
        None => (keyset.to_json(), false),
    };
    audit(Outcome::Ok, ids.len(), None)?;
    if let Err(source) = crate::private_file::write(to, contents.expose_secret().as_bytes()) {
        audit(Outcome::Refused, 0, Some("write_failed"))?;
        return Err(Error::Refused(format!(
            "cannot write {}: {source}",
            to.display()
        )));
    }
    let how = match wrapped {
        true => "wrapped by the [kms] transit key",
        false => "PLAIN: whoever reads it re-identifies the domain's Tink tokens",
    };
    Ok(format!(
        "wrote the Tink keyset of {domain} (key ids {ids:?}, the key versions) to {} ({how})",
        to.display()
    ))
}
