//! Domains: the labels that name what a column is for (`vin`, `crm.email`).

/// A checked domain label: `[a-z0-9._-]{1,64}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Domain<'a>(&'a str);

/// A string that is not a valid domain label. Carries no copy of the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("domain must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'")]
pub struct InvalidDomain;

impl<'a> Domain<'a> {
    /// Checks `label` against the domain syntax.
    pub fn new(label: &'a str) -> Result<Self, InvalidDomain> {
        if pseudonym_client::wire::is_valid_domain(label) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_documented_syntax() {
        for good in ["vin", "crm.email", "a", "x_y-z.0", &"a".repeat(64)] {
            assert!(Domain::new(good).is_ok(), "{good}");
        }
        for bad in ["", "VIN", "with space", "é", "a/b", &"a".repeat(65)] {
            assert_eq!(Domain::new(bad), Err(InvalidDomain), "{bad}");
        }
    }
}
