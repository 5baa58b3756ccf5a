//! VIN-like test values: 17 characters, with a chosen number of distinct values (cardinality),
//! as the AWS sample's dataset generator made them.

/// The `i`-th value of a set of `cardinality` distinct VIN-like strings.
pub fn vin(i: u64, cardinality: u64) -> String {
    // A multiplicative step spreads consecutive indices over the set, as rows of real data are.
    let id = i.wrapping_mul(7_919) % cardinality.max(1);
    format!("WVWZZZ1J{id:09}")
}

/// `count` values starting at index `start`.
pub fn vins(start: u64, count: usize, cardinality: u64) -> Vec<String> {
    (start..start + count as u64)
        .map(|i| vin(i, cardinality))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_17_characters_within_the_cardinality() {
        let values = vins(0, 10_000, 100);
        assert!(values.iter().all(|v| v.len() == 17));
        let distinct: std::collections::HashSet<_> = values.iter().collect();
        assert_eq!(distinct.len(), 100);
    }
}
