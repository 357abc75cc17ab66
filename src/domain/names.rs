//! Names of models, versions, aliases and gates: 1–128 characters of `[A-Za-z0-9._-]`, not starting
//! with `.`. A `Name` can only be built valid.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The accepted names as a regular expression (for the OpenAPI document).
pub const PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$";

/// A validated resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Parse a name, saying what is wrong when it is not one.
    pub fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > 128 {
            return Err(format!(
                "is {} characters long; at most 128 are allowed",
                s.len()
            ));
        }
        if s.starts_with('.') {
            return Err("must not start with '.'".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"
            ));
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "fraud-model", "v1.2.3", "A_b-9", &"x".repeat(128)] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a b", "a/b", "é", &"x".repeat(129), "a\u{0}"] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn valid_pattern_always_parses(s in PATTERN.trim_start_matches('^').trim_end_matches('$')) {
            let name = Name::parse(&s).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
        }

        #[test]
        fn any_other_character_is_rejected(pre in "[a-z]{0,5}", c in "[^A-Za-z0-9._-]", post in "[a-z]{0,5}") {
            let s = format!("{pre}{c}{post}");
            prop_assert!(Name::parse(&s).is_err());
        }
    }
}
