//! How closed sets of values travel: unit enums sent as their names (D-Bus type `s`), and
//! [`Opt`] for a field where the empty string means "none" or "the default".
//!
//! The names are the ones the suite has always sent, so `busctl` and older scripts read the
//! same text; only this crate turns them into enums and back.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zbus::{Signature, Type};

/// A value that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was being read, e.g. `decision`.
    pub what: &'static str,
    /// The text that was given.
    pub value: String,
    /// Every name that is accepted.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected one of: {})",
            self.what,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

/// A unit enum that travels as one of its names.
pub trait WireEnum: Copy + Sized + 'static {
    /// Every name, in declaration order.
    const NAMES: &'static [&'static str];
    /// The name on the wire.
    fn as_str(self) -> &'static str;
}

/// Declares a unit enum sent as its names, with `as_str`, `Display`, `FromStr`
/// ([`UnknownValue`] naming the value) and serde/zbus impls that use the same names.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $crate::wire::WireEnum for $ty {
            const NAMES: &'static [&'static str] = &[$($name),+];
            fn as_str(self) -> &'static str {
                $ty::as_str(self)
            }
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name on the wire and in the command line's output.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                // `pad`, so `{:<10}` lines a column up as it did for the strings.
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::wire::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err($crate::wire::UnknownValue {
                        what: $what,
                        value: other.to_string(),
                        expected: <$ty as $crate::wire::WireEnum>::NAMES,
                    }),
                }
            }
        }

        impl ::zbus::zvariant::Type for $ty {
            const SIGNATURE: &'static ::zbus::Signature =
                &::zbus::Signature::Str;
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use wire_enum;

/// A [`WireEnum`] field that may be absent: the empty string on the wire (`network` of an
/// exec request when the caller wants sandboxd's default, `decision` of a tool call the
/// warden was never asked about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opt<T>(pub Option<T>);

impl<T> Default for Opt<T> {
    fn default() -> Self {
        Opt(None)
    }
}

impl<T> Opt<T> {
    /// No value: the empty string on the wire.
    pub const NONE: Opt<T> = Opt(None);

    /// The value, if there is one.
    pub fn get(self) -> Option<T> {
        self.0
    }

    /// Whether there is no value.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: WireEnum> Opt<T> {
    /// The name on the wire; empty for none.
    pub fn as_str(self) -> &'static str {
        self.0.map(WireEnum::as_str).unwrap_or("")
    }
}

impl<T> From<Option<T>> for Opt<T> {
    fn from(value: Option<T>) -> Self {
        Opt(value)
    }
}

impl<T> From<T> for Opt<T> {
    fn from(value: T) -> Self {
        Opt(Some(value))
    }
}

impl<T: WireEnum> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl<T: WireEnum + FromStr<Err = UnknownValue>> FromStr for Opt<T> {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Ok(Opt(None))
        } else {
            s.parse().map(|v| Opt(Some(v)))
        }
    }
}

impl<T: WireEnum> Type for Opt<T> {
    const SIGNATURE: &'static Signature = &Signature::Str;
}

impl<T: WireEnum> Serialize for Opt<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: WireEnum + FromStr<Err = UnknownValue>> Deserialize<'de> for Opt<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
