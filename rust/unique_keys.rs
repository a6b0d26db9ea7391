//! Refusing JSON objects that name a key twice. serde_json (like most parsers) keeps the last of
//! two equal keys, so a header could hold two entries for one tensor and a reader would silently
//! take one of them; this pass walks the JSON once and names the first repeated key.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The first key that appears twice in one object anywhere in `json` (with the path of objects
/// above it), or `None`. Malformed JSON gives `None`: reporting it is the real parser's job.
pub fn first_repeated_key(json: &str) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    match Walk(String::new()).deserialize(&mut deserializer) {
        Ok(()) => None,
        Err(err) => err.to_string().strip_prefix(REPEATED).map(|rest| {
            // serde_json appends " at line L column C" to custom errors.
            rest.rsplit_once(" at line ")
                .map_or(rest, |(key, _)| key)
                .to_string()
        }),
    }
}

const REPEATED: &str = "repeated key: ";

/// Visits one JSON value; `.0` is where it sits (`"a" / "b"`), for the message.
struct Walk(String);

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.0.is_empty() {
                format!("{key:?}")
            } else {
                format!("{} / {key:?}", self.0)
            };
            if !seen.insert(key) {
                return Err(de::Error::custom(format!("{REPEATED}{path}")));
            }
            map.next_value_seed(Walk(path))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk(self.0.clone()))?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_named_with_their_place() {
        assert_eq!(first_repeated_key(r#"{"a": 1, "b": 2}"#), None);
        assert_eq!(
            first_repeated_key(r#"{"a": 1, "a": 2}"#).as_deref(),
            Some(r#""a""#)
        );
        assert_eq!(
            first_repeated_key(r#"{"__metadata__": {"k": "1", "k": "2"}}"#).as_deref(),
            Some(r#""__metadata__" / "k""#)
        );
        assert_eq!(
            first_repeated_key(r#"{"x": [{"a": 1}, {"a": 1}]}"#),
            None,
            "equal keys in different objects are fine"
        );
        assert_eq!(first_repeated_key("{not json"), None);
    }
}
