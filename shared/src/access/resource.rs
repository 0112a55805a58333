//! Resource URIs and actions, and the one rule for whether a granted pattern covers a requested one.
//!
//! Resource URIs are `/`-separated segments (a leading or trailing `/` means nothing); a segment may be
//! namespaced with `:`; `*` stands for any one segment (or namespace part). A grant on a resource
//! covers the resource and everything below it: `Connections/con_a` covers
//! `Connections/con_a/Users/u1/Credentials`. Actions are `:`-separated and case-insensitive; a grant
//! of `connections` or `connections:*` covers `connections:credentials:read`, and `*` covers all.

/// Authress limits: 512 characters, 15 segments of 128.
const MAX_URI_LEN: usize = 512;
const MAX_SEGMENTS: usize = 15;
const MAX_SEGMENT_LEN: usize = 128;
const MAX_ACTION_LEN: usize = 64;

/// A validated resource URI, as segments (a pattern when it holds `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUri {
    segments: Vec<String>,
}

impl ResourceUri {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > MAX_URI_LEN {
            return None;
        }
        let trimmed = raw.trim_matches('/');
        if trimmed.is_empty() {
            return None;
        }
        let segments: Vec<String> = trimmed.split('/').map(String::from).collect();
        if segments.len() > MAX_SEGMENTS || !segments.iter().all(|s| is_valid_segment(s)) {
            return None;
        }
        Some(Self { segments })
    }

    /// Does a grant on `self` cover `target` (the same resource or one below it)?
    pub fn covers(&self, target: &ResourceUri) -> bool {
        self.segments.len() <= target.segments.len()
            && self
                .segments
                .iter()
                .zip(&target.segments)
                .all(|(granted, wanted)| segment_covers(granted, wanted))
    }

    pub fn as_string(&self) -> String {
        self.segments.join("/")
    }
}

fn is_valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT_LEN
        && segment.split(':').all(|part| {
            part == "*"
                || (!part.is_empty()
                    && part
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_.+=~|@".contains(&c)))
        })
}

/// `*` covers any segment; `ns:*` covers any segment in namespace `ns`; otherwise parts must be equal.
fn segment_covers(granted: &str, wanted: &str) -> bool {
    if granted == "*" {
        return true;
    }
    let granted: Vec<&str> = granted.split(':').collect();
    let wanted: Vec<&str> = wanted.split(':').collect();
    granted.len() == wanted.len() && granted.iter().zip(&wanted).all(|(g, w)| *g == "*" || g == w)
}

/// A validated action, lower-cased: `connections:credentials:read`, `records:*`, `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    parts: Vec<String>,
}

impl Action {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.is_empty() || raw.len() > MAX_ACTION_LEN {
            return None;
        }
        let lower = raw.to_ascii_lowercase();
        let parts: Vec<String> = lower.split(':').map(String::from).collect();
        let valid = parts.iter().all(|p| {
            p == "*" || (!p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)))
        });
        valid.then_some(Self { parts })
    }

    /// Does a grant of `self` cover `wanted`? A parent action covers its sub-actions.
    pub fn covers(&self, wanted: &Action) -> bool {
        let granted = match self.parts.last().map(String::as_str) {
            Some("*") => &self.parts[..self.parts.len() - 1],
            _ => &self.parts[..],
        };
        granted.len() <= wanted.parts.len() && granted.iter().zip(&wanted.parts).all(|(g, w)| g == "*" || g == w)
    }

    pub fn as_string(&self) -> String {
        self.parts.join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uri(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap_or_else(|| panic!("valid uri {s}"))
    }

    fn action(s: &str) -> Action {
        Action::parse(s).unwrap_or_else(|| panic!("valid action {s}"))
    }

    #[test]
    fn grants_cascade_to_children_and_wildcards_match_one_segment() {
        let target = uri("/Connections/con_a/Users/google|1/Credentials");
        for granted in [
            "Connections",
            "/Connections/con_a",
            "Connections/*",
            "Connections/*/Users/*/Credentials",
            "*",
            target.as_string().as_str(),
        ] {
            assert!(uri(granted).covers(&target), "{granted}");
        }
        for granted in [
            "Connections/con_b",
            "Clients",
            "Connections/con_a/Users/google|2",
            "connections/con_a",
        ] {
            assert!(!uri(granted).covers(&target), "{granted}");
        }
        assert!(
            !uri("Connections/con_a/Users").covers(&uri("Connections/con_a")),
            "a child does not cover its parent"
        );
        assert!(uri("org:*/docs").covers(&uri("org:acme/docs/1")));
        assert!(!uri("org:*/docs").covers(&uri("team:acme/docs/1")));
    }

    #[test]
    fn invalid_resource_uris_are_refused() {
        for bad in [
            "",
            "/",
            "a//b",
            "a/b c",
            "a/<script>",
            &"a/".repeat(16),
            &"x".repeat(129),
            "a:/b",
        ] {
            assert!(ResourceUri::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn actions_cover_their_sub_actions_case_insensitively() {
        let read = action("connections:credentials:read");
        for granted in [
            "*",
            "connections",
            "connections:*",
            "Connections:Credentials:*",
            "connections:credentials:read",
            "connections:*:read",
        ] {
            assert!(action(granted).covers(&read), "{granted}");
        }
        for granted in [
            "connections:credentials:delete",
            "clients:*",
            "connections:credentials:read:more",
        ] {
            assert!(!action(granted).covers(&read), "{granted}");
        }
        assert!(Action::parse("a b").is_none() && Action::parse("").is_none() && Action::parse("a::b").is_none());
    }

    #[test]
    fn resource_uris_are_refused_exactly_past_the_authress_limits() {
        // 512 characters in all: three segments of 128, one of 125, three slashes.
        let longest = ["x".repeat(128), "x".repeat(128), "x".repeat(128), "x".repeat(125)].join("/");
        assert_eq!(longest.len(), 512);
        assert!(ResourceUri::parse(&longest).is_some());
        assert!(ResourceUri::parse(&format!("{longest}y")).is_none(), "513 characters");
        assert!(
            ResourceUri::parse(&format!("/{longest}")).is_none(),
            "the slashes count too"
        );

        let fifteen = vec!["s"; 15].join("/");
        assert_eq!(uri(&fifteen).as_string(), fifteen);
        assert!(ResourceUri::parse(&format!("{fifteen}/s")).is_none(), "16 segments");
        assert!(ResourceUri::parse(&"y".repeat(128)).is_some());
        assert!(ResourceUri::parse(&"y".repeat(129)).is_none());
    }

    #[test]
    fn actions_are_refused_past_64_characters_and_kept_lower_cased() {
        assert_eq!(action(&"A".repeat(64)).as_string(), "a".repeat(64));
        assert!(Action::parse(&"a".repeat(65)).is_none());
        assert_eq!(
            action("Connections:Credentials:READ").as_string(),
            "connections:credentials:read"
        );
    }

    #[test]
    fn a_trailing_wildcard_covers_its_family_itself_but_nothing_shorter() {
        assert!(action("connections:*").covers(&action("connections")));
        assert!(action("connections:credentials:*").covers(&action("connections:credentials")));
        assert!(!action("connections:credentials:*").covers(&action("connections")));
        assert!(!action("connections:credentials").covers(&action("connections")));
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_|.-]{1,12}"
    }

    proptest! {
        #[test]
        fn a_uri_is_covered_by_itself_its_ancestors_and_the_root_wildcard(segs in proptest::collection::vec(segment(), 1..8)) {
            let target = uri(&segs.join("/"));
            prop_assert!(uri("*").covers(&target));
            for len in 1..=segs.len() {
                prop_assert!(uri(&segs[..len].join("/")).covers(&target));
                let mut wild = segs[..len].to_vec();
                wild[len - 1] = "*".into();
                prop_assert!(uri(&wild.join("/")).covers(&target));
            }
        }

        #[test]
        fn a_grant_never_covers_a_sibling_or_a_parent(segs in proptest::collection::vec(segment(), 2..8), other in segment()) {
            let target = uri(&segs.join("/"));
            let mut sibling = segs.clone();
            prop_assume!(other != segs[0]);
            sibling[0] = other;
            prop_assert!(!uri(&sibling.join("/")).covers(&target));
            prop_assert!(!target.covers(&uri(&segs[..segs.len() - 1].join("/"))));
        }

        #[test]
        fn action_wildcards_stay_in_their_family(family in "[a-z]{1,8}", other in "[a-z]{1,8}", rest in proptest::collection::vec("[a-z]{1,8}", 1..4)) {
            let wanted = action(&[family.clone(), rest.join(":")].join(":"));
            let family_wildcard = action(&[family.as_str(), "*"].join(":"));
            let other_wildcard = action(&[other.as_str(), "*"].join(":"));
            prop_assert!(family_wildcard.covers(&wanted));
            prop_assert!(action(&family).covers(&wanted));
            prop_assume!(other != family);
            prop_assert!(!other_wildcard.covers(&wanted));
        }
    }
}
