//! Decoding throughput, in spans per second, for 10,000 typical spans: 12
//! attributes each (strings, ints, a double, a bool), 0 to 2 events, 100
//! spans per resource of 6 attributes; as protobuf and as JSON. Also the
//! encoder, for the sidecar's side.
//!
//! `cargo run --release -p seawall-otlp --example bench_decode [protobuf|json|model|encode]`
//! (one of them only: for `perf record`)
//!
//! On the shared 2-core build VM (rustc 1.95, release with fat LTO, best of
//! 20 runs, others building at the same time; 5.0 MB of protobuf, 11.4 MB of
//! JSON): `decode::protobuf` 515,000-540,000 spans/s, `decode::json`
//! 214,000-224,000, `decode::protobuf_model` 370,000-415,000,
//! `encode::export_request` 2.1-2.7 million. Through the Python binding
//! (`otlp_decode`, the GIL released while decoding, then the row tuples):
//! protobuf 225,000 spans/s, JSON 97,000.
use std::time::Instant;

use seawall_otlp::decode;
use seawall_otlp::encode;
use seawall_otlp::model::*;
use serde_json::{json, Value};

fn typical(n: usize) -> Vec<ResourceSpans> {
    let mut out = Vec::new();
    for r in 0..n / 100 {
        let mut spans = Vec::new();
        for s in 0..100u64 {
            let i = (r * 100) as u64 + s;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(i / 4 + 1).to_be_bytes());
            let mut span = Span::new(trace_id, (i + 1).to_be_bytes(), "GET /api/orders/{id}");
            span.parent_span_id = (i % 4 != 0).then(|| i.to_be_bytes());
            span.kind = if i % 2 == 0 {
                SpanKind::Server
            } else {
                SpanKind::Client
            };
            span.flags = 0x101;
            span.start_unix_nano = 1_700_000_000_000_000_000 + i * 1_000_000;
            span.end_unix_nano = span.start_unix_nano + 2_500_000 + i;
            span.attributes = vec![
                KeyValue::str("http.request.method", "GET"),
                KeyValue::str("url.path", format!("/api/orders/{i}")),
                KeyValue::str("url.scheme", "http"),
                KeyValue::str("server.address", "orders.default.svc"),
                KeyValue::int("server.port", 8080),
                KeyValue::int("http.response.status_code", 200),
                KeyValue::str("network.protocol.version", "1.1"),
                KeyValue::str("user_agent.original", "python-httpx/0.27.0"),
                KeyValue::str("client.address", "10.0.3.17"),
                KeyValue::double("seawall.retry.budget", 0.2),
                KeyValue::bool("seawall.hedged", false),
                KeyValue::int("seawall.attempts", 1),
            ];
            for e in 0..(i % 3) {
                span.events.push(Event {
                    time_unix_nano: span.start_unix_nano + e * 1000,
                    name: "retry".into(),
                    attributes: vec![
                        KeyValue::int("attempt", e as i64 + 1),
                        KeyValue::str("reason", "503"),
                    ],
                });
            }
            spans.push(span);
        }
        out.push(ResourceSpans {
            resource: vec![
                KeyValue::str("service.name", format!("service-{}", r % 3)),
                KeyValue::str("service.version", "1.4.2"),
                KeyValue::str("host.name", "node-7"),
                KeyValue::str("telemetry.sdk.name", "opentelemetry"),
                KeyValue::str("telemetry.sdk.language", "python"),
                KeyValue::str("telemetry.sdk.version", "1.25.0"),
            ],
            scope: Scope::new("seawall-sidecar", "0.1.0"),
            spans,
        });
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    seawall_otlp::hex::encode_into(&mut s, bytes);
    s
}

fn any_json(v: &AnyValue) -> Value {
    match v {
        AnyValue::String(s) => json!({ "stringValue": s }),
        AnyValue::Bool(b) => json!({ "boolValue": b }),
        AnyValue::Int(n) => json!({ "intValue": n.to_string() }),
        AnyValue::Double(d) => json!({ "doubleValue": d }),
        AnyValue::Bytes(_) | AnyValue::Array(_) | AnyValue::KvList(_) | AnyValue::Empty => {
            json!({})
        }
    }
}

fn kvs_json(kvs: &[KeyValue]) -> Value {
    kvs.iter()
        .map(|kv| json!({ "key": kv.key, "value": any_json(&kv.value) }))
        .collect()
}

/// The same spans as OTLP/JSON (what the OTel SDKs' JSON exporters write).
fn to_json(model: &[ResourceSpans]) -> Vec<u8> {
    let resource_spans: Vec<Value> = model
        .iter()
        .map(|rs| {
            let spans: Vec<Value> = rs
                .spans
                .iter()
                .map(|s| {
                    json!({
                        "traceId": hex(&s.trace_id),
                        "spanId": hex(&s.span_id),
                        "parentSpanId": s.parent_span_id.map(|p| hex(&p)).unwrap_or_default(),
                        "flags": s.flags,
                        "name": s.name,
                        "kind": s.kind as i32,
                        "startTimeUnixNano": s.start_unix_nano.to_string(),
                        "endTimeUnixNano": s.end_unix_nano.to_string(),
                        "attributes": kvs_json(&s.attributes),
                        "events": s.events.iter().map(|e| json!({
                            "timeUnixNano": e.time_unix_nano.to_string(),
                            "name": e.name,
                            "attributes": kvs_json(&e.attributes),
                        })).collect::<Vec<_>>(),
                        "status": {},
                    })
                })
                .collect();
            json!({
                "resource": { "attributes": kvs_json(&rs.resource) },
                "scopeSpans": [{ "scope": { "name": rs.scope.name, "version": rs.scope.version }, "spans": spans }],
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceSpans": resource_spans })).unwrap_or_default()
}

/// The best of `runs` timings of `f`, in seconds.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    const SPANS: usize = 10_000;
    let model = typical(SPANS);
    let mut protobuf = Vec::new();
    encode::export_request(&model, &mut protobuf);
    let json = to_json(&model);
    let from_protobuf = decode::protobuf(&protobuf).expect("decodes");
    let from_json = decode::json(&json).expect("decodes");
    assert_eq!(from_protobuf.rows.len(), SPANS);
    assert_eq!(from_protobuf, from_json, "the same rows");
    println!(
        "{SPANS} spans: protobuf {} KiB, JSON {} KiB",
        protobuf.len() / 1024,
        json.len() / 1024
    );
    let only = std::env::args().nth(1);
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    if run("protobuf") {
        let t = best(runs, || {
            std::hint::black_box(
                decode::protobuf(std::hint::black_box(&protobuf))
                    .map(|d| d.rows.len())
                    .ok(),
            );
        });
        println!(
            "decode::protobuf   {:>10.0} spans/s  ({:.2} ms)",
            SPANS as f64 / t,
            t * 1e3
        );
    }
    if run("json") {
        let t = best(runs, || {
            std::hint::black_box(
                decode::json(std::hint::black_box(&json))
                    .map(|d| d.rows.len())
                    .ok(),
            );
        });
        println!(
            "decode::json       {:>10.0} spans/s  ({:.2} ms)",
            SPANS as f64 / t,
            t * 1e3
        );
    }
    if run("model") {
        let t = best(runs, || {
            std::hint::black_box(
                decode::protobuf_model(std::hint::black_box(&protobuf))
                    .map(|d| d.rejected)
                    .ok(),
            );
        });
        println!(
            "decode::protobuf_model {:>6.0} spans/s  ({:.2} ms)",
            SPANS as f64 / t,
            t * 1e3
        );
    }
    if run("encode") {
        let mut out = Vec::with_capacity(protobuf.len());
        let t = best(runs, || {
            out.clear();
            encode::export_request(std::hint::black_box(&model), &mut out);
        });
        println!(
            "encode::export_request {:>6.0} spans/s  ({:.2} ms)",
            SPANS as f64 / t,
            t * 1e3
        );
    }
}
