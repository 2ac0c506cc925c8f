//! Kubernetes resource quantities (`20Gi`, `500M`, `1.5Ti`, `1e9`) read as exact
//! numbers, so the operator can tell a storage request that grows from one that
//! shrinks. k8s-openapi keeps a `Quantity` as its string, and comparing strings
//! would call `1Ti` smaller than `900Gi`.
//!
//! The grammar is the API server's: a signed decimal number, then a binary suffix
//! (Ki … Ei), a decimal suffix (m, k, M … E) or an exponent (e3, E-2).

use std::cmp::Ordering;
use std::fmt;

/// A non-negative quantity as an exact fraction `numerator / 10^scale`, with the
/// scale kept small enough that every value the API server accepts fits in a u128.
#[derive(Debug, Clone, Copy)]
pub struct Amount {
    numerator: u128,
    scale: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes quantity (e.g. 20Gi, 500M, 1.5Ti)")]
pub struct NotAQuantity(pub String);

/// The largest decimal exponent we accept; the API server caps quantities far
/// below 10^38 as well.
const MAX_EXPONENT: i32 = 24;
/// Enough fractional digits for `m` (10^-3) on a fraction such as `0.125m`.
const MAX_FRACTION_DIGITS: u32 = 9;

impl Amount {
    pub fn parse(text: &str) -> Result<Amount, NotAQuantity> {
        let bad = || NotAQuantity(text.to_string());
        let body = text.strip_prefix('+').unwrap_or(text);
        if body.starts_with('-') {
            return Err(bad());
        }
        let number_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty())
            || fraction.contains('.')
            || fraction.len() > MAX_FRACTION_DIGITS as usize
        {
            return Err(bad());
        }
        let digits = format!("{whole}{fraction}");
        let mut numerator: u128 = digits.parse().map_err(|_| bad())?;
        let mut scale = fraction.len() as u32;

        let (binary_power, decimal_exponent) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            exponent => {
                let digits = exponent
                    .strip_prefix('e')
                    .or_else(|| exponent.strip_prefix('E'))
                    .ok_or_else(bad)?;
                let value: i32 = digits.parse().map_err(|_| bad())?;
                if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&value) {
                    return Err(bad());
                }
                (0, value)
            }
        };
        numerator = numerator
            .checked_mul(1u128 << binary_power)
            .ok_or_else(bad)?;
        if decimal_exponent >= 0 {
            numerator = numerator
                .checked_mul(10u128.pow(decimal_exponent as u32))
                .ok_or_else(bad)?;
        } else {
            scale += decimal_exponent.unsigned_abs();
        }
        Ok(Amount { numerator, scale })
    }

    /// The whole part, when it fits in a u64 (a size in bytes).
    pub fn whole(&self) -> Option<u64> {
        let divisor = 10u128.checked_pow(self.scale)?;
        u64::try_from(self.numerator / divisor).ok()
    }

    pub fn is_zero(&self) -> bool {
        self.numerator == 0
    }

    /// Both numerators over the larger scale, or None when that would overflow
    /// (then the numbers are so far apart that the scale alone decides).
    fn aligned(&self, other: &Amount) -> Option<(u128, u128)> {
        let scale = self.scale.max(other.scale);
        let lift = |a: &Amount| {
            a.numerator
                .checked_mul(10u128.checked_pow(scale - a.scale)?)
        };
        Some((lift(self)?, lift(other)?))
    }
}

impl PartialEq for Amount {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Amount {}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Amount {
    fn cmp(&self, other: &Self) -> Ordering {
        match self.aligned(other) {
            Some((a, b)) => a.cmp(&b),
            // Lifting overflowed: the one with the smaller scale is the huge one,
            // unless it is zero.
            None if self.scale < other.scale => {
                if self.is_zero() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            None => {
                if other.is_zero() {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let divisor = 10u128.pow(self.scale);
        let whole = self.numerator / divisor;
        let rest = self.numerator % divisor;
        if rest == 0 {
            write!(f, "{whole}")
        } else {
            let fraction = format!("{rest:0width$}", width = self.scale as usize);
            write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Amount {
        Amount::parse(text).unwrap()
    }

    #[test]
    fn suffixes() {
        assert_eq!(q("20Gi").to_string(), (20u128 << 30).to_string());
        assert_eq!(q("1Ki").to_string(), "1024");
        assert_eq!(q("1Ei").to_string(), (1u128 << 60).to_string());
        assert_eq!(q("500M").to_string(), "500000000");
        assert_eq!(q("1.5Gi").to_string(), "1610612736");
        assert_eq!(q("100m").to_string(), "0.1");
        assert_eq!(q("1e3").to_string(), "1000");
        assert_eq!(q("25E-1").to_string(), "2.5");
        assert_eq!(q("+7").to_string(), "7");
        assert_eq!(q(".5").to_string(), "0.5");
        assert_eq!(q("5.").to_string(), "5");
        assert_eq!(q("0").to_string(), "0");
    }

    #[test]
    fn order_is_numeric_not_textual() {
        assert!(q("1Ti") > q("900Gi"));
        assert!(q("10Gi") < q("20Gi"));
        assert!(q("1G") < q("1Gi"));
        assert_eq!(q("1024Mi"), q("1Gi"));
        assert_eq!(q("1000m"), q("1"));
        assert!(q("1m") > q("0"));
        assert!(q("0.000000001m") < q("1Ei"));
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in [
            "", "Gi", "-1Gi", "20GB", "20 Gi", "1.2.3", "ten", "1e", "1e99", "Ki1", "1..2", "0x10",
            "1ki",
        ] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn huge_values_do_not_overflow() {
        assert!(Amount::parse("999999999999999999999999999999Ei").is_err());
        assert!(q("1e24") > q("1Ei"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "[-+0-9.eEkKMGTPim]{0,12}") {
            let _ = Amount::parse(&text);
        }

        #[test]
        fn binary_suffixes_scale_by_1024(n in 0u64..1_000_000) {
            proptest::prop_assert_eq!(q(&format!("{n}Gi")), q(&format!("{}Mi", n * 1024)));
            let (bigger, smaller) = (q(&format!("{}Gi", n + 1)), q(&format!("{n}Gi")));
            proptest::prop_assert!(bigger > smaller);
        }
    }
}
