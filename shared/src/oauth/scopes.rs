//! OAuth scopes (RFC 6749 §3.3): what a caller may require of a stored grant (`requiredScopes` of a
//! fetch, `scope` of a token exchange), what the grant lacks, and what a re-consent should ask for.

use std::collections::BTreeSet;

/// The longest list of scopes a caller may require.
pub const MAX_SCOPE_LIST_LEN: usize = 1024;

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|c| c == 0x21 || (0x23..=0x5B).contains(&c) || (0x5D..=0x7E).contains(&c))
}

/// A space-separated list of scope tokens, as a caller names them; `None` for anything else.
pub fn parse_list(list: &str) -> Option<Vec<String>> {
    if list.len() > MAX_SCOPE_LIST_LEN || !list.split(' ').all(is_scope_token) {
        return None;
    }
    Some(list.split(' ').map(String::from).collect())
}

/// The granted scopes of a stored grant: space-separated (RFC 6749), or comma-separated as GitHub
/// and Slack spell them.
fn granted_set(granted: Option<&str>) -> BTreeSet<&str> {
    granted
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .collect()
}

/// The required scopes the stored grant lacks, in the order they were required.
pub fn missing(required: &[String], granted: Option<&str>) -> Vec<String> {
    let granted = granted_set(granted);
    required
        .iter()
        .filter(|s| !granted.contains(s.as_str()))
        .cloned()
        .collect()
}

/// What a re-consent should ask for: the granted scopes and the required ones, space-separated.
/// The granted ones first, in the provider's order.
pub fn union(granted: Option<&str>, required: &[String]) -> String {
    let mut all: Vec<&str> = Vec::new();
    let granted = granted.unwrap_or_default().split([' ', ',']).filter(|s| !s.is_empty());
    for scope in granted.chain(required.iter().map(String::as_str)) {
        if !all.contains(&scope) {
            all.push(scope);
        }
    }
    all.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        parse_list(s).unwrap()
    }

    #[test]
    fn lists_are_scope_tokens_separated_by_single_spaces() {
        assert_eq!(
            list("openid https://x.example/drive"),
            ["openid", "https://x.example/drive"]
        );
        for bad in ["", "a  b", " a", "a\"b", "a\\b", "é"] {
            assert!(parse_list(bad).is_none(), "{bad:?}");
        }
        assert!(parse_list(&"a".repeat(MAX_SCOPE_LIST_LEN + 1)).is_none());
    }

    #[test]
    fn missing_and_union_read_space_or_comma_separated_grants() {
        let required = list("repo read:user");
        assert_eq!(missing(&required, Some("read:user,gist")), ["repo"]);
        assert_eq!(missing(&required, Some("repo read:user")), Vec::<String>::new());
        assert_eq!(missing(&required, None), ["repo", "read:user"]);
        assert_eq!(union(Some("read:user,gist"), &required), "read:user gist repo");
        assert_eq!(union(None, &required), "repo read:user");
    }
}
