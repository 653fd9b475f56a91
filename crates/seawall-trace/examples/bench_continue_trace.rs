//! Rough cost of the per-request step, without a benchmark harness:
//! `cargo run --release -p seawall-trace --example bench_continue_trace`.

use std::hint::black_box;
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use seawall_policy::rng::SplitMix64;
use seawall_trace::{continue_trace, TraceParent, TRACEPARENT, TRACESTATE};

const ROUNDS: u32 = 2_000_000;

fn time(name: &str, mut f: impl FnMut()) {
    for _ in 0..ROUNDS / 10 {
        f(); // warm up
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
    println!("{name:<44} {ns:7.1} ns");
}

fn main() {
    let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut rng = SplitMix64::new(1);

    time("TraceParent::parse", || {
        black_box(TraceParent::parse(black_box(value)));
    });
    time("parse + child + encode", || {
        if let Some(tp) = TraceParent::parse(black_box(value)) {
            black_box(tp.child(&mut rng).encode());
        }
    });

    let mut with_parent = HeaderMap::new();
    with_parent.insert(TRACEPARENT, HeaderValue::from_static(value));
    with_parent.insert("x-request-id", HeaderValue::from_static("abc-123"));
    time("continue_trace: traceparent + request id", || {
        black_box(continue_trace(black_box(&with_parent), &mut rng));
    });

    let mut with_state = with_parent.clone();
    with_state.insert(
        TRACESTATE,
        HeaderValue::from_static("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    );
    time("continue_trace: + tracestate (2 members)", || {
        black_box(continue_trace(black_box(&with_state), &mut rng));
    });

    let empty = HeaderMap::new();
    time("continue_trace: no headers (new trace + id)", || {
        black_box(continue_trace(black_box(&empty), &mut rng));
    });
}
