//! The shared table `tests/cases.json`, also checked against the Python twin by
//! `tests/telemetry/test_trace_cases.py`: one table, two runtimes.

use http::{HeaderMap, HeaderName, HeaderValue};
use seawall_policy::rng::SplitMix64;
use seawall_trace::{continue_trace, TraceParent, TraceState, REQUEST_ID_LEN};
use serde_json::Value;

fn cases() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases.json");
    let text = std::fs::read_to_string(path).expect("tests/cases.json is readable");
    serde_json::from_str(&text).expect("tests/cases.json is JSON")
}

fn section(cases: &Value, name: &str) -> Vec<Value> {
    cases[name].as_array().expect("a list of cases").clone()
}

fn string(value: &Value) -> &str {
    value.as_str().expect("a string")
}

fn text<'a>(case: &'a Value, field: &str) -> &'a str {
    string(&case[field])
}

#[test]
fn traceparent_cases() {
    let cases = cases();
    let table = section(&cases, "traceparent");
    assert!(table.len() >= 60);
    let mut valid = 0;
    for case in &table {
        let name = text(case, "name");
        let got = TraceParent::parse(text(case, "input"));
        let expected = &case["expected"];
        if expected.is_null() {
            assert_eq!(got, None, "{name}");
            continue;
        }
        valid += 1;
        let tp = got.unwrap_or_else(|| panic!("{name}: should parse"));
        assert_eq!(
            u64::from(tp.version()),
            expected["version"].as_u64().expect("version"),
            "{name}"
        );
        assert_eq!(
            tp.trace_id().to_string(),
            text(expected, "trace_id"),
            "{name}"
        );
        assert_eq!(
            tp.parent_id().to_string(),
            text(expected, "parent_id"),
            "{name}"
        );
        assert_eq!(
            u64::from(tp.flags()),
            expected["flags"].as_u64().expect("flags"),
            "{name}"
        );
        let formatted = format!(
            "{:02x}-{}-{}-{:02x}",
            tp.version(),
            text(expected, "trace_id"),
            text(expected, "parent_id"),
            tp.flags()
        );
        assert_eq!(tp.to_string(), formatted, "{name}");
        assert_eq!(TraceParent::parse(&formatted), Some(tp), "{name}");
    }
    assert!(valid >= 20 && valid < table.len());
}

#[test]
fn tracestate_cases() {
    let cases = cases();
    let table = section(&cases, "tracestate");
    assert!(table.len() >= 60);
    for case in &table {
        let name = text(case, "name");
        let input = text(case, "input");
        let got = TraceState::parse(input);
        let expected = &case["expected"];
        if expected.is_null() {
            assert_eq!(got, None, "{name}");
            continue;
        }
        let state = got.unwrap_or_else(|| panic!("{name}: should parse"));
        let entries: Vec<(String, String)> = expected
            .as_array()
            .expect("entries")
            .iter()
            .map(|pair| (string(&pair[0]).to_owned(), string(&pair[1]).to_owned()))
            .collect();
        let got_entries: Vec<(String, String)> = state
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(got_entries, entries, "{name}");
        assert_eq!(state.len(), entries.len(), "{name}");
        let canonical = entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(state.as_str(), canonical, "{name}");
        // The same input split over two fields at each comma parses the same.
        for (i, _) in input.match_indices(',') {
            let fields = [&input.as_bytes()[..i], &input.as_bytes()[i + 1..]];
            assert_eq!(
                TraceState::parse_fields(fields).as_ref(),
                Some(&state),
                "{name} split at {i}"
            );
        }
    }
}

#[test]
fn continue_trace_cases() {
    let cases = cases();
    let table = section(&cases, "continue_trace");
    assert!(table.len() >= 15);
    let mut rng = SplitMix64::new(42);
    for case in &table {
        let name = text(case, "name");
        let mut headers = HeaderMap::new();
        let mut incoming = Vec::new();
        for pair in case["headers"].as_array().expect("headers") {
            let header = HeaderName::from_bytes(string(&pair[0]).as_bytes()).expect("name");
            let value = HeaderValue::from_str(string(&pair[1])).expect("value");
            if header == "traceparent" {
                incoming.push(TraceParent::parse(&value));
            }
            headers.append(header, value);
        }
        let got = continue_trace(&headers, &mut rng);
        assert_eq!(got.traceparent.version(), 0, "{name}");
        match text(case, "trace_id") {
            "kept" => {
                let [Some(parent)] = incoming[..] else {
                    panic!("{name}: a kept trace needs one valid traceparent")
                };
                assert!(got.continued, "{name}");
                assert_eq!(got.traceparent.trace_id(), parent.trace_id(), "{name}");
                assert_ne!(got.traceparent.parent_id(), parent.parent_id(), "{name}");
            }
            _ => {
                assert!(!got.continued, "{name}");
                for parent in incoming.iter().flatten() {
                    assert_ne!(got.traceparent.trace_id(), parent.trace_id(), "{name}");
                }
            }
        }
        assert_eq!(
            got.tracestate.as_ref().map(TraceState::as_str),
            case["tracestate"].as_str(),
            "{name}"
        );
        let flags = case["flags"].as_u64().expect("flags");
        assert_eq!(u64::from(got.traceparent.flags()), flags, "{name}");
        match case["request_id"].as_str() {
            Some(kept) => assert_eq!(&got.request_id[..], kept.as_bytes(), "{name}"),
            None => assert_eq!(got.request_id.len(), REQUEST_ID_LEN, "{name}"),
        }
    }
}
