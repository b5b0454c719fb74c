//! One call's input and output. The WIT `request` and `response` records are
//! the guest's view of the same two things.

use serde::{Deserialize, Serialize};

/// The input of one call, as the caller sent it: the body, its media type
/// and the query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRequest {
    /// The payload, e.g. an encoded image.
    pub body: Vec<u8>,
    /// Media type of `body`; empty when unknown.
    pub content_type: String,
    /// Caller parameters in the order given.
    pub params: Vec<(String, String)>,
}

/// A successful call's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOutput {
    /// The output bytes.
    pub body: Vec<u8>,
    /// Media type of `body`, as the function declared it.
    pub content_type: String,
}

/// How a call ended, as its usage record and metrics say it: `ok` or the
/// error code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The function returned an output.
    #[default]
    Ok,
    /// It did not, for this reason.
    Failed(crate::ErrorCode),
}

impl Outcome {
    /// `ok`, or the code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed(code) => code.as_str(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "ok" => Ok(Self::Ok),
            // Usage logged before traps had their API name.
            "trapped" => Ok(Self::Failed(crate::ErrorCode::FunctionTrapped)),
            other => other.parse().map(Self::Failed).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn outcomes_round_trip_and_read_old_names() {
        for outcome in [Outcome::Ok, Outcome::Failed(ErrorCode::Timeout)] {
            let text = serde_json::to_string(&outcome).unwrap_or_default();
            assert_eq!(serde_json::from_str::<Outcome>(&text).ok(), Some(outcome));
        }
        assert_eq!(serde_json::to_string(&Outcome::Ok).ok().as_deref(), Some("\"ok\""));
        assert_eq!(
            serde_json::from_str::<Outcome>("\"trapped\"").ok(),
            Some(Outcome::Failed(ErrorCode::FunctionTrapped))
        );
        assert!(serde_json::from_str::<Outcome>("\"nonsense\"").is_err());
    }
}
