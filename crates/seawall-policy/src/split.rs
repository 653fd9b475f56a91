//! Weighted traffic split across subsets (versions): the twin of
//! `seawall.proxy.routing.WeightedSplit` and `Decider.choose_subset`.
//!
//! The subsets are kept in the order given, with the running sums of their
//! weights. One draw `r` in `[0, 1)` picks the first subset whose running sum
//! is above `r * total`, so a subset is chosen with probability proportional
//! to its weight and one of weight 0 never is. Sums are accumulated in the
//! same order as in Python, so the same draw picks the same subset, bit for
//! bit. A draw outside `[0, 1)` (which Python's `random()` never returns) picks
//! the last subset of positive weight instead of failing; a NaN picks the first.

use std::fmt;

use crate::rng::Random;

/// A split could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitError {
    /// No subsets at all.
    Empty,
    /// A subset name is the empty string.
    EmptyName,
    /// A subset is named twice.
    Duplicate(String),
    /// A weight is negative, infinite or NaN.
    Weight {
        /// The subset.
        subset: String,
        /// Its weight.
        weight: f64,
    },
    /// Every weight is 0.
    AllZero,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::Empty => f.write_str("WeightedSplit: weights must be a non-empty list"),
            SplitError::EmptyName => f.write_str("WeightedSplit: subset must be a non-empty str"),
            SplitError::Duplicate(name) => {
                write!(
                    f,
                    "WeightedSplit: subsets must be unique, got {name:?} twice"
                )
            }
            SplitError::Weight { subset, weight } => write!(
                f,
                "WeightedSplit: weight of {subset:?} must be a finite number >= 0, got {weight}"
            ),
            SplitError::AllZero => f.write_str("WeightedSplit: at least one weight must be > 0"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Traffic split across subsets, proportional to the weights (which need not sum to 100).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedSplit {
    names: Vec<String>,
    weights: Vec<f64>,
    cumulative: Vec<f64>,
    /// Index of the last subset of positive weight (the answer for a draw >= 1).
    last: usize,
}

impl WeightedSplit {
    /// A split from `(subset, weight)` pairs: names unique and non-empty,
    /// weights finite and >= 0, at least one > 0.
    pub fn new<S: Into<String>>(
        weights: impl IntoIterator<Item = (S, f64)>,
    ) -> Result<Self, SplitError> {
        let mut names: Vec<String> = Vec::new();
        let mut ws = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        let mut last = 0;
        for (name, weight) in weights {
            let name = name.into();
            if name.is_empty() {
                return Err(SplitError::EmptyName);
            }
            if names.contains(&name) {
                return Err(SplitError::Duplicate(name));
            }
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(SplitError::Weight {
                    subset: name,
                    weight,
                });
            }
            if weight > 0.0 {
                last = names.len();
            }
            total += weight;
            names.push(name);
            ws.push(weight);
            cumulative.push(total);
        }
        if names.is_empty() {
            return Err(SplitError::Empty);
        }
        if total <= 0.0 {
            // (a sum of finite weights >= 0 is never NaN)
            return Err(SplitError::AllZero);
        }
        Ok(Self {
            names,
            weights: ws,
            cumulative,
            last,
        })
    }

    /// The sum of the weights.
    pub fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// The `(subset, weight)` pairs, in order.
    pub fn weights(&self) -> impl Iterator<Item = (&str, f64)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.weights.iter().copied())
    }

    /// The subset for the draw `draw` (in `[0, 1)`).
    pub fn pick(&self, draw: f64) -> &str {
        let point = draw * self.total();
        let index = self
            .cumulative
            .iter()
            .position(|&bound| point < bound || point.is_nan())
            .unwrap_or(self.last);
        self.names.get(index).map_or("", String::as_str)
    }

    /// A subset, drawn from `rng` (one draw, as Python's `Decider.choose_subset`).
    pub fn choose(&self, rng: &mut dyn Random) -> &str {
        self.pick(rng.next_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Sequence, SplitMix64};

    #[test]
    fn picks_by_running_sums() {
        let split = WeightedSplit::new([("a", 1.0), ("b", 0.0), ("c", 1.0)]).expect("valid");
        assert_eq!(split.total(), 2.0);
        assert_eq!(split.pick(0.0), "a");
        assert_eq!(split.pick(0.4999), "a");
        assert_eq!(split.pick(0.5), "c"); // never the zero-weight subset
        assert_eq!(split.pick(1.0 - f64::EPSILON / 2.0), "c");
        assert_eq!(split.pick(1.0), "c");
        assert_eq!(split.pick(7.0), "c");
        assert_eq!(split.pick(f64::NAN), "a");
        assert_eq!(split.pick(-1.0), "a");
        let pairs: Vec<(&str, f64)> = split.weights().collect();
        assert_eq!(pairs, [("a", 1.0), ("b", 0.0), ("c", 1.0)]);
    }

    #[test]
    fn trailing_zero_weight_is_never_picked() {
        let split = WeightedSplit::new([("a", 1.0), ("z", 0.0)]).expect("valid");
        assert_eq!(split.pick(1.0), "a");
        assert_eq!(split.choose(&mut Sequence::new(vec![0.99])), "a");
    }

    #[test]
    fn proportions_over_many_draws() {
        let split = WeightedSplit::new([("v1".to_string(), 90.0), ("v2".to_string(), 10.0)])
            .expect("valid");
        let mut rng = SplitMix64::new(11);
        let v2 = (0..100_000)
            .filter(|_| split.choose(&mut rng) == "v2")
            .count();
        assert!((9_000..11_000).contains(&v2), "{v2}");
    }

    #[test]
    fn bad_splits_are_refused() {
        let none: [(&str, f64); 0] = [];
        assert_eq!(WeightedSplit::new(none), Err(SplitError::Empty));
        assert_eq!(WeightedSplit::new([("", 1.0)]), Err(SplitError::EmptyName));
        assert_eq!(
            WeightedSplit::new([("a", 1.0), ("a", 2.0)]),
            Err(SplitError::Duplicate("a".into()))
        );
        assert!(matches!(
            WeightedSplit::new([("a", -1.0)]),
            Err(SplitError::Weight { .. })
        ));
        assert!(WeightedSplit::new([("a", f64::NAN)]).is_err());
        assert!(WeightedSplit::new([("a", f64::INFINITY)]).is_err());
        assert_eq!(
            WeightedSplit::new([("a", 0.0), ("b", 0.0)]),
            Err(SplitError::AllZero)
        );
        assert!(SplitError::AllZero.to_string().contains("> 0"));
    }
}
