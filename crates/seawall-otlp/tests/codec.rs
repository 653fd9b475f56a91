//! The codec end to end: the model encoded and decoded again, the same spans
//! as protobuf and as JSON, every malformed body refused with its place,
//! invalid spans skipped and counted.
use seawall_otlp::decode::{self, DecodeError, ErrorKind};
use seawall_otlp::encode;
use seawall_otlp::model::*;
use seawall_otlp::wire::{self, I32, I64, LEN, VARINT};

// ---------------------------------------------------------------- protobuf by hand

fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    wire::put_varint(out, wire::key(field, wire_type));
}

fn len(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, field, LEN);
    wire::put_varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

fn varint(field: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, field, VARINT);
    wire::put_varint(&mut out, value);
    out
}

fn fixed64(field: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, field, I64);
    out.extend_from_slice(&value.to_le_bytes());
    out
}

fn fixed32(field: u32, value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, field, I32);
    out.extend_from_slice(&value.to_le_bytes());
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// An `ExportTraceServiceRequest` of one resource (attributes as given), one
/// scope, these spans.
fn request(resource_attributes: &[Vec<u8>], spans: &[Vec<u8>]) -> Vec<u8> {
    let resource: Vec<u8> = resource_attributes.iter().flat_map(|a| len(1, a)).collect();
    let scope_spans: Vec<u8> = spans.iter().flat_map(|s| len(2, s)).collect();
    let rs = cat(&[&len(1, &resource), &len(2, &scope_spans)]);
    len(1, &rs)
}

fn kv_str(k: &str, v: &str) -> Vec<u8> {
    cat(&[&len(1, k.as_bytes()), &len(2, &len(1, v.as_bytes()))])
}

fn ids(trace: &[u8], span: &[u8]) -> Vec<u8> {
    cat(&[&len(1, trace), &len(2, span)])
}

const T1: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const S1: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const S2: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

// ---------------------------------------------------------------- a rich model

fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::str("http.request.method", "GET"),
        KeyValue::bool("ok", true),
        KeyValue::bool("cached", false),
        KeyValue::int("http.response.status_code", 503),
        KeyValue::int("zero", 0),
        KeyValue::int("negative", i64::MIN),
        KeyValue::double("ratio", 0.25),
        KeyValue::double("big", 1e16),
        KeyValue::new("blob", AnyValue::Bytes(vec![0, 1, 2, 0xff])),
        KeyValue::new(
            "list",
            AnyValue::Array(vec![
                AnyValue::String("a".into()),
                AnyValue::Int(1),
                AnyValue::Empty,
                AnyValue::Array(vec![]),
            ]),
        ),
        KeyValue::new(
            "map",
            AnyValue::KvList(vec![
                KeyValue::str("inner", "x\"y"),
                KeyValue::new("deeper", AnyValue::KvList(vec![KeyValue::int("n", 2)])),
            ]),
        ),
        KeyValue::new("nothing", AnyValue::Empty),
        KeyValue::str("empty", ""),
    ]
}

fn rich() -> Vec<ResourceSpans> {
    let mut root = Span::new(T1, S1, "GET /orders");
    root.kind = SpanKind::Server;
    root.flags = 0x301;
    root.trace_state = "vendor=a".into();
    root.start_unix_nano = 1_700_000_000_000_000_000;
    root.end_unix_nano = 1_700_000_000_250_000_000;
    root.attributes = every_value();
    root.status = Status {
        code: StatusCode::Error,
        message: "upstream timed out".into(),
    };
    root.events = vec![
        Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "retry".into(),
            attributes: vec![KeyValue::int("attempt", 2)],
        },
        Event {
            time_unix_nano: 0,
            name: "".into(),
            attributes: vec![],
        },
    ];
    root.links = vec![Link {
        trace_id: [0xab; 16],
        span_id: [0xcd; 8],
        trace_state: "k=v".into(),
        flags: 1,
        attributes: vec![KeyValue::str("link.kind", "follows")],
    }];
    let mut child = Span::new(T1, S2, "SELECT");
    child.parent_span_id = Some(S1);
    child.kind = SpanKind::Client;
    vec![
        ResourceSpans {
            resource: vec![
                KeyValue::str("service.name", "orders"),
                KeyValue::str("host.name", "h1"),
            ],
            scope: Scope::new("seawall-sidecar", "0.1.0"),
            spans: vec![root, child],
        },
        ResourceSpans {
            resource: vec![],
            scope: Scope::default(),
            spans: vec![Span::new([2; 16], [3; 8], "no service")],
        },
    ]
}

fn encoded(model: &[ResourceSpans]) -> Vec<u8> {
    let mut out = Vec::new();
    encode::export_request(model, &mut out);
    out
}

#[test]
fn the_model_round_trips_through_protobuf() {
    let model = rich();
    let decoded = decode::protobuf_model(&encoded(&model)).expect("decodes");
    assert_eq!(decoded.rejected, 0);
    assert_eq!(decoded.resource_spans, model);
}

#[test]
fn rows_of_the_rich_model() {
    let decoded = decode::protobuf(&encoded(&rich())).expect("decodes");
    assert_eq!((decoded.rejected, decoded.message.as_str()), (0, ""));
    let [root, child, lone] = &decoded.rows[..] else {
        panic!("3 rows: {:?}", decoded.rows);
    };
    assert_eq!(root.trace_id, T1);
    assert_eq!(root.span_id, S1);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(&*root.service, "orders");
    assert_eq!(root.name, "GET /orders");
    assert_eq!(root.kind, 2);
    assert_eq!(
        (root.start_ns, root.end_ns),
        (1_700_000_000_000_000_000, 1_700_000_000_250_000_000)
    );
    assert_eq!(
        (root.status_code, root.status_message.as_str()),
        (2, "upstream timed out")
    );
    assert_eq!(root.flags, 1, "the low byte only");
    assert_eq!(root.trace_state, "vendor=a");
    assert_eq!(
        root.attributes,
        concat!(
            r#"[{"key":"http.request.method","value":{"stringValue":"GET"}},"#,
            r#"{"key":"ok","value":{"boolValue":true}},"#,
            r#"{"key":"cached","value":{"boolValue":false}},"#,
            r#"{"key":"http.response.status_code","value":{"intValue":"503"}},"#,
            r#"{"key":"zero","value":{"intValue":"0"}},"#,
            r#"{"key":"negative","value":{"intValue":"-9223372036854775808"}},"#,
            r#"{"key":"ratio","value":{"doubleValue":0.25}},"#,
            r#"{"key":"big","value":{"doubleValue":1e+16}},"#,
            r#"{"key":"blob","value":{"bytesValue":"AAEC/w=="}},"#,
            r#"{"key":"list","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"1"},{},{"arrayValue":{"values":[]}}]}}},"#,
            r#"{"key":"map","value":{"kvlistValue":{"values":[{"key":"inner","value":{"stringValue":"x\"y"}},{"key":"deeper","value":{"kvlistValue":{"values":[{"key":"n","value":{"intValue":"2"}}]}}}]}}},"#,
            r#"{"key":"nothing","value":{}},"#,
            r#"{"key":"empty","value":{"stringValue":""}}]"#,
        )
    );
    assert_eq!(
        root.events,
        concat!(
            r#"[{"timeUnixNano":"1700000000100000000","name":"retry","attributes":[{"key":"attempt","value":{"intValue":"2"}}]},"#,
            r#"{"timeUnixNano":"0","name":"","attributes":[]}]"#,
        )
    );
    assert_eq!(
        root.links,
        concat!(
            r#"[{"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","traceState":"k=v","#,
            r#""attributes":[{"key":"link.kind","value":{"stringValue":"follows"}}]}]"#,
        )
    );
    assert_eq!(
        &*root.resource,
        r#"[{"key":"service.name","value":{"stringValue":"orders"}},{"key":"host.name","value":{"stringValue":"h1"}}]"#
    );
    assert_eq!(
        &*root.scope,
        r#"{"name":"seawall-sidecar","version":"0.1.0"}"#
    );
    assert_eq!(
        root.tags.iter().collect::<Vec<_>>(),
        [
            "http.request.method=GET",
            "ok=true",
            "cached=false",
            "http.response.status_code=503",
            "zero=0",
            "negative=-9223372036854775808",
            "ratio=0.25",
            "big=1e+16",
            "empty=",
            "service.name=orders",
            "host.name=h1",
        ]
    );
    // every JSON column is JSON
    for text in [&root.attributes, &root.events, &root.links] {
        serde_json::from_str::<serde_json::Value>(text).expect("valid JSON");
    }
    assert_eq!(child.parent_span_id, Some(S1));
    assert_eq!((child.kind, child.status_code), (3, 0));
    assert_eq!(
        (
            child.attributes.as_str(),
            child.events.as_str(),
            child.links.as_str()
        ),
        ("[]", "[]", "[]")
    );
    assert!(
        std::sync::Arc::ptr_eq(&root.resource, &child.resource),
        "shared"
    );
    assert_eq!(&*lone.service, "unknown_service");
    assert_eq!(&*lone.resource, "[]");
    assert_eq!(&*lone.scope, r#"{"name":"","version":""}"#);
    assert!(lone.tags.is_empty());
}

// ---------------------------------------------------------------- JSON

const JSON_BODY: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "orders"}},
      {"key": "host.name", "value": {"stringValue": "h1"}}
    ], "droppedAttributesCount": 0},
    "scopeSpans": [{
      "scope": {"name": "seawall-sidecar", "version": "0.1.0", "attributes": [{"key": "x", "value": {"intValue": 1}}]},
      "spans": [{
        "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
        "spanId": "00f067aa0ba902b7",
        "traceState": "vendor=a",
        "flags": 769,
        "name": "GET /orders",
        "kind": "SPAN_KIND_SERVER",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": 1700000000250000000,
        "attributes": [
          {"key": "http.request.method", "value": {"stringValue": "GET"}},
          {"key": "ok", "value": {"boolValue": true}},
          {"key": "cached", "value": {"boolValue": false}},
          {"key": "http.response.status_code", "value": {"intValue": "503"}},
          {"key": "zero", "value": {"intValue": 0}},
          {"key": "negative", "value": {"intValue": "-9223372036854775808"}},
          {"key": "ratio", "value": {"doubleValue": 0.25}},
          {"key": "big", "value": {"doubleValue": "1e16"}},
          {"key": "blob", "value": {"bytesValue": "AAEC_w"}},
          {"key": "list", "value": {"arrayValue": {"values": [
            {"stringValue": "a"}, {"intValue": "1"}, {}, {"arrayValue": {}}
          ]}}},
          {"key": "map", "value": {"kvlistValue": {"values": [
            {"key": "inner", "value": {"stringValue": "x\"y"}},
            {"key": "deeper", "value": {"kvlist_value": {"values": [{"key": "n", "value": {"int_value": "2"}}]}}}
          ]}}},
          {"key": "nothing", "value": {}},
          {"key": "empty", "value": {"stringValue": ""}}
        ],
        "events": [
          {"timeUnixNano": "1700000000100000000", "name": "retry", "attributes": [{"key": "attempt", "value": {"intValue": "2"}}]},
          {}
        ],
        "links": [{"traceId": "abababababababababababababababab", "spanId": "cdcdcdcdcdcdcdcd", "traceState": "k=v", "flags": 1,
                   "attributes": [{"key": "link.kind", "value": {"stringValue": "follows"}}]}],
        "status": {"code": 2, "message": "upstream timed out"},
        "somethingNew": {"ignored": true}
      }, {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "0102030405060708",
        "parent_span_id": "00f067aa0ba902b7",
        "name": "SELECT",
        "kind": 3
      }]
    }]
  }, {
    "scopeSpans": [{"spans": [{"traceId": "02020202020202020202020202020202", "spanId": "0303030303030303", "name": "no service"}]}]
  }]
}"#;

#[test]
fn json_gives_the_rows_and_the_model_that_protobuf_gives() {
    let from_json = decode::json(JSON_BODY.as_bytes()).expect("decodes");
    let from_protobuf = decode::protobuf(&encoded(&rich())).expect("decodes");
    assert_eq!(from_json, from_protobuf);
    let model = decode::json_model(JSON_BODY.as_bytes()).expect("decodes");
    assert_eq!(model.resource_spans, rich());
}

#[test]
fn json_and_protobuf_agree_on_nan_and_infinities() {
    let model = vec![ResourceSpans {
        resource: vec![],
        scope: Scope::default(),
        spans: vec![Span {
            attributes: vec![
                KeyValue::double("nan", f64::NAN),
                KeyValue::double("inf", f64::INFINITY),
                KeyValue::double("-inf", f64::NEG_INFINITY),
            ],
            ..Span::new([1; 16], [1; 8], "x")
        }],
    }];
    let rows = decode::protobuf(&encoded(&model)).expect("decodes").rows;
    assert_eq!(
        rows[0].attributes,
        concat!(
            r#"[{"key":"nan","value":{"doubleValue":"NaN"}},"#,
            r#"{"key":"inf","value":{"doubleValue":"Infinity"}},"#,
            r#"{"key":"-inf","value":{"doubleValue":"-Infinity"}}]"#
        )
    );
    serde_json::from_str::<serde_json::Value>(&rows[0].attributes).expect("valid JSON");
    assert_eq!(
        rows[0].tags.iter().collect::<Vec<_>>(),
        ["nan=NaN", "inf=Infinity", "-inf=-Infinity"]
    );
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"01010101010101010101010101010101",
        "spanId":"0101010101010101","name":"x","attributes":[
        {"key":"nan","value":{"doubleValue":"NaN"}},{"key":"inf","value":{"doubleValue":"Infinity"}},
        {"key":"-inf","value":{"doubleValue":"-Infinity"}}]}]}]}]}"#;
    assert_eq!(decode::json(json.as_bytes()).expect("decodes").rows, rows);
}

// ---------------------------------------------------------------- unknown fields, field order

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let unknown = cat(&[
        &varint(99, 7),
        &fixed64(98, 1),
        &len(97, b"zz"),
        &fixed32(96, 5),
    ]);
    let value = cat(&[&unknown, &len(1, b"GET")]);
    let attribute = cat(&[&len(1, b"m"), &unknown, &len(2, &value)]);
    let span = cat(&[&ids(&T1, &S1), &unknown, &len(9, &attribute), &len(5, b"n")]);
    let body = request(&[cat(&[&kv_str("service.name", "s"), &unknown])], &[span]);
    let body = cat(&[&unknown, &body]);
    let rows = decode::protobuf(&body).expect("decodes").rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].attributes,
        r#"[{"key":"m","value":{"stringValue":"GET"}}]"#
    );
    assert_eq!(&*rows[0].service, "s");
}

#[test]
fn fields_in_any_order() {
    // the span's fields backwards, a key-value's value before its key,
    // the resource after the spans, the scope after its spans
    let attribute = cat(&[&len(2, &len(1, b"v")), &len(1, b"k")]);
    let span = cat(&[
        &fixed32(16, 1),
        &len(15, &varint(3, 2)),
        &len(9, &attribute),
        &fixed64(7, 10),
        &len(5, b"late"),
        &len(2, &S1),
        &len(1, &T1),
    ]);
    let scope_spans = cat(&[&len(2, &span), &len(1, &len(1, b"lib"))]);
    let resource = len(1, &kv_str("service.name", "svc"));
    let body = len(1, &cat(&[&len(2, &scope_spans), &len(1, &resource)]));
    let rows = decode::protobuf(&body).expect("decodes").rows;
    let row = &rows[0];
    assert_eq!(
        (row.name.as_str(), row.flags, row.status_code, row.start_ns),
        ("late", 1, 2, 10)
    );
    assert_eq!(
        row.attributes,
        r#"[{"key":"k","value":{"stringValue":"v"}}]"#
    );
    assert_eq!(
        (&*row.service, &*row.scope),
        ("svc", r#"{"name":"lib","version":""}"#)
    );
    assert_eq!(
        row.tags.iter().collect::<Vec<_>>(),
        ["k=v", "service.name=svc"]
    );
}

#[test]
fn the_last_oneof_member_wins_and_unknown_enums_read_as_zero() {
    let value = cat(&[&len(1, b"first"), &varint(3, 5)]);
    let span = cat(&[
        &ids(&T1, &S1),
        &len(9, &cat(&[&len(1, b"k"), &len(2, &value)])),
        &varint(6, 42),
    ]);
    let row = &decode::protobuf(&request(&[], &[span]))
        .expect("decodes")
        .rows[0];
    assert_eq!(row.attributes, r#"[{"key":"k","value":{"intValue":"5"}}]"#);
    assert_eq!(row.kind, 0);
}

// ---------------------------------------------------------------- tags

#[test]
fn tags_cut_values_not_keys() {
    let long = "é".repeat(300);
    let span = cat(&[&ids(&T1, &S1), &len(9, &kv_str(&"k".repeat(300), &long))]);
    let row = &decode::protobuf(&request(&[], &[span]))
        .expect("decodes")
        .rows[0];
    let tag = row.tags.iter().next().expect("a tag");
    let (k, v) = tag.split_once('=').expect("key=value");
    assert_eq!(k.len(), 300);
    assert_eq!(v.chars().count(), 256);
    // the attribute itself is whole
    assert!(row.attributes.contains(&long));
}

#[test]
fn service_name_must_be_a_string() {
    let resource = cat(&[&len(1, b"service.name"), &len(2, &varint(3, 1))]);
    let row = &decode::protobuf(&request(&[resource], &[ids(&T1, &S1)]))
        .expect("decodes")
        .rows[0];
    assert_eq!(&*row.service, "unknown_service");
    assert_eq!(row.tags.iter().collect::<Vec<_>>(), ["service.name=1"]);
}

// ---------------------------------------------------------------- partial success

#[test]
fn invalid_spans_are_skipped_and_counted() {
    let good = ids(&T1, &S1);
    let spans = [
        good.clone(),
        ids(&T1[..15], &S1),                         // 1: short trace id
        ids(&[0; 16], &S1),                          // 2: zero trace id
        ids(&T1, &[0; 8]),                           // 3: zero span id
        cat(&[&ids(&T1, &S2), &len(4, &[1, 2, 3])]), // 4: bad parent
        cat(&[&ids(&T1, &S2), &len(13, &ids(&T1, &S1[..7]))]), // 5: bad link
        Vec::new(),                                  // 6: no ids at all
        cat(&[&ids(&T1, &S2), &len(4, &[0; 8])]),    // 7: zero parent: a root
    ];
    let decoded = decode::protobuf(&request(&[], &spans)).expect("decodes");
    assert_eq!(decoded.rows.len(), 2);
    assert_eq!(decoded.rows[1].parent_span_id, None);
    assert_eq!(decoded.rejected, 6);
    assert_eq!(
        decoded.message,
        "6 spans rejected, the first: resourceSpans[0].scopeSpans[0].spans[1].traceId: 15 bytes, want 16 bytes"
    );
    // each reason, alone
    for (i, why) in [
        (2, "spans[2].traceId: all zero"),
        (3, "spans[3].spanId: all zero"),
        (4, "spans[4].parentSpanId: 3 bytes, want 8 bytes or none"),
        (5, "spans[5].links[0].spanId: 7 bytes, want 8 bytes"),
        (6, "spans[6].traceId: missing, want 16 bytes"),
    ] {
        let one = decode::protobuf(&request(&[], &spans[i..=i])).expect("decodes");
        assert_eq!(one.rejected, 1);
        let spans_i = why.replace(&format!("spans[{i}]"), "spans[0]");
        assert_eq!(
            one.message,
            format!("1 span rejected: resourceSpans[0].scopeSpans[0].{spans_i}")
        );
    }
    let model = decode::protobuf_model(&request(&[], &spans)).expect("decodes");
    assert_eq!(model.rejected, 6);
    assert_eq!(model.resource_spans[0].spans.len(), 2);
}

#[test]
fn json_partial_success_says_the_same() {
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"4bf92f3577b34da6a3ce929d0e0e47","spanId":"00f067aa0ba902b7"},
        {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7"}]}]}]}"#;
    let decoded = decode::json(body).expect("decodes");
    assert_eq!(decoded.rows.len(), 1);
    assert_eq!(
        decoded.message,
        "1 span rejected: resourceSpans[0].scopeSpans[0].spans[0].traceId: 15 bytes, want 16 bytes"
    );
}

// ---------------------------------------------------------------- malformed bodies

fn error_of(result: Result<decode::Decoded, DecodeError>) -> String {
    match result {
        Ok(d) => panic!("decoded: {d:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_protobuf_says_what_and_where() {
    let good = request(&[kv_str("a", "b")], &[ids(&T1, &S1)]);
    // cut anywhere: an error, never a panic, always with a place
    for end in 1..good.len() {
        let e = decode::protobuf(&good[..end]).expect_err("truncated");
        assert!(e.to_string().contains("at byte"), "{e}");
    }
    let int_as_fixed32 = cat(&[&len(1, b"n"), &len(2, &fixed32(3, 1))]);
    let body = request(&[kv_str("a", "b"), kv_str("c", "d"), int_as_fixed32], &[]);
    assert_eq!(
        error_of(decode::protobuf(&body)),
        "resourceSpans[0].resource.attributes[2].value: wire type 5 for field 3 (intValue)"
    );
    let body = request(&[], &[cat(&[&ids(&T1, &S1), &len(5, b"caf\xc3")])]);
    let at = body.len() - 1;
    assert_eq!(
        error_of(decode::protobuf(&body)),
        format!("resourceSpans[0].scopeSpans[0].spans[0].name: invalid UTF-8 at byte {at}")
    );
    let mut body = request(&[], &[cat(&[&ids(&T1, &S1), &[0x2a, 0x7f, b'x']])]);
    let e = error_of(decode::protobuf(&body));
    assert!(
        e.starts_with("resourceSpans[0].scopeSpans[0].spans[0].name: length 127 at byte"),
        "{e}"
    );
    assert!(
        e.ends_with("runs past the end of its message (1 bytes left)"),
        "{e}"
    );
    // field 20, wire type 3 (a group's start)
    body = request(&[], &[cat(&[&ids(&T1, &S1), &[0xa3, 0x01]])]);
    assert!(error_of(decode::protobuf(&body)).starts_with(
        "resourceSpans[0].scopeSpans[0].spans[0]: group (deprecated wire type 3/4) for field 20"
    ));
    body = request(&[], &[cat(&[&ids(&T1, &S1), &[0x00]])]);
    assert!(error_of(decode::protobuf(&body))
        .starts_with("resourceSpans[0].scopeSpans[0].spans[0]: field number 0 at byte"));
    body = request(&[], &[cat(&[&ids(&T1, &S1), &fixed32(7, 1)])]);
    assert_eq!(
        error_of(decode::protobuf(&body)),
        "resourceSpans[0].scopeSpans[0].spans[0]: wire type 5 for field 7 (startTimeUnixNano)"
    );
    body = request(&[], &[cat(&[&ids(&T1, &S1), &len(11, &varint(1, 3))])]);
    assert_eq!(
        error_of(decode::protobuf(&body)),
        "resourceSpans[0].scopeSpans[0].spans[0].events[0]: wire type 0 for field 1 (timeUnixNano)"
    );
    // the same errors for the model
    assert_eq!(
        decode::protobuf_model(&body)
            .expect_err("malformed")
            .to_string(),
        error_of(decode::protobuf(&body))
    );
}

/// An attribute value of arrays nested `depth` deep.
fn nested(depth: usize) -> Vec<u8> {
    let mut value = len(1, b"leaf");
    for _ in 0..depth {
        value = len(5, &len(1, &value));
    }
    value
}

#[test]
fn nesting_is_bounded() {
    let ok = cat(&[&len(1, b"k"), &len(2, &nested(decode::MAX_DEPTH))]);
    decode::protobuf(&request(&[ok], &[])).expect("deep enough");
    let deep = cat(&[&len(1, b"k"), &len(2, &nested(decode::MAX_DEPTH + 1))]);
    let e = decode::protobuf(&request(&[deep], &[])).expect_err("too deep");
    assert!(matches!(e.kind(), ErrorKind::TooDeep));
    let path = format!(
        "resourceSpans[0].resource.attributes[0].value{}.arrayValue",
        ".arrayValue.values[0]".repeat(decode::MAX_DEPTH)
    );
    assert_eq!(e.path(), path);
    // the same in JSON
    let mut value = r#"{"stringValue":"leaf"}"#.to_owned();
    for _ in 0..=decode::MAX_DEPTH {
        value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
    }
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"k","value":{value}}}]}}}}]}}"#
    );
    let e = decode::json(body.as_bytes()).expect_err("too deep");
    assert!(matches!(e.kind(), ErrorKind::TooDeep));
    assert_eq!(e.path(), path);
    // thousands of levels: an error, not a stack overflow
    let huge = cat(&[&len(1, b"k"), &len(2, &nested(5_000))]);
    decode::protobuf(&request(&[huge], &[])).expect_err("too deep");
}

fn json_error(body: &str) -> String {
    error_of(decode::json(body.as_bytes()))
}

fn in_span(fields: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",{fields}}}]}}]}}]}}"#
    )
}

#[test]
fn malformed_json_says_what_and_where() {
    assert_eq!(
        json_error("{\"resourceSpans\": ["),
        "resourceSpans[0]: not JSON: EOF while parsing a list at line 1 column 19"
    );
    assert_eq!(
        json_error("{} x"),
        "not JSON: trailing characters at line 1 column 4"
    );
    assert_eq!(json_error("[]"), "expected an object, got an array");
    assert_eq!(
        json_error(r#"{"resourceSpans":{}}"#),
        "resourceSpans: expected an array, got an object"
    );
    let span = "resourceSpans[0].scopeSpans[0].spans[0]";
    for (fields, error) in [
        (
            r#""parentSpanId":"zz""#,
            "parentSpanId: not hex: bad character at 0",
        ),
        (r#""name":7"#, "name: expected a string, got a number"),
        (
            r#""kind":"SPAN_KIND_SIDEWAYS""#,
            r#"kind: unknown enum value "SPAN_KIND_SIDEWAYS""#,
        ),
        (r#""kind":1.5"#, "kind: 1.5 is not an int32"),
        (
            r#""startTimeUnixNano":"-1""#,
            "startTimeUnixNano: -1 is not a uint64",
        ),
        (
            r#""startTimeUnixNano":"12x""#,
            r#"startTimeUnixNano: "12x" is not a uint64"#,
        ),
        (r#""flags":4294967296"#, "flags: 4294967296 is not a uint32"),
        (r#""status":[]"#, "status: expected an object, got an array"),
        (
            r#""attributes":[{"key":"a","value":{"stringValue":"x"}},{"key":"b","value":{"intValue":"1x"}}]"#,
            r#"attributes[1].value.intValue: "1x" is not an int64"#,
        ),
        (
            r#""attributes":[{"key":"a","value":{"stringValue":"x","boolValue":true}}]"#,
            "attributes[0].value.boolValue: two values in one AnyValue (stringValue and boolValue)",
        ),
        (
            r#""attributes":[{"key":"a","value":{"stringValue":"x","arrayValue":{}}}]"#,
            "attributes[0].value.arrayValue: two values in one AnyValue (stringValue and arrayValue)",
        ),
        (
            r#""attributes":[{"key":"a","value":{"bytesValue":"@@@@"}}]"#,
            "attributes[0].value.bytesValue: not base64: bad character at 0",
        ),
        (
            r#""attributes":[{"key":"a","value":{"doubleValue":"nan"}}]"#,
            r#"attributes[0].value.doubleValue: "nan" is not a double"#,
        ),
        (
            r#""attributes":[{"key":"a","value":{"arrayValue":{"values":[{"boolValue":"yes"}]}}}]"#,
            "attributes[0].value.arrayValue.values[0].boolValue: expected a boolean, got a string",
        ),
        (
            r#""events":[{"attributes":[{"key":5}]}]"#,
            "events[0].attributes[0].key: expected a string, got a number",
        ),
        (
            r#""links":[{"traceId":"abc"}]"#,
            "links[0].traceId: not hex: 3 digits (an odd number)",
        ),
    ] {
        assert_eq!(
            json_error(&in_span(fields)),
            format!("{span}.{error}"),
            "{fields}"
        );
    }
}

#[test]
fn json_key_values_in_any_order() {
    // a value before its key (kept, then read once the key is known), a
    // second value (ignored once the first was read), a key after the value
    let body = in_span(
        r#""attributes":[
            {"value":{"kvlistValue":{"values":[{"value":{"intValue":"1"},"key":"n"}]}},"key":"late"},
            {"key":"k","value":{"stringValue":"first"},"value":{"stringValue":"second"}},
            {"value":{"boolValue":true}},
            {"key":"only"}]"#,
    );
    let row = &decode::json(body.as_bytes()).expect("decodes").rows[0];
    assert_eq!(
        row.attributes,
        concat!(
            r#"[{"key":"late","value":{"kvlistValue":{"values":[{"key":"n","value":{"intValue":"1"}}]}}},"#,
            r#"{"key":"k","value":{"stringValue":"first"}},"#,
            r#"{"key":"","value":{"boolValue":true}},"#,
            r#"{"key":"only","value":{}}]"#
        )
    );
    assert_eq!(row.tags.iter().collect::<Vec<_>>(), ["k=first", "=true"]);
    // an error inside a value kept for later still says where
    let body = in_span(r#""attributes":[{"value":{"intValue":"x"},"key":"a"}]"#);
    assert_eq!(
        decode::json(body.as_bytes()).expect_err("bad int").to_string(),
        "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue: \"x\" is not an int64"
    );
}

#[test]
fn json_accepts_what_the_mapping_allows() {
    let body = in_span(
        r#""name":null,"startTimeUnixNano":1e3,"kind":2.0,"status":{"code":"STATUS_CODE_OK"},
        "attributes":[{"key":"d","value":{"doubleValue":"2.5"}},{"key":"b","value":{"bytesValue":"+/8="}}],
        "droppedAttributesCount":"3","unknown":[1,2,{"x":null}]"#,
    );
    let row = &decode::json(body.as_bytes()).expect("decodes").rows[0];
    assert_eq!(
        (row.name.as_str(), row.start_ns, row.kind, row.status_code),
        ("", 1000, 2, 1)
    );
    assert_eq!(
        row.attributes,
        r#"[{"key":"d","value":{"doubleValue":2.5}},{"key":"b","value":{"bytesValue":"+/8="}}]"#
    );
    // an empty object, an empty list: no rows
    assert_eq!(decode::json(b"{}").expect("decodes").rows, vec![]);
    assert_eq!(
        decode::json(br#"{"resourceSpans":[]}"#)
            .expect("decodes")
            .rows,
        vec![]
    );
    assert_eq!(decode::protobuf(b"").expect("decodes").rows, vec![]);
}

#[test]
fn json_doubles_round_trip_exactly() {
    // 17 significant digits: the default serde_json parser may be one ulp off
    for v in [
        0.1,
        1.0 / 3.0,
        2.2250738585072014e-308,
        9007199254740993.0,
        1.7976931348623157e308,
    ] {
        let mut text = String::new();
        seawall_otlp::json_text::double(&mut text, v);
        let body = in_span(&format!(
            r#""attributes":[{{"key":"d","value":{{"doubleValue":{text}}}}}]"#
        ));
        let model = decode::json_model(body.as_bytes()).expect("decodes");
        let AnyValue::Double(back) = model.resource_spans[0].spans[0].attributes[0].value else {
            panic!("a double");
        };
        assert_eq!(back.to_bits(), v.to_bits(), "{text}");
    }
}
