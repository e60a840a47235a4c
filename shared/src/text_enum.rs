//! `text_enum!`: the one way an enum stored as text (a status, a direction, a kind) gets its
//! names, so the database, the wire and the code spell each variant the same way.

/// A text that names no variant of the enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant {
    pub enum_name: &'static str,
    pub text: String,
}

impl std::fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a {}", self.text, self.enum_name)
    }
}

impl std::error::Error for UnknownVariant {}

/// Gives an enum `ALL`, `as_str`, `parse`, `Display` and `TryFrom<String>` from one table of
/// names. The names must be the ones serde uses (`rename_all = "snake_case"`); each enum's
/// tests check that they are.
#[macro_export]
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The variant's stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant a stored or wire name names.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::convert::TryFrom<String> for $name {
            type Error = $crate::text_enum::UnknownVariant;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                Self::parse(&text).ok_or($crate::text_enum::UnknownVariant {
                    enum_name: stringify!($name),
                    text,
                })
            }
        }
    };
}

/// Asserts that serde spells every variant of `T` as `as_str` does (for the enums' tests).
#[cfg(test)]
pub(crate) fn assert_serde_names<T>(all: &[T], as_str: impl Fn(&T) -> &'static str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for v in all {
        let json = serde_json::to_string(v).unwrap_or_default();
        assert_eq!(json, format!("\"{}\"", as_str(v)), "{v:?}");
        let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(&back, v);
    }
}
