//! etcd's JSON gateway conventions: 64-bit integers travel as strings (and are accepted as
//! numbers), bytes as base64, and zero values are left out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// `i64` as a JSON string, read from a string or a number.
pub mod int64 {
    use super::*;

    /// Writes the number as a string.
    pub fn serialize<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Reads a string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_any(IntVisitor)
    }

    struct IntVisitor;

    impl Visitor<'_> for IntVisitor {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a 64-bit integer, as a number or a string")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::custom(format!("{value} does not fit in int64")))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<i64, E> {
            value
                .parse()
                .map_err(|_| E::custom(format!("{value:?} is not a 64-bit integer")))
        }
    }
}

/// `u64` as a JSON string, read from a string or a number.
pub mod uint64 {
    use super::*;

    /// Writes the number as a string.
    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Reads a string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(UintVisitor)
    }

    struct UintVisitor;

    impl Visitor<'_> for UintVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an unsigned 64-bit integer, as a number or a string")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
            Ok(value)
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value).map_err(|_| E::custom(format!("{value} is negative")))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<u64, E> {
            value
                .parse()
                .map_err(|_| E::custom(format!("{value:?} is not an unsigned 64-bit integer")))
        }
    }
}

/// Bytes as base64.
pub mod bytes {
    use super::*;

    /// Writes standard base64.
    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(value))
    }

    /// Reads standard base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|error| de::Error::custom(format!("invalid base64 {text:?}: {error}")))
    }
}

/// Whether a field holds its zero value and is left out, as proto3 JSON does.
pub fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
