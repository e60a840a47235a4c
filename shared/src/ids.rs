//! Typed identifiers, so a tenant id can never be passed where an agent id is expected.
//!
//! Each id is a UUID on the wire and in the database; the type says what it names. With the
//! `sqlx` feature (the runtime's) they bind and decode as Postgres `uuid` directly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    )*};
}

ids! {
    /// A tenant (a customer business). Every tenant-owned row carries one.
    TenantId;
    /// An AI employee of a tenant.
    AgentId;
    /// A channel connection: a Slack installation, a WhatsApp number, an agent's web test chat.
    ConnectionId;
    /// A conversation on one channel connection.
    ConversationId;
    /// A person who talks to a tenant's agents through a channel (a Slack user, a WhatsApp
    /// number, a portal user in the test chat).
    EndUserId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_display_the_same_uuid() {
        let text = "6f1c1c1e-2d7a-4e6b-9a8e-3c2b1a0f9e8d";
        let id: TenantId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert!("not-a-uuid".parse::<AgentId>().is_err());
        let json = serde_json::to_string(&ConversationId::from_uuid(*id.as_uuid())).unwrap();
        assert_eq!(json, format!("\"{text}\""));
    }
}
