//! Who owns what: a tenant's id, checked once where it comes in (a token's claim, the
//! subtenant header, an admin's request), and the role a caller holds there.

use super::error::ParseError;
use super::status::text_enum;

/// A tenant's id: 1 to 128 letters, digits, `-`, `_`, `.` or `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<TenantId, ParseError> {
        let ok = !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !ok {
            return Err(ParseError::new(
                "tenant",
                format!("{s:?} is not a tenant id (1 to 128 letters, digits, `-`, `_`, `.` or `@`)"),
            ));
        }
        Ok(TenantId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant id reads as the text it is (queries bind it as such).
impl std::ops::Deref for TenantId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

text_enum!(
    /// What a caller may do in the tenant a request acts in.
    Role {
        /// A server admin: everything, in any subtenant.
        Admin = "admin",
        /// The token's own tenant.
        Owner = "owner",
        /// Granted: reads and writes.
        Member = "member",
        /// Granted: reads only.
        Viewer = "viewer",
    }
);

impl Role {
    /// The roles a grant may give.
    pub const GRANTABLE: [Role; 2] = [Role::Member, Role::Viewer];

    /// Whether this role may change things (not only read them).
    pub fn writes(self) -> bool {
        self != Role::Viewer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert_eq!(TenantId::parse("acme-1.eu@x").unwrap().as_str(), "acme-1.eu@x");
        for bad in ["", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles() {
        assert_eq!("viewer".parse::<Role>(), Ok(Role::Viewer));
        assert!("root".parse::<Role>().is_err());
        assert!(!Role::Viewer.writes() && Role::Member.writes());
    }
}
