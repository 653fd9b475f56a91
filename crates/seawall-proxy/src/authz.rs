//! Inbound authorization: may this caller make this request of this service?
//!
//! The rules come from the service's `authorization:` section (compiled by
//! `seawall.proxy.spec`). Deny rules are checked first, then allow rules, then
//! the default; in strict mTLS an unauthenticated caller is denied outright
//! (rule `mtls`). Paths are matched after [`canonical_path`], so that
//! `/public/..%2Fadmin` cannot slip past a rule on `/admin/*`.
//!
//! Before any rule, `refuse` names callers whose connections are not served
//! at all ([`Authorizer::refuses`]): a connection-level deny, checked once the
//! handshake has told who the caller is, and again at each request of a
//! connection opened before the service refused its caller.
use std::collections::HashSet;

use crate::spec;

/// The verdict on a request, and the rule that gave it (`rules[2]`, `default`, `mtls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub rule: String,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    allow: bool,
    any_authenticated: bool,
    callers: Option<HashSet<String>>,
    methods: Option<Vec<String>>,
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl Rule {
    fn has_paths(&self) -> bool {
        !self.exact.is_empty() || !self.prefixes.is_empty()
    }

    fn matches(&self, caller: Option<&str>, method: &str, path: &str) -> bool {
        if self.any_authenticated {
            if caller.is_none() {
                return false;
            }
        } else if let Some(callers) = &self.callers {
            match caller {
                Some(c) if callers.contains(c) => {}
                _ => return false,
            }
        }
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| m == method) {
                return false;
            }
        }
        if !self.has_paths() {
            return true;
        }
        self.exact.contains(path) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// A service's compiled inbound rules.
#[derive(Debug, Clone)]
pub struct Authorizer {
    denies: Vec<Rule>,
    allows: Vec<Rule>,
    default_allow: bool,
    require_peer: bool,
    paths: bool,
    refused: HashSet<String>,
}

impl Authorizer {
    pub fn new(config: &spec::Authorization) -> Self {
        let rules: Vec<Rule> = config
            .rules
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                allow: r.allow,
                any_authenticated: r.any_authenticated,
                callers: r.callers.as_ref().map(|c| c.iter().cloned().collect()),
                methods: r.methods.clone(),
                exact: r.exact.iter().cloned().collect(),
                prefixes: r.prefixes.clone(),
            })
            .collect();
        let paths = rules.iter().any(Rule::has_paths);
        let (allows, denies) = rules.into_iter().partition(|r| r.allow);
        Authorizer {
            denies,
            allows,
            default_allow: config.default_allow,
            require_peer: config.require_peer,
            paths,
            refused: config.refuse.iter().cloned().collect(),
        }
    }

    /// Whether connections from `caller` (`None`: unauthenticated) are refused.
    pub fn refuses(&self, caller: Option<&str>) -> bool {
        caller.is_some_and(|c| self.refused.contains(c))
    }

    /// Allowed or denied, for a request from `caller` (`None`: unauthenticated).
    pub fn decide(&self, caller: Option<&str>, method: &str, target: &[u8]) -> Decision {
        if caller.is_none() && self.require_peer {
            return Decision {
                allowed: false,
                rule: "mtls".into(),
            };
        }
        let canonical = if self.paths {
            canonical_path(target)
        } else {
            String::new()
        };
        if let Some(rule) = self
            .denies
            .iter()
            .find(|r| r.matches(caller, method, &canonical))
        {
            return Decision {
                allowed: false,
                rule: rule.name.clone(),
            };
        }
        if let Some(rule) = self
            .allows
            .iter()
            .find(|r| r.matches(caller, method, &canonical))
        {
            return Decision {
                allowed: true,
                rule: rule.name.clone(),
            };
        }
        Decision {
            allowed: self.default_allow,
            rule: "default".into(),
        }
    }
}

/// The path rules are matched against: no query or fragment, `%2F` and `%5C`
/// as `/`, no empty segments, `.` and `..` resolved.
pub fn canonical_path(target: &[u8]) -> String {
    let end = target
        .iter()
        .position(|b| *b == b'?' || *b == b'#')
        .unwrap_or(target.len());
    let mut path: Vec<u8> = Vec::with_capacity(end);
    let raw = &target[..end];
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let code = [
                raw[i + 1].to_ascii_uppercase(),
                raw[i + 2].to_ascii_uppercase(),
            ];
            if code == *b"2F" || code == *b"5C" {
                path.push(b'/');
                i += 3;
                continue;
            }
        }
        path.push(raw[i]);
        i += 1;
    }
    let needs = path.windows(2).any(|w| w == b"//" || w == b"/.");
    if needs {
        let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        let mut segments: Vec<&[u8]> = Vec::new();
        for segment in parts.iter().skip(1) {
            match *segment {
                b".." => {
                    segments.pop();
                }
                b"." | b"" => {}
                s => segments.push(s),
            }
        }
        let last = parts.last().copied().unwrap_or(b"");
        let trailing = matches!(last, b"" | b"." | b"..") && parts.len() > 2;
        let mut out = Vec::with_capacity(path.len());
        out.push(b'/');
        out.extend_from_slice(&segments.join(&b'/'));
        if trailing && !segments.is_empty() {
            out.push(b'/');
        }
        path = out;
    }
    String::from_utf8_lossy(&path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, allow: bool, callers: Option<&[&str]>, paths: &[&str]) -> spec::AuthzRule {
        spec::AuthzRule {
            name: name.into(),
            allow,
            any_authenticated: false,
            callers: callers.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            methods: None,
            exact: paths
                .iter()
                .filter(|p| !p.ends_with('*'))
                .map(|p| (*p).to_owned())
                .collect(),
            prefixes: paths
                .iter()
                .filter_map(|p| p.strip_suffix('*'))
                .map(str::to_owned)
                .collect(),
        }
    }

    #[test]
    fn canonical_paths_match_python() {
        assert_eq!(canonical_path(b"/public%2F..%2Fadmin//x?y=1"), "/admin/x");
        assert_eq!(canonical_path(b"/a/b/"), "/a/b/");
        assert_eq!(canonical_path(b"/a//b/"), "/a/b/");
        assert_eq!(canonical_path(b"/a/./b/.."), "/a/");
        assert_eq!(canonical_path(b"/.."), "/");
        assert_eq!(canonical_path(b"/x%5cy"), "/x/y");
        assert_eq!(canonical_path(b"/x%2"), "/x%2");
        assert_eq!(canonical_path(b"/x#frag"), "/x");
    }

    #[test]
    fn deny_first_then_allow_then_default() {
        let config = spec::Authorization {
            default_allow: false,
            require_peer: false,
            rules: vec![
                rule("rules[0]", true, Some(&["gateway"]), &["/orders/*"]),
                rule("rules[1]", false, None, &["/orders/admin"]),
            ],
            refuse: vec![],
        };
        let a = Authorizer::new(&config);
        assert!(a.decide(Some("gateway"), "GET", b"/orders/1").allowed);
        let d = a.decide(Some("gateway"), "GET", b"/orders/x/..%2Fadmin");
        assert_eq!(
            d,
            Decision {
                allowed: false,
                rule: "rules[1]".into()
            }
        );
        assert_eq!(a.decide(Some("email"), "GET", b"/orders/1").rule, "default");
        assert!(!a.decide(None, "GET", b"/orders/1").allowed);
    }

    #[test]
    fn strict_requires_a_peer() {
        let config = spec::Authorization {
            default_allow: true,
            require_peer: true,
            rules: vec![],
            refuse: vec![],
        };
        let a = Authorizer::new(&config);
        assert_eq!(a.decide(None, "GET", b"/").rule, "mtls");
        assert!(a.decide(Some("x"), "GET", b"/").allowed);
    }

    #[test]
    fn refused_callers_are_named_ones_only() {
        let config = spec::Authorization {
            default_allow: true,
            require_peer: false,
            rules: vec![],
            refuse: vec!["orders".into()],
        };
        let a = Authorizer::new(&config);
        assert!(a.refuses(Some("orders")));
        assert!(!a.refuses(Some("email")));
        assert!(
            !a.refuses(None),
            "an unauthenticated caller names no service"
        );
        // the refusal is of connections: a request rule still allows the caller's requests
        assert!(a.decide(Some("orders"), "GET", b"/").allowed);
    }
}
