//! A deserializer wrapper that reads a struct only from a JSON object.
//!
//! serde's derived structs also accept a sequence of their fields in order, so without this
//! `"window": [null, null]` would be taken for `"window": {}`: a request the document calls
//! invalid would be accepted. `Strict` wraps a deserializer (and, recursively, every value inside
//! it) so that a struct is always requested as a map. Everything else passes through unchanged.

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// A deserializer whose structs (at any depth) must be maps.
pub struct Strict<D>(pub D);

/// Forward a `Deserializer` method, wrapping the visitor.
macro_rules! forward {
    ($int:literal: $($name:ident ( $($arg:ident : $ty:ty),* ))*) => {
        $(
            fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.0.$name($($arg,)* Wrap::<V, $int>(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward! { true:
        deserialize_i8()
        deserialize_i16()
        deserialize_i32()
        deserialize_i64()
        deserialize_i128()
        deserialize_u8()
        deserialize_u16()
        deserialize_u32()
        deserialize_u64()
        deserialize_u128()
    }

    forward! { false:
        deserialize_any()
        deserialize_bool()
        deserialize_f32()
        deserialize_f64()
        deserialize_char()
        deserialize_str()
        deserialize_string()
        deserialize_bytes()
        deserialize_byte_buf()
        deserialize_option()
        deserialize_unit()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_seq()
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_map()
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
        deserialize_identifier()
        deserialize_ignored_any()
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        // The point of the wrapper: an array is refused with the struct's own "expected" text.
        self.0.deserialize_map(Wrap::<V, false>(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Wraps visitors, seeds and accessors so that nested values are `Strict` too. `INT`: the visitor
/// expects an integer.
struct Wrap<X, const INT: bool = false>(X);

macro_rules! visit {
    ($($name:ident ( $ty:ty ))*) => {
        $(
            fn $name<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.0.$name(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>, const INT: bool> Visitor<'de> for Wrap<V, INT> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }

    visit! {
        visit_bool(bool)
        visit_i8(i8)
        visit_i16(i16)
        visit_i32(i32)
        visit_i64(i64)
        visit_i128(i128)
        visit_u8(u8)
        visit_u16(u16)
        visit_u32(u32)
        visit_u64(u64)
        visit_u128(u128)
        visit_f32(f32)
        visit_char(char)
        visit_str(&str)
        visit_borrowed_str(&'de str)
        visit_string(String)
        visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8])
        visit_byte_buf(Vec<u8>)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        // 2^64 and -2^63 are exact in f64; within them an integral f64 converts exactly.
        if INT && v.fract() == 0.0 {
            if (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                return self.0.visit_u64(v as u64);
            }
            if (-9_223_372_036_854_775_808.0..0.0).contains(&v) {
                return self.0.visit_i64(v as i64);
            }
        }
        self.0.visit_f64(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Wrap(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Wrap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Wrap(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Wrap(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Wrap(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<A> {
    type Error = A::Error;
    type Variant = Wrap<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Wrap<A::Variant>), A::Error> {
        let (v, variant) = self.0.variant_seed(seed)?;
        Ok((v, Wrap(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Wrap(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::<V, false>(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap::<V, false>(visitor))
    }
}

/// Read `T` from JSON text, structs only from objects, the whole text consumed.
pub fn from_slice<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = T::deserialize(Strict(&mut de))?;
    de.end()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        a: Option<u32>,
        #[serde(default)]
        b: Option<f64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        One,
        Two,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        #[serde(default)]
        inner: Inner,
        items: Vec<Inner>,
        maybe: Option<Inner>,
        kind: Kind,
    }

    #[test]
    fn objects_read_as_before() {
        let body =
            br#"{"inner": {"a": 1}, "items": [{"b": 0.5}, {}], "maybe": null, "kind": "two"}"#;
        let strict: Outer = from_slice(body).unwrap();
        let plain: Outer = serde_json::from_slice(body).unwrap();
        assert_eq!(strict, plain);
        assert_eq!(strict.items[0].b, Some(0.5));
        assert_eq!(strict.kind, Kind::Two);
    }

    #[test]
    fn arrays_are_not_structs_at_any_depth() {
        // serde_json alone takes each of these arrays for the struct of its fields.
        for body in [
            r#"{"inner": [null, null], "items": [], "maybe": null, "kind": "one"}"#,
            r#"{"items": [[1, 0.5]], "maybe": null, "kind": "one"}"#,
            r#"{"items": [], "maybe": [1], "kind": "one"}"#,
            r#"[{}, [], null, "one"]"#,
        ] {
            assert!(
                serde_json::from_slice::<Outer>(body.as_bytes()).is_ok(),
                "serde_json accepts {body}"
            );
            let e = from_slice::<Outer>(body.as_bytes()).unwrap_err();
            assert!(
                e.to_string().contains("invalid type: sequence"),
                "{body}: {e}"
            );
        }
    }

    #[test]
    fn integral_numbers_fill_integer_fields_and_nothing_else_changes() {
        let v: Inner = from_slice(br#"{"a": 30.0, "b": 2.0}"#).unwrap();
        assert_eq!((v.a, v.b), (Some(30), Some(2.0)));
        assert_eq!(from_slice::<Inner>(br#"{"a": 1e3}"#).unwrap().a, Some(1000));
        for bad in [
            r#"{"a": 30.5}"#,
            r#"{"a": -1.0}"#,
            r#"{"a": 5e9}"#,
            r#"{"a": 1e300}"#,
        ] {
            assert!(from_slice::<Inner>(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(from_slice::<i64>(b"-2.0").unwrap(), -2);
        assert_eq!(
            from_slice::<u64>(b"18446744073709549568.0").unwrap(),
            18446744073709549568
        );
        // Free-form JSON keeps its spelling of numbers.
        let m: serde_json::Value = from_slice(br#"{"x": 1.0, "y": 1}"#).unwrap();
        assert_eq!(m.to_string(), r#"{"x":1.0,"y":1}"#);
    }

    #[test]
    fn trailing_text_is_refused() {
        assert!(from_slice::<Inner>(b"{} {}").is_err());
    }
}
