//! The two declarative macros every payload type is written with, so each definition reads like
//! its schema and is audited against it line by line:
//!
//! - `object!` — a JSON object with `additionalProperties: false`. One line per property:
//!   `required "idTag" id_tag: IdToken,` or `optional "parentIdTag" parent_id_tag: IdToken,`
//!   (JSON name, Rust field, type; an optional field becomes `Option<T>`). Limits live in the
//!   types (`CiString<20>`, `DateTime`, `Decimal`, `NonEmpty<T>`, enums).
//! - `enumeration!` — a string enum: `Accepted, Blocked,` or `InterruptionBegin =
//!   "Interruption.Begin",` where the JSON spelling is not a Rust identifier.
//!
//! Why hand-generated serde impls instead of `#[derive]`: a derived struct also deserializes from
//! a JSON array (`["V","M"]` would be a BootNotification), a derived unit enum also from a map
//! (`{"Accepted":null}`), and a derived `Option` field takes `null` — all three are schema
//! violations. The generated visitors accept exactly what the schema does: objects from maps
//! only, enums from strings only, optional fields absent or of their type. They also never
//! allocate for a key: keys are matched against the field list as borrowed text.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// A map key, resolved to the matching entry of an object's field list without allocating;
/// any other key is serde's "unknown field" error (a FormationViolation).
pub(super) struct FieldName(pub(super) &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldName {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for FieldName {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        match self.0.iter().find(|name| **name == key) {
            Some(name) => Ok(name),
            None => Err(E::unknown_field(key, self.0)),
        }
    }
}

/// Reads one property's value into its slot; a repeated key is an error (serde_json would keep
/// the last silently, hiding which one the charge point meant).
pub(super) fn fill<'de, A, T>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: de::Deserialize<'de>,
{
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// The Rust type of a field: `required T` is `T`, `optional T` is `Option<T>`.
macro_rules! field_type {
    (required $ty:ty) => { $ty };
    (optional $ty:ty) => { Option<$ty> };
}

/// Turns a field's slot into its value once the map is read: a required field must be there.
macro_rules! finish_field {
    (required $slot:ident $json:literal) => {
        match $slot {
            Some(value) => value,
            None => return Err(serde::de::Error::missing_field($json)),
        }
    };
    (optional $slot:ident $json:literal) => {
        $slot
    };
}

/// Writes one field; `None` is skipped, never written as `null` (the schemas have no nulls).
macro_rules! serialize_field {
    (required $map:ident $json:literal $value:expr) => {
        serde::ser::SerializeMap::serialize_entry(&mut $map, $json, $value)?;
    };
    (optional $map:ident $json:literal $value:expr) => {
        if let Some(value) = $value {
            serde::ser::SerializeMap::serialize_entry(&mut $map, $json, value)?;
        }
    };
}

/// A JSON object with `additionalProperties: false`; see the module doc.
macro_rules! object {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $presence:ident $json:literal $field:ident: $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(
                $(#[$field_meta])*
                pub $field: field_type!($presence $ty),
            )*
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                #[allow(unused_mut)] // objects without properties
                let mut map = serializer.serialize_map(None)?;
                $( serialize_field!($presence map $json &self.$field); )*
                serde::ser::SerializeMap::end(map)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;

                impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an object")
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        const FIELDS: &[&str] = &[$($json),*];
                        $( let mut $field: Option<$ty> = None; )*
                        while let Some(key) =
                            map.next_key_seed($crate::v16::macros::FieldName(FIELDS))?
                        {
                            #[allow(clippy::match_single_binding)] // objects without properties
                            match key {
                                $(
                                    $json => $crate::v16::macros::fill(
                                        &mut $field, $json, &mut map,
                                    )?,
                                )*
                                // FieldName only yields names from FIELDS.
                                other => {
                                    return Err(serde::de::Error::unknown_field(other, FIELDS));
                                }
                            }
                        }
                        Ok($name { $( $field: finish_field!($presence $field $json), )* })
                    }
                }

                deserializer.deserialize_map(ObjectVisitor)
            }
        }
    };
}

/// The JSON spelling of an enum variant: its name unless given.
macro_rules! variant_name {
    ($variant:ident) => {
        stringify!($variant)
    };
    ($variant:ident $json:literal) => {
        $json
    };
}

/// A string enum; see the module doc.
macro_rules! enumeration {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident $(= $json:literal)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )*
        }

        impl $name {
            /// Every value, in the schema's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// Every JSON spelling, in the schema's order.
            const NAMES: &'static [&'static str] = &[$(variant_name!($variant $($json)?)),*];

            /// The value as written in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => variant_name!($variant $($json)?), )*
                }
            }

            /// The value with exactly this JSON spelling (case-sensitive, as the schemas are).
            pub fn from_json_name(name: &str) -> Option<$name> {
                match name {
                    $( variant_name!($variant $($json)?) => Some($name::$variant), )*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct EnumVisitor;

                impl<'de> serde::de::Visitor<'de> for EnumVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " string"))
                    }

                    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<$name, E> {
                        $name::from_json_name(value)
                            .ok_or_else(|| E::unknown_variant(value, $name::NAMES))
                    }
                }

                deserializer.deserialize_str(EnumVisitor)
            }
        }
    };
}
