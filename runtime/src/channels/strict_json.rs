//! Reading a provider's JSON body strictly, so that only JSON of the shape our types describe
//! gets through.
//!
//! Read straight into a type, serde_json would take two kinds of body that are not what the type
//! says: it skips the parts no field reads without checking them (invalid UTF-8, nesting past
//! its depth limit, numbers out of range pass there), and it fills a struct from an array, by
//! position (`"entry": [[]]` is an entry with no changes). Here the body is parsed as a whole
//! into a `serde_json::Value` first, which checks all of it, and then read into the type through
//! [`Strict`], which is `Value`'s own reading except that a struct comes only from an object.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde_json::{Error, Map, Value};

/// Reads `body` as `T`: all of it JSON, and every struct of `T` an object.
pub fn read_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(body)?;
    T::deserialize(Strict(value))
}

/// A parsed value read as serde_json reads one, except that structs never come from arrays.
struct Strict(Value);

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de> Deserializer<'de> for Strict {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => n.deserialize_any(visitor),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            Value::Object(map) => visitor.visit_map(Entries {
                entries: map.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries {
                entries: map.into_iter(),
                value: None,
            }),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

/// An array's items, each read strictly.
struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(Strict(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// An object's entries, each value read strictly.
struct Entries {
    entries: <Map<String, Value> as IntoIterator>::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                let key: de::value::StringDeserializer<Error> = key.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self.value.take().unwrap_or(Value::Null);
        seed.deserialize(Strict(value))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        name: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        #[serde(default)]
        items: Vec<Inner>,
        one: Option<Inner>,
        count: Option<i64>,
    }

    #[test]
    fn what_json_reads_reads_the_same() {
        let got: Outer =
            read_json(br#"{"items":[{"name":"a"},{}],"one":null,"count":-3,"x":[1,{"y":2}]}"#)
                .unwrap();
        assert_eq!(
            got,
            Outer {
                items: vec![
                    Inner { name: "a".into() },
                    Inner {
                        name: String::new()
                    }
                ],
                one: None,
                count: Some(-3),
            }
        );
    }

    #[test]
    fn a_struct_never_comes_from_an_array_and_unread_parts_are_checked_too() {
        // serde_json alone takes each of these.
        let deep = format!(r#"{{"x":{}}}"#, "[".repeat(200) + &"]".repeat(200));
        for body in [
            &br#"{"items":[[]]}"#[..],
            br#"{"one":["a"]}"#,
            b"{\"x\":\"\xff\"}",
            br#"{"x":1e400}"#,
            deep.as_bytes(),
        ] {
            let lossy = String::from_utf8_lossy(body);
            assert!(serde_json::from_slice::<Outer>(body).is_ok(), "{lossy}");
            assert!(read_json::<Outer>(body).is_err(), "{lossy}");
        }
        assert!(read_json::<Outer>(br#"{"count":1.5}"#).is_err());
        assert!(read_json::<Outer>(br#"{"count":1180591620717411303424}"#).is_err());
    }
}
