//! One partition's plan: the distinct values to send, cut into batches, and the way back from
//! each distinct value's answer to every row that held it.

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::endpoints::Route;
use crate::error::Error;
use crate::transport::{BatchId, Form, Transport};
use crate::wire::{ItemError, ItemErrorCode, Mode};

/// How the rows of a partition map to the distinct values actually sent.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The values to send, each once (or every non-null row, when not deduplicated).
    pub unique: Vec<&'a str>,
    /// For each row, the index of its value in `unique`; `None` for a null row.
    pub rows: Vec<Option<u32>>,
}

impl<'a> Plan<'a> {
    /// A plan sending each distinct value once.
    pub fn deduplicated<I>(values: I) -> Self
    where
        I: IntoIterator<Item = Option<&'a str>>,
        I::IntoIter: ExactSizeIterator,
    {
        let values = values.into_iter();
        let mut index: HashMap<&'a str, u32, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(values.len() / 2, Default::default());
        let mut unique = Vec::new();
        let rows = values
            .map(|value| {
                value.map(|v| {
                    *index.entry(v).or_insert_with(|| {
                        unique.push(v);
                        to_u32(unique.len() - 1)
                    })
                })
            })
            .collect();
        Plan { unique, rows }
    }

    /// A plan sending every non-null row, duplicates included (randomized pseudonyms must differ
    /// even for equal values).
    pub fn every_row<I>(values: I) -> Self
    where
        I: IntoIterator<Item = Option<&'a str>>,
    {
        let mut unique = Vec::new();
        let rows = values
            .into_iter()
            .map(|value| {
                value.map(|v| {
                    unique.push(v);
                    to_u32(unique.len() - 1)
                })
            })
            .collect();
        Plan { unique, rows }
    }

    /// The failed rows, in row order, given the failure (if any) of every unique value.
    pub fn row_errors(&self, codes: &[Option<ItemErrorCode>]) -> Vec<ItemError> {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(index, row)| {
                let code = codes[(*row)? as usize]?;
                Some(ItemError { index, code })
            })
            .collect()
    }

    /// The answer of every row, given the answer of every unique value.
    pub fn spread<T: Clone>(&self, answers: &[Option<T>]) -> Vec<Option<T>> {
        self.rows
            .iter()
            .map(|row| row.and_then(|i| answers[i as usize].clone()))
            .collect()
    }
}

/// The non-null values at [`SAMPLE`] places of `rows` (`n` of them), scattered by a
/// non-linear mix (SplitMix64's), so neither sorted nor periodic data fool the sample.
/// Also says how many places were looked at.
fn sample<'a>(mut rows: impl Iterator<Item = Option<&'a str>>, n: usize) -> (usize, Vec<&'a str>) {
    let scatter = |k: u64| {
        let mut z = k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    };
    let mut places: Vec<usize> = (0..SAMPLE as u64).map(scatter).collect();
    places.sort_unstable();
    places.dedup();
    let looked_at = places.len();
    let mut next = 0;
    let mut sample = Vec::with_capacity(places.len());
    for place in places {
        if let Some(Some(value)) = rows.nth(place - next) {
            sample.push(value);
        }
        next = place + 1;
    }
    (looked_at, sample)
}

fn to_u32(index: usize) -> u32 {
    u32::try_from(index).expect("a partition holds fewer than 2^32 values")
}

/// Rows sampled, evenly spread over a partition, to judge whether deduplicating it pays.
const SAMPLE: usize = 4096;

impl<'a> Plan<'a> {
    /// How a partition is sent in `mode`: deduplicated where that pays (see
    /// [`Plan::deduplicated_if_it_pays`]), except where each row needs its own answer
    /// (randomized pseudonyms).
    pub fn for_mode<I>(mode: Mode, rows: I) -> Self
    where
        I: ExactSizeIterator<Item = Option<&'a str>> + Clone,
    {
        match mode.is_deterministic() {
            false => Plan::every_row(rows),
            true => Plan::deduplicated_if_it_pays(rows),
        }
    }

    /// Deduplicated, unless a sample says that at least half the partition's values are
    /// distinct: then a map of them all would cost the client more than the repeats cost the
    /// service, and every row is sent. Each row gets the same answer either way (for
    /// deterministic and hash pseudonyms, and for re-identification).
    ///
    /// The sample is [`SAMPLE`] rows at scattered places. Among `m` different rows of `n`
    /// drawn from `d` equally frequent values, about `m²/2 · (1/d − 1/n)` repeat a value, so
    /// `d ≥ n/2` where at most `m²/2n` do (`n` counting the non-null rows, estimated from the
    /// sample).
    pub fn deduplicated_if_it_pays<I>(rows: I) -> Self
    where
        I: ExactSizeIterator<Item = Option<&'a str>> + Clone,
    {
        let n = rows.len();
        if n >= 4 * SAMPLE {
            let (places, sample) = sample(rows.clone(), n);
            let distinct: std::collections::HashSet<&str, foldhash::fast::RandomState> =
                sample.iter().copied().collect();
            let m = sample.len() as u64;
            let repeats = m - distinct.len() as u64;
            let non_null = n as u64 * m / places.max(1) as u64;
            if m >= SAMPLE as u64 / 2 && 2 * repeats * non_null <= m * m {
                return Plan::every_row(rows);
            }
        }
        Plan::deduplicated(rows)
    }
}

/// How a call's values are cut and sent: batches of `size` values, at most `in_flight` of
/// them in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    pub(crate) size: usize,
    pub(crate) in_flight: usize,
}

impl Batching {
    /// Cuts `unique` into batches, encodes each in `form` with `encode` when its turn comes,
    /// sends them over `transport` with at most `in_flight` in flight, reads and checks each
    /// answer's body with `accept`, and returns the accepted answers in batch order.
    pub(crate) async fn run<Out, E>(
        self,
        transport: &Transport,
        route: Route,
        form: Form<'_>,
        unique: &[&str],
        encode: impl Fn(&[&str]) -> Result<Vec<u8>, E>,
        accept: impl Fn(BatchId, usize, Bytes) -> Result<Out, Error>,
    ) -> Result<Vec<Out>, Error> {
        let of = unique.len().div_ceil(self.size);
        let mut chunks = unique.chunks(self.size).enumerate();
        let mut answers: Vec<Option<Out>> = (0..of).map(|_| None).collect();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < self.in_flight {
                let Some((index, chunk)) = chunks.next() else {
                    break;
                };
                let id = BatchId {
                    number: index + 1,
                    of,
                };
                let body =
                    encode(chunk).map_err(|_| protocol(id, "the request could not be encoded"))?;
                let len = chunk.len();
                in_flight.push(async move {
                    let answer = transport.send(route, form, Bytes::from(body), id).await?;
                    Ok::<_, Error>((id, len, answer))
                });
            }
            let Some(sent) = in_flight.next().await else {
                break;
            };
            let (id, len, response) = sent?;
            answers[id.number - 1] = Some(accept(id, len, response)?);
        }
        Ok(answers.into_iter().flatten().collect())
    }
}

/// Checks that each item of a batch has either an answer (`answered`) or a code, never both or
/// neither.
pub(crate) fn one_answer_or_code(
    id: BatchId,
    codes: &[Option<ItemErrorCode>],
    answered: impl Fn(usize) -> bool,
) -> Result<(), Error> {
    match (0..codes.len()).any(|i| answered(i) == codes[i].is_some()) {
        true => Err(protocol(id, "a null answer without an error, or both")),
        false => Ok(()),
    }
}

/// Checks that every batch of a call was answered under one key version (`versions`, in batch
/// order): format-preserving pseudonyms carry none, so a call must not mix two.
pub(crate) fn one_key_version(versions: &[u32]) -> Result<(), Error> {
    let Some(&first) = versions.first() else {
        return Ok(());
    };
    match versions.iter().position(|&version| version != first) {
        None => Ok(()),
        Some(at) => Err(Error::KeyVersionsDiffer {
            batch: at + 1,
            batches: versions.len(),
            first,
            version: versions[at],
        }),
    }
}

pub(crate) fn protocol(id: BatchId, problem: &'static str) -> Error {
    Error::Protocol {
        batch: id.number,
        batches: id.of,
        problem,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_distinct_values_are_sent_as_they_are_and_others_deduplicated() {
        // 50,000 rows, all distinct but 100: sent as they are, repeats included.
        let distinct: Vec<String> = (0..50_000).map(|i| format!("v{}", i % 49_900)).collect();
        let plan = Plan::deduplicated_if_it_pays(distinct.iter().map(|v| Some(v.as_str())));
        assert_eq!(plan.unique.len(), 50_000);
        assert_eq!(plan.rows[49_999], Some(49_999));

        // Repeats that the first rows do not show: 10,000 distinct values in 200,000 rows.
        let spread: Vec<String> = (0..200_000)
            .map(|i| format!("v{}", (i * 7919) % 10_000))
            .collect();
        let plan = Plan::deduplicated_if_it_pays(spread.iter().map(|v| Some(v.as_str())));
        assert_eq!(plan.unique.len(), 10_000);

        let repeating: Vec<String> = (0..10_000).map(|i| format!("v{}", i % 100)).collect();
        let plan = Plan::deduplicated_if_it_pays(repeating.iter().map(|v| Some(v.as_str())));
        assert_eq!(plan.unique.len(), 100);
        let answers: Vec<Option<String>> =
            plan.unique.iter().map(|v| Some(v.to_uppercase())).collect();
        assert_eq!(plan.spread(&answers)[250].as_deref(), Some("V50"));
    }

    #[test]
    fn duplicates_are_sent_once_and_spread_back() {
        let values = [Some("a"), None, Some("b"), Some("a"), None, Some("b")];
        let plan = Plan::deduplicated(values.iter().copied());
        assert_eq!(plan.unique, ["a", "b"]);
        let answers = [Some("A".to_owned()), Some("B".to_owned())];
        let rows = plan.spread(&answers);
        let expected = [Some("A"), None, Some("B"), Some("A"), None, Some("B")];
        assert_eq!(rows, expected.map(|s| s.map(str::to_owned)));
    }

    #[test]
    fn the_first_batch_under_another_key_version_is_named() {
        assert!(one_key_version(&[]).is_ok());
        assert!(one_key_version(&[2, 2, 2]).is_ok());
        let error = one_key_version(&[1, 1, 2, 1]).expect_err("two versions");
        assert!(matches!(
            error,
            Error::KeyVersionsDiffer {
                batch: 3,
                batches: 4,
                first: 1,
                version: 2
            }
        ));
        assert!(
            error
                .to_string()
                .starts_with("batch 3 of 4: made under key version 2, batch 1 under 1")
        );
    }

    #[test]
    fn every_row_keeps_duplicates() {
        let plan = Plan::every_row([Some("a"), None, Some("a")]);
        assert_eq!(plan.unique, ["a", "a"]);
        assert_eq!(plan.rows, [Some(0), None, Some(1)]);
    }
}
