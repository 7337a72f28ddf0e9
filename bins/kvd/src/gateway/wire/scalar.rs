//! proto3 JSON scalars as etcd's gateway reads and writes them: 64-bit integers as decimal
//! strings (numbers accepted on input), bytes as standard base64, `null` as the zero value.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::{DecodeError, Engine as _};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Reads a field that may be `null` as its zero value, as proto3 JSON does.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Whether a value is its type's zero value, which proto3 JSON leaves out.
pub(crate) fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Reads a `bool` field: `true`, `false` or `null` (false); anything else gets Go's error.
pub(crate) fn deserialize_bool<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<bool, D::Error> {
    deserializer.deserialize_any(BoolVisitor)
}

/// The [`Visitor`] behind [`deserialize_bool`].
struct BoolVisitor;

impl BoolVisitor {
    fn wrong_kind<E: de::Error>(kind: &str) -> E {
        E::custom(format!(
            "json: cannot unmarshal {kind} into Go value of type bool"
        ))
    }
}

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a boolean")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Err(Self::wrong_kind("string"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Err(Self::wrong_kind("number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Err(Self::wrong_kind("number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Err(Self::wrong_kind("number"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(Self::wrong_kind("array"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(Self::wrong_kind("object"))
    }
}

/// An `int64`: written as a string, read from a number or a string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Int64(pub i64);

/// A `uint64`: written as a string, read from a number or a string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uint64(pub u64);

/// A `bytes` field: written as standard base64, read from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl Serialize for Uint64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

/// Reads a 64-bit integer written either way; the type name goes into error messages, which
/// follow Go's `encoding/json` wording as etcd returns it.
struct IntegerVisitor<T> {
    type_name: &'static str,
    parse: fn(&str) -> Option<T>,
}

impl<T: Default + TryFrom<i64> + TryFrom<u64>> Visitor<'_> for IntegerVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "an {} as a number or a string", self.type_name)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        T::try_from(value).map_err(|_| self.out_of_range(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        T::try_from(value).map_err(|_| self.out_of_range(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        Err(self.out_of_range(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.parse)(value).ok_or_else(|| self.out_of_range(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Err(self.wrong_kind("bool"))
    }
}

impl<T> IntegerVisitor<T> {
    fn out_of_range<E: de::Error>(&self, value: impl fmt::Display) -> E {
        E::custom(format!(
            "json: cannot unmarshal number {value} into Go value of type {}",
            self.type_name
        ))
    }

    fn wrong_kind<E: de::Error>(&self, kind: &str) -> E {
        E::custom(format!(
            "json: cannot unmarshal {kind} into Go value of type {}",
            self.type_name
        ))
    }
}

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntegerVisitor {
                type_name: "int64",
                parse: |text| text.parse().ok(),
            })
            .map(Int64)
    }
}

impl<'de> Deserialize<'de> for Uint64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntegerVisitor {
                type_name: "uint64",
                parse: |text| text.parse().ok(),
            })
            .map(Uint64)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        STANDARD
            .decode(&text)
            .map(Bytes)
            .map_err(|error| de::Error::custom(base64_message(&error, text.len())))
    }
}

/// Go's `illegal base64 data at input byte N`, which etcd answers bad base64 with.
fn base64_message(error: &DecodeError, length: usize) -> String {
    let offset = match *error {
        DecodeError::InvalidByte(offset, _) | DecodeError::InvalidLastSymbol(offset, _) => offset,
        DecodeError::InvalidLength(_) | DecodeError::InvalidPadding => length,
    };
    format!("illegal base64 data at input byte {offset}")
}

/// A proto enum: written by name, read from its name or number.
pub(crate) trait ProtoEnum: Sized + Copy + 'static {
    /// The proto type name, for error messages (`etcdserverpb.RangeRequest_SortOrder`).
    const PROTO_NAME: &'static str;
    /// Every value with its name and number.
    const VALUES: &'static [(Self, &'static str, i64)];
}

/// Serialises a [`ProtoEnum`] by name.
pub(crate) fn serialize_enum<E: ProtoEnum + PartialEq, S: Serializer>(
    value: &E,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let name = E::VALUES
        .iter()
        .find(|(candidate, _, _)| candidate == value)
        .map_or("", |(_, name, _)| *name);
    serializer.serialize_str(name)
}

/// Reads a [`ProtoEnum`] from its name or number; `null` is the zero value.
pub(crate) fn deserialize_enum<'de, E: ProtoEnum + Default, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<E, D::Error> {
    deserializer.deserialize_any(EnumVisitor(std::marker::PhantomData))
}

/// The [`Visitor`] behind [`deserialize_enum`].
struct EnumVisitor<E>(std::marker::PhantomData<E>);

impl<E: ProtoEnum + Default> Visitor<'_> for EnumVisitor<E> {
    type Value = E;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "a {} name or number", E::PROTO_NAME)
    }

    fn visit_str<Er: de::Error>(self, value: &str) -> Result<E, Er> {
        E::VALUES
            .iter()
            .find(|(_, name, _)| *name == value)
            .map(|(value, _, _)| *value)
            .ok_or_else(|| {
                Er::custom(format!(
                    "unknown value {value:?} for enum {}",
                    E::PROTO_NAME
                ))
            })
    }

    fn visit_i64<Er: de::Error>(self, value: i64) -> Result<E, Er> {
        E::VALUES
            .iter()
            .find(|(_, _, number)| *number == value)
            .map(|(value, _, _)| *value)
            .ok_or_else(|| Er::custom(format!("unknown value {value} for enum {}", E::PROTO_NAME)))
    }

    fn visit_u64<Er: de::Error>(self, value: u64) -> Result<E, Er> {
        let number = i64::try_from(value)
            .map_err(|_| Er::custom(format!("unknown value {value} for enum {}", E::PROTO_NAME)))?;
        self.visit_i64(number)
    }

    fn visit_unit<Er: de::Error>(self) -> Result<E, Er> {
        Ok(E::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_reads_numbers_strings_and_null_and_writes_strings() {
        let read = |text: &str| serde_json::from_str::<Int64>(text).map(|value| value.0);
        assert_eq!(read("42").unwrap(), 42);
        assert_eq!(read("\"-7\"").unwrap(), -7);
        assert_eq!(read("null").unwrap(), 0);
        let error = read("1.5").unwrap_err().to_string();
        assert!(
            error.starts_with("json: cannot unmarshal number 1.5 into Go value of type int64"),
            "{error}"
        );
        assert!(read("\"99999999999999999999\"").is_err());
        assert!(read("true").is_err());
        assert_eq!(serde_json::to_string(&Int64(-3)).unwrap(), "\"-3\"");
        assert_eq!(
            serde_json::to_string(&Uint64(u64::MAX)).unwrap(),
            "\"18446744073709551615\""
        );
        assert!(serde_json::from_str::<Uint64>("-1").is_err());
    }

    #[test]
    fn bools_take_null_and_refuse_other_kinds_as_go_does() {
        #[derive(Debug, serde::Deserialize)]
        struct Flag {
            #[serde(deserialize_with = "deserialize_bool")]
            flag: bool,
        }
        let read = |text: &str| serde_json::from_str::<Flag>(text).map(|value| value.flag);
        assert!(read(r#"{"flag":true}"#).unwrap());
        assert!(!read(r#"{"flag":null}"#).unwrap());
        let error = read(r#"{"flag":"yes"}"#).unwrap_err().to_string();
        assert!(
            error.starts_with("json: cannot unmarshal string into Go value of type bool"),
            "{error}"
        );
        assert!(read(r#"{"flag":1}"#).is_err());
    }

    #[test]
    fn bytes_are_standard_base64_with_go_error_messages() {
        let read = |text: &str| serde_json::from_str::<Bytes>(text).map(|value| value.0);
        assert_eq!(read("\"Zm9v\"").unwrap(), b"foo");
        assert_eq!(read("null").unwrap(), b"");
        let error = read("\"!!\"").unwrap_err().to_string();
        assert!(
            error.starts_with("illegal base64 data at input byte 0"),
            "{error}"
        );
        assert_eq!(
            serde_json::to_string(&Bytes(b"\xff".to_vec())).unwrap(),
            "\"/w==\""
        );
    }
}
