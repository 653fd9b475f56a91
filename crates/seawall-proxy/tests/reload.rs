//! A new spec keeps each destination's state where the change allows
//! (`Runtime::next`, `Cluster::apply`), and an invalid one changes nothing.
use std::sync::Arc;

use seawall_proxy::clock::Clock;
use seawall_proxy::cluster::Cluster;
use seawall_proxy::events::{Events, Format};
use seawall_proxy::metrics::Metrics;
use seawall_proxy::runtime::Runtime;
use seawall_proxy::spec::Spec;
use serde_json::{json, Value};

const SHOP_GATEWAY: &str = include_str!("data/spec-gateway.json");

fn doc() -> Value {
    serde_json::from_str(SHOP_GATEWAY).expect("json")
}

fn spec(doc: &Value) -> Spec {
    Spec::from_json(&doc.to_string()).expect("a valid spec")
}

fn first() -> Runtime {
    let clock = Clock::new();
    let events = Arc::new(Events::silent("gateway", Format::Text, clock));
    Runtime::build(spec(&doc()), Arc::new(Metrics::new()), events, clock).expect("builds")
}

/// The next runtime after `prev`, for `doc`, and what was reset as text.
fn next(prev: &Runtime, doc: &Value) -> Result<(Runtime, Vec<String>), String> {
    let (rt, resets) = Runtime::next(
        spec(doc),
        prev.metrics.clone(),
        prev.events.clone(),
        prev.clock,
        Some(prev),
    )
    .map_err(|e| e.0)?;
    let said = resets
        .iter()
        .map(|r| format!("{}: {}: {}", r.cluster, r.what, r.reason))
        .collect();
    Ok((rt, said))
}

fn orders(rt: &Runtime) -> &Arc<Cluster> {
    &rt.destinations["orders"].cluster
}

/// Open orders' breaker (a 10 s time window, 20 calls at least, 90% failures).
fn trip(rt: &Runtime) {
    let c = orders(rt);
    for _ in 0..20 {
        let permit = c.admit(1.0).expect("closed");
        c.record_breaker(permit, 1.0, 0.01, true);
    }
    assert!(c.admit(1.0).is_err(), "open");
    assert_eq!(breaker_state(rt), "open");
}

fn breaker_state(rt: &Runtime) -> String {
    orders(rt).snapshot()["breaker"]["state"]
        .as_str()
        .expect("a breaker")
        .to_owned()
}

#[test]
fn an_unrelated_change_keeps_every_cluster_and_resets_nothing() {
    let rt = first();
    trip(&rt);
    let mut d = doc();
    d["destinations"][3]["timeout"] = json!(9.5); // email's timeout: a route setting
    let (after, resets) = next(&rt, &d).expect("builds");
    assert!(resets.is_empty(), "{resets:?}");
    for name in rt.destinations.keys() {
        assert!(Arc::ptr_eq(
            &rt.destinations[name].cluster,
            &after.destinations[name].cluster
        ));
    }
    assert!(Arc::ptr_eq(&rt.inbound.cluster, &after.inbound.cluster));
    assert_eq!(breaker_state(&after), "open");
    let default = after.destinations["email"]
        .routes
        .routes()
        .last()
        .expect("a default");
    assert_eq!(default.data.timeout, 9.5);
}

#[test]
fn new_thresholds_keep_an_open_breaker_open_and_a_new_window_is_said() {
    let rt = first();
    trip(&rt);
    let mut d = doc();
    d["destinations"][1]["breaker"]["failure_rate"] = json!(95.0);
    d["destinations"][1]["breaker"]["open_for"] = json!(30.0);
    let (after, resets) = next(&rt, &d).expect("builds");
    assert!(resets.is_empty(), "{resets:?}");
    assert!(orders(&after).admit(2.0).is_err(), "still open");
    d["destinations"][1]["breaker"]["window_size"] = json!(20.0);
    let (last, resets) = next(&after, &d).expect("builds");
    assert_eq!(
        resets,
        [
            "orders: breaker window: the window changed from the last 10s to the last 20s; \
          the breaker stays open"
        ]
    );
    assert_eq!(breaker_state(&last), "open");
}

#[test]
fn what_cannot_be_kept_is_reset_and_said() {
    let rt = first();
    trip(&rt);
    let mut d = doc();
    d["destinations"][1]["breaker"] = Value::Null;
    d["destinations"][1]["budget"]["ttl"] = json!(5.0);
    d["destinations"][1]["load_balancer"] = json!("round_robin");
    let removed = d["destinations"].as_array_mut().expect("a list").remove(3);
    assert_eq!(removed["name"], "email");
    let (after, resets) = next(&rt, &d).expect("builds");
    assert_eq!(
        resets,
        [
            "orders: balancer estimates: load_balancer changed from peak_ewma to round_robin",
            "orders: circuit breaker: circuit_breaker turned off (it was open)",
            "orders: retry budget: its ttl changed from 10s to 5s: the budget starts empty",
            "email: everything: no longer a destination of this service",
        ]
    );
    assert!(orders(&after).admit(2.0).expect("no breaker").is_none());
    // orders' endpoints stop being sidecars: a new cluster
    d["destinations"][1]["mesh"] = json!(false);
    let (last, resets) = next(&after, &d).expect("builds");
    assert_eq!(
        resets,
        ["orders: everything: its endpoints are no longer mesh sidecars"]
    );
    assert!(!Arc::ptr_eq(orders(&after), orders(&last)));
}

#[test]
fn a_spec_that_cannot_be_built_changes_nothing() {
    let rt = first();
    trip(&rt);
    let mut d = doc();
    // orders' breaker would go, but another destination's breaker cannot be
    // built, nor a route of a third
    d["destinations"][1]["breaker"] = Value::Null;
    d["destinations"][2]["breaker"]["failure_rate"] = json!(150.0);
    let err = next(&rt, &d).expect_err("refused");
    assert!(err.starts_with("payments: circuit_breaker: "), "{err}");
    d["destinations"][2]["breaker"]["failure_rate"] = json!(50.0);
    d["destinations"][3]["routes"] = json!([{
        "name": "bad",
        "match": {"path_prefix": null, "path_exact": null, "path_regex": "(unclosed",
                  "methods": [], "headers": []},
        "timeout": 1.0,
        "retry": d["destinations"][3]["retry"].clone(),
        "split": null, "mirror": null, "fault": null,
    }]);
    let err = next(&rt, &d).expect_err("refused");
    assert!(err.contains("bad"), "{err}");
    assert_eq!(breaker_state(&rt), "open");
    assert!(orders(&rt).admit(2.0).is_err());
}

#[test]
fn a_rate_limit_keeps_its_tokens_and_an_unreadable_ca_file_changes_nothing() {
    let mut d = doc();
    d["destinations"][1]["rate_limit"] = json!({"rate": 0.001, "burst": 2.0});
    let rt = next(&first(), &d).expect("builds").0;
    let c = orders(&rt);
    assert!(c.rate_limit(None, 1.0).is_ok());
    // a new burst: the one token left carries over, not a full bucket
    d["destinations"][1]["rate_limit"] = json!({"rate": 0.001, "burst": 5.0});
    let (after, resets) = next(&rt, &d).expect("builds");
    assert!(resets.is_empty(), "{resets:?}");
    assert!(Arc::ptr_eq(orders(&after), c));
    assert!(orders(&after).rate_limit(None, 1.0).is_ok());
    assert!(orders(&after).rate_limit(None, 1.0).is_err());
    // orders becomes a host reached over TLS the sidecar originates, with a CA file it cannot read
    d["destinations"][1]["mesh"] = json!(false);
    let (plain, _) = next(&after, &d).expect("builds");
    let dir = std::env::temp_dir().join(format!("seawall-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let missing = dir.join("missing.pem");
    d["destinations"][1]["tls"] = json!({"server_name": "orders.example", "ca_file": missing});
    let err = next(&plain, &d).expect_err("an unreadable CA file is refused");
    assert!(err.contains("cannot read the CA bundle"), "{err}");
    assert!(err.starts_with("orders: tls: "), "{err}");
}

#[test]
fn an_endpoint_push_never_empties_an_external_service() {
    let mut d = doc();
    d["destinations"][1]["mesh"] = json!(false);
    d["destinations"][1]["external"] = json!(true);
    let rt = next(&first(), &d).expect("builds").0;
    let before = orders(&rt).snapshot()["endpoints"].clone();
    assert!(before.as_array().is_some_and(|e| !e.is_empty()), "{before}");
    // a push that names none of them (the control plane knows only services)
    rt.set_endpoints(&std::collections::HashMap::new());
    assert_eq!(orders(&rt).snapshot()["endpoints"], before);
    assert!(rt.destinations["payments"].cluster.snapshot()["endpoints"]
        .as_array()
        .is_some_and(Vec::is_empty));
}
