//! The Rust codec against the Python one (the contract), case by case.
//!
//! tests/corpus/requests.txt holds what Python's `RequestParser` did with
//! each input, recorded before that codec was retired (its generator is in
//! the repository's history: the Python malformed and valid tables,
//! request-line and field variants, and seeded mutations of valid
//! requests). Each input is fed here whole, byte by byte and in random
//! pieces, and must give the same events: the same heads (method, target,
//! path, authority, version, framing, keep-alive, 100-continue, upgrade,
//! fields), the same bodies and trailers, and the same refusal status.
//! Python's status for a request with several faults can depend on how its
//! bytes arrive (a bare LF is refused as soon as it is seen in an incomplete
//! head, but a complete head is judged by its request line first), so the
//! corpus holds Python's verdict for each of the three feedings.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{bytewise, random_split, run, whole, Conn, Event};
use http::HeaderMap;
use seawall_h1::{Framing, Limits};

fn unescape(s: &str) -> Vec<u8> {
    if s == "%" {
        return Vec::new();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn esc(data: &[u8]) -> String {
    if data.is_empty() {
        return "%".into();
    }
    data.iter()
        .map(|&b| {
            if (0x21..0x7f).contains(&b) && !b"%|;,= ".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn fields(map: &HeaderMap) -> String {
    let mut pairs: Vec<(String, String)> = map
        .iter()
        .map(|(n, v)| (esc(n.as_str().as_bytes()), esc(v.as_bytes())))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0)); // stable: order within a name kept
    if pairs.is_empty() {
        return "%".into();
    }
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn format(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            Event::Request(h) => {
                let framing = match h.framing {
                    Framing::Empty => "E".to_string(),
                    Framing::Length(n) => format!("L{n}"),
                    Framing::Chunked => "C".to_string(),
                };
                [
                    "R".to_string(),
                    esc(h.method.as_str().as_bytes()),
                    esc(&h.target),
                    esc(&h.path),
                    h.authority.as_deref().map_or("-".into(), esc),
                    (h.absolute as u8).to_string(),
                    if h.version == http::Version::HTTP_11 {
                        "11"
                    } else {
                        "10"
                    }
                    .into(),
                    framing,
                    (h.keep_alive as u8).to_string(),
                    (h.expect_continue as u8).to_string(),
                    h.upgrade.as_deref().map_or("-".into(), esc),
                    fields(&h.headers),
                ]
                .join(" ")
            }
            Event::Data(d) => format!("D {}", esc(d)),
            Event::End(t) => format!("E {}", fields(t)),
        })
        .collect()
}

fn limits(key: &str) -> Limits {
    if key == "-" {
        return Limits::default();
    }
    let v: Vec<&str> = key.split(',').collect();
    Limits {
        max_request_line: v[0].parse().unwrap(),
        max_headers: v[1].parse().unwrap(),
        max_header_bytes: v[2].parse().unwrap(),
        max_body: if v[3] == "-" {
            None
        } else {
            Some(v[3].parse().unwrap())
        },
        max_chunk_ext_bytes: v[4].parse().unwrap(),
    }
}

/// What the Rust codec does with `chunks`, in the corpus's notation.
fn verdict(chunks: &[Vec<u8>], limits: Limits) -> Vec<String> {
    let mut conn = Conn::new(limits);
    let mut error = None;
    for chunk in chunks {
        if let Err(err) = conn.feed(chunk) {
            error = Some(err);
            break;
        }
    }
    let mut out = format(&conn.events);
    match error {
        Some(err) => out.push(format!("X {}", err.status)),
        None if conn.pending() => out.push("M".into()),
        None => {}
    }
    out
}

#[test]
fn the_rust_codec_does_what_the_python_codec_does() {
    let corpus = include_str!("corpus/requests.txt");
    let (mut cases, mut failures) = (0, Vec::new());
    for (n, line) in corpus.lines().enumerate() {
        let parts: Vec<&str> = line.split('|').collect();
        let [key, input, whole_events, bytewise_events, split_events] = parts[..] else {
            panic!("line {}: malformed corpus line", n + 1);
        };
        let limits = limits(key);
        let data = unescape(input);
        let events = |s: &str| -> Vec<String> {
            if s.is_empty() {
                Vec::new()
            } else {
                s.split(" ; ").map(str::to_string).collect()
            }
        };
        let python_whole = events(whole_events);
        let same_or = |s: &str| {
            if s == "=" {
                python_whole.clone()
            } else {
                events(s)
            }
        };
        let (python_bytewise, python_split) = (same_or(bytewise_events), same_or(split_events));
        cases += 1;
        for (how, chunks) in [
            ("whole", whole(&data)),
            ("bytewise", bytewise(&data)),
            ("split", random_split(&data, n as u64)),
        ] {
            // Python's verdict for the same feeding
            let allowed: Vec<&Vec<String>> = match how {
                "whole" => vec![&python_whole],
                "bytewise" => vec![&python_bytewise],
                _ => vec![&python_split],
            };
            let got = verdict(&chunks, limits);
            if allowed.contains(&&got) {
                continue;
            }
            let expected = allowed[0];
            failures.push(format!(
                "line {} ({how}, limits {key}): {:?}\n  python: {expected:?}\n  rust:   {got:?}",
                n + 1,
                String::from_utf8_lossy(&data),
            ));
        }
    }
    println!("{cases} cases, each fed 3 ways");
    assert!(cases > 5000);
    assert!(
        failures.is_empty(),
        "{} of {} feedings differ:\n{}",
        failures.len(),
        cases * 3,
        failures[..failures.len().min(400)].join("\n")
    );
}

#[test]
fn the_corpus_covers_every_status() {
    let corpus = include_str!("corpus/requests.txt");
    for status in [
        "X 400|", "X 405|", "X 413|", "X 414|", "X 431|", "X 501|", "X 505|", "M|",
    ] {
        assert!(corpus.contains(status), "{status}");
    }
    // and accepted heads of every framing
    for framing in [" C 1 ", " E 1 ", " L5 1 "] {
        assert!(corpus.contains(framing), "{framing}");
    }
    let _ = run(&whole(b""), Limits::default());
}
