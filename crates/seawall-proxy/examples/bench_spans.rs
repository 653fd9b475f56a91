//! What recording and encoding a request's spans costs, per request:
//! `cargo run --release -p seawall-proxy --example bench_spans`.
//!
//! An outbound request as the sidecar records it at 100% sampling: the hop's
//! span with its attributes, one attempt span, a finish, and its share of
//! encoding a batch of 512 spans as OTLP protobuf.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use seawall_otlp::Scope;
use seawall_policy::rng::SplitMix64;
use seawall_proxy::export::Queue;
use seawall_proxy::metrics::Metrics;
use seawall_proxy::spans::{self, RequestSpan, Tracer};

fn main() {
    let n = 200_000;
    let (queue, mut rx) = Queue::new(1 << 20, Arc::new(Metrics::new()));
    let tracer = Arc::new(Tracer::new(queue, 1.7e9, 0.0));
    let mut rng = SplitMix64::new(7);
    let headers = HeaderMap::new();
    let started = Instant::now();
    for k in 0..n {
        let trace = seawall_trace::continue_trace(&headers, &mut rng);
        let span = RequestSpan::start(Some(&tracer), &trace, false, k as f64 * 1e-5, "GET");
        span.attributes(|a| {
            a.push(spans::s("http.request.method", "GET"));
            a.push(spans::s("url.path", "/checkout"));
            a.push(spans::s("seawall.service", "gateway"));
            a.push(spans::s("client.address", "127.0.0.1"));
        });
        span.name(|| "GET default".to_owned());
        span.attributes(|a| {
            a.push(spans::s("seawall.destination", "orders"));
            a.push(spans::s("seawall.route", "default"));
            a.push(spans::s("server.address", "orders"));
        });
        let attempt = span.attempt(k as f64 * 1e-5, || {
            vec![
                spans::i("seawall.attempt", 1),
                spans::s("seawall.endpoint", "127.0.0.1:8080"),
                spans::s("server.address", "127.0.0.1"),
                spans::i("server.port", 8080),
            ]
        });
        span.attempt_ended(attempt, k as f64 * 1e-5 + 1e-4, Some(200), None);
        span.attributes(|a| {
            a.push(spans::i("http.request.body.size", 0));
            a.push(spans::i("http.response.body.size", 13));
        });
        span.finish(k as f64 * 1e-5 + 2e-4, 200, None);
    }
    let recorded = started.elapsed();
    let all = rx.try_recv().expect("spans");
    let count = all.len();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut chunks = all.into_iter().peekable();
    while chunks.peek().is_some() {
        let batch: Vec<_> = chunks.by_ref().take(512).collect();
        let resource = [seawall_otlp::KeyValue::str("service.name", "gateway")];
        out.clear();
        seawall_otlp::stream::export_request(
            &resource,
            &Scope::new("seawall-sidecar", "0.1.0"),
            &batch,
            &mut out,
        );
        bytes += out.len();
        black_box(&out);
    }
    let encoded = started.elapsed();
    println!(
        "record: {:.0} ns per request; encode: {:.0} ns per request ({} spans, {:.0} bytes per span)",
        recorded.as_nanos() as f64 / n as f64,
        encoded.as_nanos() as f64 / n as f64,
        count,
        bytes as f64 / count as f64
    );
}
