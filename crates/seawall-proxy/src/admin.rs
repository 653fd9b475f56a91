//! The admin listener: `/ready`, `/metrics`, `/config` and `/clusters`.
//!
//! On its own port (loopback by default), served by the same strict codec.
//! Answers are small and made in memory.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::HeaderValue;
use seawall_h1::ResponseFraming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::{ClusterGauges, Format};
use crate::runtime::Runtime;
use crate::state::State;

/// The metrics page of the current runtime, in this format.
pub fn metrics_page(state: &State, format: Format) -> String {
    let rt = state.runtime();
    state.metrics.render(&gauges(&rt), format)
}

fn gauges(rt: &Runtime) -> Vec<ClusterGauges> {
    rt.clusters()
        .map(|c| ClusterGauges {
            destination: c.name.clone(),
            connections: c.pool.open_connections() as u64,
            pending: c.pool.pending() as u64,
            in_flight: c.in_flight() as u64,
        })
        .collect()
}

/// The `/clusters` document.
pub fn clusters_page(state: &State) -> String {
    let rt = state.runtime();
    let clusters: Vec<serde_json::Value> = rt.clusters().map(|c| c.snapshot()).collect();
    serde_json::to_string_pretty(&serde_json::json!({ "clusters": clusters })).unwrap_or_default()
}

fn answer(
    state: &State,
    method: &http::Method,
    path: &[u8],
    accept: Format,
) -> (u16, &'static str, Vec<u8>) {
    let path = &path[..path.iter().position(|b| *b == b'?').unwrap_or(path.len())];
    if method != http::Method::GET && method != http::Method::HEAD {
        return (405, "text/plain", b"GET only\n".to_vec());
    }
    match path {
        b"/ready" => {
            if state.ready.load(Ordering::Acquire) {
                (200, "text/plain", b"ready\n".to_vec())
            } else {
                (503, "text/plain", b"starting\n".to_vec())
            }
        }
        b"/metrics" => (
            200,
            accept.content_type(),
            metrics_page(state, accept).into_bytes(),
        ),
        b"/config" => {
            let rt = state.runtime();
            let doc = serde_json::json!({
                "service": rt.service,
                "version": rt.spec.config_version,
                "digest": rt.spec.digest,
                "restart_needed": rt.spec.restart_needed,
                "config": rt.spec.config,
            });
            (
                200,
                "application/json",
                serde_json::to_vec_pretty(&doc).unwrap_or_default(),
            )
        }
        b"/clusters" => (200, "application/json", clusters_page(state).into_bytes()),
        _ => (404, "text/plain", b"not found\n".to_vec()),
    }
}

/// Serve one admin connection.
pub async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(4096);
    loop {
        let rt = state.runtime();
        let head = loop {
            match seawall_h1::parse_request_head(&buf, &rt.limits) {
                Ok(Some((head, used))) => {
                    let _ = buf.split_to(used);
                    break head;
                }
                Ok(None) => {}
                Err(e) => {
                    out.clear();
                    seawall_h1::error_response(&e, &mut out);
                    let _ = stream.write_all(&out).await;
                    return;
                }
            }
            let idle = Duration::from_secs_f64(rt.spec.limits.idle_timeout);
            match tokio::time::timeout(idle, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        };
        if !matches!(head.framing, seawall_h1::Framing::Empty) {
            return; // the admin endpoints take no body
        }
        let accept = head
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .map(|v| Format::accepted(v.as_bytes()))
            .find(|f| *f == Format::OpenMetrics)
            .unwrap_or(Format::Prometheus);
        let (status, ctype, body) = answer(&state, &head.method, &head.path, accept);
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        out.clear();
        let framing = ResponseFraming::Length(body.len() as u64);
        let via = Some(seawall_h1::VIA);
        if seawall_h1::encode_response_head(
            status,
            None,
            &headers,
            framing,
            head.keep_alive,
            via,
            &mut out,
        )
        .is_err()
        {
            return;
        }
        if head.method != http::Method::HEAD {
            out.extend_from_slice(&body);
        }
        if stream.write_all(&out).await.is_err() || !head.keep_alive {
            return;
        }
    }
}
