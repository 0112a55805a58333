//! The shapes of ids that several layers check: roles, records and clients (configuration, the access
//! model, service clients, login, migration). Pure functions over text, importing nothing.

/// Every service client id starts with this, and no user id may: the two namespaces never meet.
pub const CLIENT_ID_PREFIX: &str = "sc_";

/// Ids of roles, records and clients: `^[a-zA-Z0-9-._:@|~]+$`, at most 100 characters.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._:@|~".contains(&c))
}

/// Client ids go into access keys, which split on `.`, and into the token issuer URL; they carry the
/// client prefix, which no user id may start with.
pub fn is_valid_client_id(id: &str) -> bool {
    is_valid_id(id) && !id.contains('.') && id.len() <= 64 && id.starts_with(CLIENT_ID_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_carry_the_client_prefix() {
        assert!(is_valid_client_id("sc_backend"));
        for bad in ["backend", "SC_backend", "sc_a.b", "", &format!("sc_{}", "x".repeat(62))] {
            assert!(!is_valid_client_id(bad), "{bad}");
        }
    }
}
