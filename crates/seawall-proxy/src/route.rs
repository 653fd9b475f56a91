//! Route matching and the per-request traffic decisions: fault, split, mirror.
//!
//! A destination's routes are compiled once into a [`RouteTable`]; the first
//! route that matches, in config order, wins (Envoy's rules, as the Python
//! sidecar's `seawall.proxy.routing`):
//!
//! - **Path**: `path_prefix` on the raw target (`/api` also matches `/apix`),
//!   `path_exact` and `path_regex` on the path without its query; not
//!   normalised, case-sensitive. A regex must match the whole path.
//! - **Methods**: one of them (empty: any).
//! - **Headers**: each condition holds (present / absent / exact / full regex
//!   match); a header sent several times is matched on its values joined with `,`.
use std::sync::Arc;

use http::HeaderMap;
use regex::bytes::Regex;
use seawall_policy::rng::Random;

use crate::spec;

/// A route's configuration could not be compiled (a regex the core cannot run).
#[derive(Debug)]
pub struct RouteError(pub String);

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RouteError {}

/// Whether the core can run `pattern` as a route regex, with the same meaning as
/// Python's `re` (the config validator asks this, so a pattern the core would
/// refuse is refused in mesh.yaml, with its path).
pub fn check_regex(pattern: &str) -> Result<(), String> {
    full_match("regex", pattern).map(|_| ()).map_err(|e| {
        let text = e.0;
        text.strip_prefix("regex: ")
            .map_or(text.clone(), str::to_owned)
    })
}

fn full_match(owner: &str, pattern: &str) -> Result<Regex, RouteError> {
    python_dialect(pattern)
        .map_err(|e| RouteError(format!("{owner}: cannot compile regex {pattern:?}: {e}")))?;
    regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .unicode(false)
        .build()
        .map_err(|e| {
            let one_line = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            RouteError(format!(
                "{owner}: cannot compile regex {pattern:?}: {one_line}"
            ))
        })
}

/// Refuse syntax Python's `re` reads differently (so it fails loudly, never mismatches).
fn python_dialect(pattern: &str) -> Result<(), String> {
    use regex_syntax::ast::{
        self, AssertionKind as K, Ast, ClassSetBinaryOp, ClassSetItem, Visitor,
    };
    // One line (the error's own Display draws the pattern and a caret over several).
    let parsed = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| format!("{} (at offset {})", e.kind(), e.span().start.offset))?;
    struct V;
    impl Visitor for V {
        type Output = ();
        type Err = String;
        fn finish(self) -> Result<(), String> {
            Ok(())
        }
        fn visit_pre(&mut self, a: &Ast) -> Result<(), String> {
            match a {
                Ast::Repetition(r) if matches!(*r.ast, Ast::Repetition(_)) => {
                    Err("a quantifier on a quantifier (Python: possessive)".into())
                }
                Ast::Assertion(x)
                    if matches!(
                        x.kind,
                        K::WordBoundaryStart
                            | K::WordBoundaryEnd
                            | K::WordBoundaryStartAngle
                            | K::WordBoundaryEndAngle
                            | K::WordBoundaryStartHalf
                            | K::WordBoundaryEndHalf
                    ) =>
                {
                    Err("\\< \\> \\b{...} (Python: literal)".into())
                }
                Ast::Flags(f) if f.flags.flag_state(ast::Flag::IgnoreWhitespace) == Some(true) => {
                    Err("(?x)".into())
                }
                Ast::Group(g) if matches!(&g.kind, ast::GroupKind::NonCapturing(f) if f.flag_state(ast::Flag::IgnoreWhitespace) == Some(true)) => {
                    Err("(?x)".into())
                }
                _ => Ok(()),
            }
        }
        fn visit_class_set_item_pre(&mut self, i: &ClassSetItem) -> Result<(), String> {
            match i {
                ClassSetItem::Bracketed(_) | ClassSetItem::Ascii(_) => {
                    Err("a nested class (Python: literal [)".into())
                }
                _ => Ok(()),
            }
        }
        fn visit_class_set_binary_op_pre(&mut self, _: &ClassSetBinaryOp) -> Result<(), String> {
            Err("a class set operation (Python: literal)".into())
        }
    }
    ast::visit(&parsed, V)
}

#[derive(Debug)]
enum PathMatch {
    Any,
    Prefix(Vec<u8>),
    Exact(Vec<u8>),
    Regex(Regex),
}

#[derive(Debug)]
enum HeaderCondition {
    Present(bool),
    Exact(Vec<u8>),
    Regex(Regex),
}

/// One compiled route, with what it carries (`T`: the route's policy).
#[derive(Debug)]
pub struct Route<T> {
    path: PathMatch,
    methods: Vec<http::Method>,
    headers: Vec<(http::HeaderName, HeaderCondition)>,
    pub data: T,
}

impl<T> Route<T> {
    /// Compile a route's match section.
    pub fn new(name: &str, m: &spec::Match, data: T) -> Result<Self, RouteError> {
        let path = if let Some(p) = &m.path_prefix {
            PathMatch::Prefix(p.as_bytes().to_vec())
        } else if let Some(p) = &m.path_exact {
            PathMatch::Exact(p.as_bytes().to_vec())
        } else if let Some(p) = &m.path_regex {
            PathMatch::Regex(full_match(&format!("route {name}: path_regex"), p)?)
        } else {
            PathMatch::Any
        };
        let methods = m
            .methods
            .iter()
            .map(|s| {
                http::Method::from_bytes(s.to_ascii_uppercase().as_bytes())
                    .map_err(|_| RouteError(format!("route {name}: bad method {s:?}")))
            })
            .collect::<Result<_, _>>()?;
        let mut headers = Vec::with_capacity(m.headers.len());
        for h in &m.headers {
            let header = http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| RouteError(format!("route {name}: bad header name {:?}", h.name)))?;
            let cond = if let Some(present) = h.present {
                HeaderCondition::Present(present)
            } else if let Some(exact) = &h.exact {
                HeaderCondition::Exact(exact.as_bytes().to_vec())
            } else if let Some(re) = &h.regex {
                HeaderCondition::Regex(full_match(&format!("route {name}: header {}", h.name), re)?)
            } else {
                HeaderCondition::Present(true)
            };
            headers.push((header, cond));
        }
        Ok(Route {
            path,
            methods,
            headers,
            data,
        })
    }

    /// A route that matches every request.
    pub fn any(data: T) -> Self {
        Route {
            path: PathMatch::Any,
            methods: Vec::new(),
            headers: Vec::new(),
            data,
        }
    }

    fn matches(&self, method: &http::Method, path: &[u8], headers: &HeaderMap) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        let bare = || &path[..path.iter().position(|b| *b == b'?').unwrap_or(path.len())];
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p),
            PathMatch::Exact(p) => bare() == p.as_slice(),
            PathMatch::Regex(re) => re.is_match(bare()),
        };
        path_ok
            && self
                .headers
                .iter()
                .all(|(name, cond)| header_holds(headers, name, cond))
    }
}

fn header_holds(headers: &HeaderMap, name: &http::HeaderName, cond: &HeaderCondition) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return matches!(cond, HeaderCondition::Present(false));
    };
    let joined: std::borrow::Cow<'_, [u8]> = match values.next() {
        None => first.as_bytes().into(),
        Some(second) => {
            let mut all = first.as_bytes().to_vec();
            for v in std::iter::once(second).chain(values) {
                all.push(b',');
                all.extend_from_slice(v.as_bytes());
            }
            all.into()
        }
    };
    match cond {
        HeaderCondition::Present(p) => *p,
        HeaderCondition::Exact(e) => joined.as_ref() == e.as_slice(),
        HeaderCondition::Regex(re) => re.is_match(&joined),
    }
}

/// A destination's routes, in match order.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<Arc<Route<T>>>,
    default: Arc<Route<T>>,
}

impl<T> RouteTable<T> {
    pub fn new(routes: Vec<Route<T>>, default: Route<T>) -> Self {
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
            default: Arc::new(default),
        }
    }

    /// The first route matching the request, else the destination's default.
    pub fn select(
        &self,
        method: &http::Method,
        path: &[u8],
        headers: &HeaderMap,
    ) -> &Arc<Route<T>> {
        self.routes
            .iter()
            .find(|r| r.matches(method, path, headers))
            .unwrap_or(&self.default)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route<T>>> {
        self.routes.iter().chain(std::iter::once(&self.default))
    }
}

/// Request header asking for an injected delay, in whole milliseconds.
pub const FAULT_DELAY_HEADER: &str = "x-seawall-fault-delay-ms";
/// Request header asking for an injected abort with the given status.
pub const FAULT_ABORT_HEADER: &str = "x-seawall-fault-abort";
/// The longest delay a request header may ask for (seconds).
pub const MAX_HEADER_DELAY: f64 = 60.0;

/// The faults to inject into one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultDecision {
    /// Seconds to wait before forwarding (0.0 for none).
    pub delay: f64,
    /// The status to answer instead of forwarding.
    pub abort: Option<u16>,
}

/// True `percent` (0..100) of the time; 0 and 100 draw nothing.
pub fn chance(rng: &mut dyn Random, percent: f64) -> bool {
    if percent <= 0.0 {
        return false;
    }
    if percent >= 100.0 {
        return true;
    }
    rng.next_f64() * 100.0 < percent
}

fn parse_delay_ms(value: Option<&http::HeaderValue>) -> Option<u64> {
    let v = value?.as_bytes();
    if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn parse_status(value: Option<&http::HeaderValue>) -> Option<u16> {
    let v = value?.as_bytes();
    if v.len() != 3 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status: u16 = std::str::from_utf8(v).ok()?.parse().ok()?;
    (200..=599).contains(&status).then_some(status)
}

/// The header's value when sent once (Python joined repeats with `,`: never valid).
fn only<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a http::HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// The faults to inject, from the route's spec and (when it allows) the
/// request's fault headers, which override the configured fault of their kind.
pub fn decide_fault(
    spec: &spec::Fault,
    headers: &HeaderMap,
    rng: &mut dyn Random,
) -> Option<FaultDecision> {
    let (mut header_delay, mut header_abort) = (None, None);
    if spec.header_faults {
        header_delay = parse_delay_ms(only(headers, FAULT_DELAY_HEADER));
        header_abort = parse_status(only(headers, FAULT_ABORT_HEADER));
    }
    let mut delay = 0.0;
    if let Some(ms) = header_delay {
        delay = (ms as f64 / 1000.0).min(MAX_HEADER_DELAY);
    } else if spec.delay > 0.0 && chance(rng, spec.delay_percent) {
        delay = spec.delay;
    }
    let abort = match header_abort {
        Some(s) => Some(s),
        None => chance(rng, spec.abort_percent).then_some(spec.abort_status),
    };
    (delay > 0.0 || abort.is_some()).then_some(FaultDecision { delay, abort })
}

/// The Host of a mirrored copy: `-shadow` appended to the host name, before any port.
pub fn shadow_host(host: &[u8]) -> Vec<u8> {
    let close = host.iter().rposition(|b| *b == b']');
    let colon = host.iter().rposition(|b| *b == b':');
    let colons = host.iter().filter(|b| **b == b':').count();
    if let Some(c) = colon {
        let after_bracket = close.is_none_or(|b| c > b);
        if after_bracket && (close.is_some() || colons == 1) {
            let mut out = host[..c].to_vec();
            out.extend_from_slice(b"-shadow");
            out.extend_from_slice(&host[c..]);
            return out;
        }
    }
    let mut out = host.to_vec();
    out.extend_from_slice(b"-shadow");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_policy::rng::Sequence;

    fn m(
        prefix: Option<&str>,
        exact: Option<&str>,
        regex: Option<&str>,
        methods: &[&str],
    ) -> spec::Match {
        spec::Match {
            path_prefix: prefix.map(Into::into),
            path_exact: exact.map(Into::into),
            path_regex: regex.map(Into::into),
            methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            headers: vec![],
        }
    }

    #[test]
    fn first_match_wins_and_default_catches_the_rest() {
        let routes = vec![
            Route::new("a", &m(Some("/api"), None, None, &["POST"]), "a").expect("a"),
            Route::new("b", &m(None, Some("/x"), None, &[]), "b").expect("b"),
            Route::new("c", &m(None, None, Some("/u/[0-9]+"), &[]), "c").expect("c"),
        ];
        let t = RouteTable::new(routes, Route::any("default"));
        let h = HeaderMap::new();
        let sel = |meth: &str, p: &str| {
            t.select(
                &http::Method::from_bytes(meth.as_bytes()).expect("m"),
                p.as_bytes(),
                &h,
            )
            .data
        };
        assert_eq!(sel("POST", "/apix"), "a");
        assert_eq!(sel("GET", "/api"), "default");
        assert_eq!(sel("GET", "/x?q=1"), "b");
        assert_eq!(sel("GET", "/x/"), "default");
        assert_eq!(sel("GET", "/u/12?z"), "c");
        assert_eq!(sel("GET", "/u/12a"), "default");
    }

    #[test]
    fn header_conditions() {
        let mut spec_match = m(None, None, None, &[]);
        spec_match.headers = vec![
            spec::HeaderMatch {
                name: "x-canary".into(),
                exact: Some("1,2".into()),
                regex: None,
                present: None,
            },
            spec::HeaderMatch {
                name: "x-no".into(),
                exact: None,
                regex: None,
                present: Some(false),
            },
        ];
        let t = RouteTable::new(
            vec![Route::new("h", &spec_match, "h").expect("h")],
            Route::any("d"),
        );
        let mut h = HeaderMap::new();
        h.append("x-canary", http::HeaderValue::from_static("1"));
        h.append("x-canary", http::HeaderValue::from_static("2"));
        assert_eq!(t.select(&http::Method::GET, b"/", &h).data, "h");
        h.append("x-no", http::HeaderValue::from_static(""));
        assert_eq!(t.select(&http::Method::GET, b"/", &h).data, "d");
    }

    #[test]
    fn faults_from_headers_and_chance() {
        let f = spec::Fault {
            delay: 0.3,
            delay_percent: 50.0,
            abort_status: 503,
            abort_percent: 0.0,
            header_faults: true,
        };
        let mut rng = Sequence::new(vec![0.1]);
        let h = HeaderMap::new();
        assert_eq!(
            decide_fault(&f, &h, &mut rng),
            Some(FaultDecision {
                delay: 0.3,
                abort: None
            })
        );
        let mut h = HeaderMap::new();
        h.insert(FAULT_ABORT_HEADER, http::HeaderValue::from_static("418"));
        h.insert(FAULT_DELAY_HEADER, http::HeaderValue::from_static("+5"));
        let mut rng = Sequence::new(vec![0.9]);
        assert_eq!(
            decide_fault(&f, &h, &mut rng),
            Some(FaultDecision {
                delay: 0.0,
                abort: Some(418)
            })
        );
    }

    #[test]
    fn shadow_hosts() {
        assert_eq!(shadow_host(b"orders"), b"orders-shadow");
        assert_eq!(shadow_host(b"orders:8002"), b"orders-shadow:8002");
        assert_eq!(shadow_host(b"[::1]:80"), b"[::1]-shadow:80");
        assert_eq!(shadow_host(b"::1"), b"::1-shadow");
    }
}
