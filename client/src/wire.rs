//! The JSON bodies of the service's HTTP API, shared by the service and the client, and the
//! media type of its Arrow form.
//!
//! Request types borrow their strings from the body they are parsed from wherever JSON escaping
//! allows ([`BodyText`]), so the service does not allocate per value to read a batch.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The media type of the API's Arrow form: `/v1/pseudonymize`, `/v1/reidentify` and `/v1/rewrap`
/// also take and answer an Arrow IPC stream (the domain and mode then go in the query).
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// How a value becomes a pseudonym.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Reversible; the same value gives the same pseudonym (per key version and domain).
    #[default]
    Deterministic,
    /// Reversible; the same value gives a new pseudonym every time.
    Randomized,
    /// Irreversible keyed hash; the same value gives the same pseudonym.
    Hash,
    /// Reversible and deterministic, written in the value's own characters and length (FF1):
    /// only in domains the service gives a format.
    #[serde(rename = "format-preserving")]
    FormatPreserving,
}

impl Mode {
    /// Every mode, in the order of the table in the README.
    pub const ALL: [Mode; 4] = [
        Mode::Deterministic,
        Mode::Randomized,
        Mode::Hash,
        Mode::FormatPreserving,
    ];

    /// Whether a value always gets the same pseudonym (in one domain, with one key version):
    /// every mode but `randomized`. Equal values can then be sent once and answers cached.
    pub fn is_deterministic(self) -> bool {
        self != Mode::Randomized
    }

    /// The name used on the wire and in SQL (`"deterministic"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Deterministic => "deterministic",
            Mode::Randomized => "randomized",
            Mode::Hash => "hash",
            Mode::FormatPreserving => "format-preserving",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or(UnknownMode)
    }
}

/// A mode name that is none of `deterministic`, `randomized`, `hash`, `format-preserving`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownMode;

impl std::fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mode must be one of deterministic, randomized, hash, format-preserving")
    }
}

impl std::error::Error for UnknownMode {}

/// A checked domain label: 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-` (`vin`,
/// `crm.email`). Domains separate one column's pseudonyms from another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Domain<'a>(&'a str);

/// A string that is not a valid domain label. Carries no copy of the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidDomain;

impl InvalidDomain {
    /// The rule, as every error about a domain states it.
    pub const MESSAGE: &'static str =
        "domain must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'";
}

impl std::fmt::Display for InvalidDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(InvalidDomain::MESSAGE)
    }
}

impl std::error::Error for InvalidDomain {}

impl<'a> Domain<'a> {
    /// The rule as a regular expression, for documents and property tests.
    pub const PATTERN: &'static str = "^[a-z0-9._-]{1,64}$";

    /// Checks `label` against the rule.
    pub fn new(label: &'a str) -> Result<Self, InvalidDomain> {
        let valid = (1..=64).contains(&label.len())
            && label
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
        if valid {
            Ok(Domain(label))
        } else {
            Err(InvalidDomain)
        }
    }

    /// The label.
    pub fn as_str(self) -> &'a str {
        self.0
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Domain<'_> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(Self::PATTERN))
            .examples(["vin"])
            .description(Some(
                "What a column is for; pseudonyms of one domain never match another's",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Domain<'_> {}

/// A string in a request body: borrowed from the body unless it had to be unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BodyText<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl<'a> From<&'a str> for BodyText<'a> {
    fn from(s: &'a str) -> Self {
        BodyText(Cow::Borrowed(s))
    }
}

impl AsRef<str> for BodyText<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The list of values or pseudonyms in a request: strings or `null`. A reader may put another
/// type in its place (the service reads it raw first, to bound how many items it takes).
pub type Items<'a> = Vec<Option<BodyText<'a>>>;

/// `POST /v1/pseudonymize`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = ""))]
#[derive(Debug, Serialize, Deserialize)]
pub struct PseudonymizeRequest<'a, L = Items<'a>> {
    /// The purpose of the column, e.g. `vin`.
    #[serde(borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = Domain))]
    pub domain: BodyText<'a>,
    /// Defaults to `deterministic`.
    #[serde(default)]
    pub mode: Mode,
    /// Values to pseudonymize; `null` stays `null`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Option<String>>))]
    pub values: L,
}

/// Answer to `POST /v1/pseudonymize`: one pseudonym per value, same order, nulls kept.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PseudonymizeResponse {
    /// The pseudonyms, index for index.
    pub pseudonyms: Vec<Option<String>>,
    /// The key version that made them: the keyring's primary, or in a format-preserving
    /// domain the version its format names.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub key_version: u32,
    /// Format-preserving only: the values that have no pseudonym (`null` in `pseudonyms`), by
    /// index, with the reason. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ItemError>,
}

/// `POST /v1/reidentify`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = ""))]
#[derive(Debug, Serialize, Deserialize)]
pub struct ReidentifyRequest<'a, L = Items<'a>> {
    /// The domain the pseudonyms were made in.
    #[serde(borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = Domain))]
    pub domain: BodyText<'a>,
    /// Pseudonyms to turn back into values; `null` stays `null`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Option<String>>))]
    pub pseudonyms: L,
}

/// Answer to `POST /v1/reidentify`: a failed item is `null` in `values` and listed in `errors`.
/// `V` is how the values are held (the service writes them from one buffer).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = ""))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReidentifyResponse<V = Vec<Option<String>>> {
    /// The values, index for index.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Option<String>>))]
    pub values: V,
    /// The items that could not be re-identified, in index order.
    #[serde(default)]
    pub errors: Vec<ItemError>,
}

/// `POST /v1/rewrap`: pseudonyms of older key versions made again under the primary one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = ""))]
#[derive(Debug, Serialize, Deserialize)]
pub struct RewrapRequest<'a, L = Items<'a>> {
    /// The domain the pseudonyms were made in.
    #[serde(borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = Domain))]
    pub domain: BodyText<'a>,
    /// Pseudonyms to rewrap; `null` stays `null`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Option<String>>))]
    pub pseudonyms: L,
}

/// Answer to `POST /v1/rewrap`: new pseudonyms in the same modes; no plaintext. A failed item is
/// `null` in `pseudonyms` and listed in `errors`. `P` is how the pseudonyms are held.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = ""))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapResponse<P = Vec<Option<String>>> {
    /// The new pseudonyms, index for index.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Option<String>>))]
    pub pseudonyms: P,
    /// The items that could not be rewrapped, in index order.
    #[serde(default)]
    pub errors: Vec<ItemError>,
}

/// Why one item of a batch failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    /// Index of the item in the request.
    pub index: usize,
    /// What went wrong.
    pub code: ItemErrorCode,
}

/// Per-item failure codes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemErrorCode {
    /// Not a pseudonym of this service, altered, or made in another domain.
    InvalidToken,
    /// Made with a key version this service does not hold (retired or foreign).
    UnknownKeyVersion,
    /// A `hash` pseudonym: it cannot be turned back.
    NotReversible,
    /// Format-preserving: a character outside the domain's alphabet, in a domain that refuses
    /// them.
    OutsideAlphabet,
    /// Format-preserving: too few characters of the alphabet for a million possible values.
    FormatTooShort,
    /// Format-preserving: more characters of the alphabet than the mode takes.
    FormatTooLong,
    /// A code this version of the client does not know.
    #[serde(other)]
    Unknown,
}

impl ItemErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemErrorCode::InvalidToken => "invalid_token",
            ItemErrorCode::UnknownKeyVersion => "unknown_key_version",
            ItemErrorCode::NotReversible => "not_reversible",
            ItemErrorCode::OutsideAlphabet => "outside_alphabet",
            ItemErrorCode::FormatTooShort => "format_too_short",
            ItemErrorCode::FormatTooLong => "format_too_long",
            ItemErrorCode::Unknown => "unknown",
        }
    }
}

impl From<&str> for ItemErrorCode {
    /// The code written `code` on the wire ([`ItemErrorCode::Unknown`] for one this version of
    /// the client does not know).
    fn from(code: &str) -> Self {
        use ItemErrorCode::*;
        let known = [
            InvalidToken,
            UnknownKeyVersion,
            NotReversible,
            OutsideAlphabet,
            FormatTooShort,
            FormatTooLong,
        ];
        known
            .into_iter()
            .find(|k| k.as_str() == code)
            .unwrap_or(Unknown)
    }
}

impl std::fmt::Display for ItemErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of every request-level error answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A request-level error: a stable machine code and a message for humans.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `too_many_values`.
    pub code: String,
    /// What went wrong; never contains a value from the request.
    pub message: String,
}

/// `POST /pseudonymization?deterministic=true|false` (the replaced service's route).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = ""))]
#[derive(Debug, Serialize, Deserialize)]
pub struct CompatPseudonymizeRequest<L = Vec<Option<String>>> {
    /// Values to pseudonymize.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Option<String>>))]
    pub identifiers: L,
}

/// Answer of the replaced service's `/pseudonymization` route.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatPseudonymizeResponse {
    /// The pseudonyms, index for index.
    pub pseudonyms: Vec<Option<String>>,
}

/// `POST /reidentification` (the replaced service's route).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = ""))]
#[derive(Debug, Serialize, Deserialize)]
pub struct CompatReidentifyRequest<L = Vec<Option<String>>> {
    /// Pseudonyms to turn back. Also read as `reidentifications`, the name the replaced
    /// service's PySpark jobs send.
    #[serde(alias = "reidentifications")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Option<String>>))]
    pub pseudonyms: L,
}

/// Answer of the replaced service's `/reidentification` route: `null` where an item fails.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatReidentifyResponse {
    /// The values, index for index.
    pub identifiers: Vec<Option<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_strings_borrow_from_the_body_unless_escaped() {
        let body = r#"{"domain":"vin","values":["plain","esc\"aped",null]}"#;
        let request: PseudonymizeRequest = serde_json::from_str(body).expect("valid body");
        assert_eq!(request.mode, Mode::Deterministic);
        assert!(matches!(request.domain.0, Cow::Borrowed("vin")));
        assert!(matches!(
            request.values[0],
            Some(BodyText(Cow::Borrowed("plain")))
        ));
        assert_eq!(
            request.values[1].as_ref().map(AsRef::as_ref),
            Some("esc\"aped")
        );
        assert!(request.values[2].is_none());
    }

    #[test]
    fn unknown_item_error_codes_do_not_break_old_clients() {
        let body = r#"{"values":[null],"errors":[{"index":0,"code":"something_new"}]}"#;
        let response: ReidentifyResponse = serde_json::from_str(body).expect("valid body");
        assert_eq!(response.errors[0].code, ItemErrorCode::Unknown);
    }

    #[test]
    fn domains_follow_their_rule() {
        for good in ["vin", "crm.email", "a", "x_y-z.0", &"a".repeat(64)] {
            assert!(Domain::new(good).is_ok(), "{good}");
        }
        for bad in ["", "VIN", "with space", "é", "a/b", &"a".repeat(65)] {
            assert_eq!(Domain::new(bad), Err(InvalidDomain), "{bad}");
        }
    }

    #[test]
    fn modes_round_trip_through_their_names() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse(), Ok(mode));
        }
        assert_eq!("Deterministic".parse::<Mode>(), Err(UnknownMode));
    }

    #[test]
    fn item_error_codes_read_as_they_are_written() {
        use ItemErrorCode::*;
        for code in [InvalidToken, UnknownKeyVersion, NotReversible, Unknown] {
            assert_eq!(ItemErrorCode::from(code.as_str()), code);
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{code}\""));
        }
        assert_eq!(ItemErrorCode::from("from_the_future"), Unknown);
    }
}
