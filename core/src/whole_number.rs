//! Whole numbers in JSON bodies. JSON has one number type and JSON Schema
//! counts `5.0` as an integer, so a client (or a generator working from the
//! API document) may write a count as `5.0`; serde's integer types refuse
//! it. Fields that hold counts read both forms, and still refuse a fraction,
//! a negative number or one out of the field's range.

use serde::{Deserialize, Deserializer, de::Error as _};

/// Largest integer a JSON float holds exactly (2^53).
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Deserializes an optional whole number (`5` or `5.0`) into `T`; for
/// `#[serde(default, deserialize_with = "sluice_core::whole_number::optional")]`.
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    let whole = match number.as_u64() {
        Some(whole) => whole,
        None => match number.as_f64() {
            // In range and without a fraction, the cast is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(float) if float.fract() == 0.0 && (0.0..=EXACT_FLOAT_LIMIT).contains(&float) => float as u64,
            _ => return Err(D::Error::custom(format!("expected a whole number of at least 0, got {number}"))),
        },
    };
    T::try_from(whole).map(Some).map_err(|_| D::Error::custom(format!("{whole} is too large")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Count {
        #[serde(default, deserialize_with = "super::optional")]
        n: Option<u32>,
    }

    fn read(json: &str) -> Result<Count, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn integers_and_integral_floats_read_alike() {
        assert_eq!(read(r#"{"n": 5}"#), Ok(Count { n: Some(5) }));
        assert_eq!(read(r#"{"n": 5.0}"#), Ok(Count { n: Some(5) }));
        assert_eq!(read(r#"{"n": null}"#), Ok(Count { n: None }));
        assert_eq!(read("{}"), Ok(Count { n: None }));
    }

    #[test]
    fn fractions_negatives_and_overflow_are_refused() {
        for json in [r#"{"n": 5.5}"#, r#"{"n": -1}"#, r#"{"n": -1.0}"#, r#"{"n": 4294967296}"#, r#"{"n": 1e300}"#] {
            assert!(read(json).is_err(), "{json}");
        }
        assert!(read(r#"{"n": "5"}"#).is_err());
    }
}
