//! Serializes a value without some fields of its structs, at any depth: what a record of
//! another trace source ([`TraceSource`](crate::stats::TraceSource)) cannot know is left out
//! of its JSON line, its other keys written as always, in their order.
//!
//! A serde [`Serializer`] adapter: every call goes to the wrapped serializer, but a struct's
//! field that [`LeftOut`] names is skipped (as `skip_serializing_if` skips one), and every
//! nested value is serialized through the adapter again.

use serde::ser::{self, Serialize, Serializer};

/// Whether field `field` of struct `name` (its Rust name, as serde gives it) is left out.
pub(crate) type LeftOut<'a> = &'a dyn Fn(&'static str, &'static str) -> bool;

/// `value`, serialized without the fields `left_out` names.
pub(crate) struct Without<'v, 'f, T: ?Sized> {
    pub(crate) value: &'v T,
    pub(crate) left_out: LeftOut<'f>,
}

impl<T: Serialize + ?Sized> Serialize for Without<'_, '_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Adapter {
            inner: serializer,
            left_out: self.left_out,
        })
    }
}

struct Adapter<'a, S> {
    inner: S,
    left_out: LeftOut<'a>,
}

/// A compound value (sequence, map, struct) being written, with the struct's name.
struct Compound<'a, C> {
    inner: C,
    name: &'static str,
    left_out: LeftOut<'a>,
}

impl<'a, C> Compound<'a, C> {
    fn wrap<'v, T: ?Sized>(&self, value: &'v T) -> Without<'v, 'a, T> {
        Without {
            value,
            left_out: self.left_out,
        }
    }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.inner.$method($($arg),*)
        })*
    };
}

impl<'a, S: Serializer> Serializer for Adapter<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'a, S::SerializeSeq>;
    type SerializeTuple = Compound<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'a, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'a, S::SerializeMap>;
    type SerializeStruct = Compound<'a, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'a, S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_some(&Without {
            value,
            left_out: self.left_out,
        })
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let value = Without {
            value,
            left_out: self.left_out,
        };
        self.inner.serialize_newtype_struct(name, &value)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let value = Without {
            value,
            left_out: self.left_out,
        };
        self.inner
            .serialize_newtype_variant(name, index, variant, &value)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Ok(Compound {
            inner: self.inner.serialize_seq(len)?,
            name: "",
            left_out: self.left_out,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        Ok(Compound {
            inner: self.inner.serialize_tuple(len)?,
            name: "",
            left_out: self.left_out,
        })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Ok(Compound {
            inner: self.inner.serialize_tuple_struct(name, len)?,
            name,
            left_out: self.left_out,
        })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Ok(Compound {
            inner: self
                .inner
                .serialize_tuple_variant(name, index, variant, len)?,
            name,
            left_out: self.left_out,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Ok(Compound {
            inner: self.inner.serialize_map(len)?,
            name: "",
            left_out: self.left_out,
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Ok(Compound {
            inner: self.inner.serialize_struct(name, len)?,
            name,
            left_out: self.left_out,
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Ok(Compound {
            inner: self
                .inner
                .serialize_struct_variant(name, index, variant, len)?,
            name,
            left_out: self.left_out,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<C: ser::SerializeSeq> ser::SerializeSeq for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_element(&self.wrap(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTuple> ser::SerializeTuple for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_element(&self.wrap(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTupleStruct> ser::SerializeTupleStruct for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_field(&self.wrap(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTupleVariant> ser::SerializeTupleVariant for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_field(&self.wrap(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.inner.serialize_key(&self.wrap(key))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_value(&self.wrap(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeStruct> ser::SerializeStruct for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        if (self.left_out)(self.name, key) {
            return self.inner.skip_field(key);
        }
        self.inner.serialize_field(key, &self.wrap(value))
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeStructVariant> ser::SerializeStructVariant for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        if (self.left_out)(self.name, key) {
            return self.inner.skip_field(key);
        }
        self.inner.serialize_field(key, &self.wrap(value))
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        a: u64,
        b: u64,
    }

    #[derive(serde::Serialize)]
    struct Outer {
        x: u64,
        inner: Vec<Inner>,
        maybe: Option<Inner>,
        y: &'static str,
    }

    #[test]
    fn named_fields_are_left_out_at_any_depth_the_rest_in_order() {
        let value = Outer {
            x: 1,
            inner: vec![Inner { a: 2, b: 3 }],
            maybe: Some(Inner { a: 4, b: 5 }),
            y: "z",
        };
        let left_out = |name: &str, field: &str| (name, field) == ("Inner", "a") || field == "x";
        let text = serde_json::to_string(&Without {
            value: &value,
            left_out: &left_out,
        })
        .unwrap_or_default();
        assert_eq!(text, r#"{"inner":[{"b":3}],"maybe":{"b":5},"y":"z"}"#);
        let none = |_: &str, _: &str| false;
        let all = serde_json::to_string(&Without {
            value: &value,
            left_out: &none,
        })
        .unwrap_or_default();
        assert_eq!(all, serde_json::to_string(&value).unwrap_or_default());
    }
}
