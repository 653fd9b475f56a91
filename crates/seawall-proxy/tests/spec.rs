//! The spec the Python half writes is read without loss or mismatch.
use seawall_proxy::spec::{Spec, SPEC_VERSION};

const SHOP_GATEWAY: &str = include_str!("data/spec-gateway.json");

#[test]
fn reads_the_shop_gateway_spec() {
    let spec = Spec::from_json(SHOP_GATEWAY).expect("the spec parses");
    assert_eq!(spec.version, SPEC_VERSION);
    assert_eq!(spec.service, "gateway");
    assert!(spec.destinations.iter().any(|d| d.name == "orders"));
    assert!(spec.inbound.inbound);
}

#[test]
fn refuses_unknown_fields_and_other_versions() {
    let mut doc: serde_json::Value = serde_json::from_str(SHOP_GATEWAY).expect("json");
    doc["surprise"] = serde_json::json!(1);
    let err = Spec::from_json(&doc.to_string()).expect_err("unknown field");
    assert!(err.to_string().contains("surprise"), "{err}");
    let mut doc: serde_json::Value = serde_json::from_str(SHOP_GATEWAY).expect("json");
    doc["version"] = serde_json::json!(99);
    let err = Spec::from_json(&doc.to_string()).expect_err("version");
    assert!(err.to_string().contains("version 99"), "{err}");
}
