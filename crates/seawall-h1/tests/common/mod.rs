//! What the tests share: a connection driver that feeds the codec the way
//! the sidecar will (and the way Python's tests drive `RequestParser`), and
//! deterministic ways to cut input into pieces.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use seawall_h1::{BodyDecoder, BodyEvent, Error, HeadParser, Limits, RequestHead};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Request(Box<RequestHead>),
    Data(Bytes),
    End(HeaderMap),
}

/// One client connection: a head parser, then a body decoder, in turn.
pub struct Conn {
    pub heads: HeadParser,
    pub body: Option<BodyDecoder>,
    keep_alive: bool,
    /// The last request did not allow keep-alive: later bytes are dropped.
    pub closed: bool,
    pub buf: BytesMut,
    pub events: Vec<Event>,
}

impl Conn {
    pub fn new(limits: Limits) -> Self {
        Conn {
            heads: HeadParser::new(limits),
            body: None,
            keep_alive: true,
            closed: false,
            buf: BytesMut::new(),
            events: Vec::new(),
        }
    }

    /// Bytes read from the client: parse all that can be parsed.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        loop {
            if let Some(body) = &mut self.body {
                match body.decode(&mut self.buf)? {
                    Some(BodyEvent::Data(d)) => {
                        assert!(!d.is_empty(), "Data is never empty");
                        match self.events.last_mut() {
                            Some(Event::Data(prev)) => {
                                let mut joined = prev.to_vec();
                                joined.extend_from_slice(&d);
                                *prev = Bytes::from(joined);
                            }
                            _ => self.events.push(Event::Data(d)),
                        }
                    }
                    Some(BodyEvent::End(trailers)) => {
                        assert!(body.is_done());
                        self.events.push(Event::End(trailers));
                        self.body = None;
                        if !self.keep_alive {
                            self.closed = true;
                            self.buf.clear();
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                }
            } else {
                match self.heads.decode(&mut self.buf)? {
                    Some(head) => {
                        self.keep_alive = head.keep_alive;
                        self.body = Some(BodyDecoder::new(head.framing, self.heads.limits()));
                        self.events.push(Event::Request(Box::new(head)));
                    }
                    None => return Ok(()),
                }
            }
        }
    }

    /// The input ended in the middle of a request.
    pub fn pending(&self) -> bool {
        if self.closed {
            return false;
        }
        match &self.body {
            Some(body) => !body.is_done(),
            None => self.heads.eof(&self.buf).is_err(),
        }
    }

    /// The client closed its side.
    pub fn eof(&self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        match &self.body {
            Some(body) => body.eof(),
            None => self.heads.eof(&self.buf),
        }
    }
}

/// Feed `chunks` in order; the events so far and the first error.
pub fn run(chunks: &[Vec<u8>], limits: Limits) -> (Vec<Event>, Result<(), Error>) {
    let mut conn = Conn::new(limits);
    for chunk in chunks {
        if let Err(err) = conn.feed(chunk) {
            return (conn.events, Err(err));
        }
    }
    (conn.events, Ok(()))
}

/// The status a stream is refused with, and the events before.
pub fn refuse(chunks: &[Vec<u8>], limits: Limits) -> (u16, Vec<Event>) {
    match run(chunks, limits) {
        (events, Err(err)) => {
            assert!(!err.reason.is_empty());
            (err.status, events)
        }
        (events, Ok(())) => panic!("accepted: {events:?}"),
    }
}

pub fn whole(data: &[u8]) -> Vec<Vec<u8>> {
    vec![data.to_vec()]
}

pub fn bytewise(data: &[u8]) -> Vec<Vec<u8>> {
    data.iter().map(|&b| vec![b]).collect()
}

pub fn pieces(data: &[u8], size: usize) -> Vec<Vec<u8>> {
    data.chunks(size).map(<[u8]>::to_vec).collect()
}

pub fn split_at(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| data[w[0]..w[1]].to_vec())
        .collect()
}

/// SplitMix64: a small deterministic generator (no proptest here).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `data` cut at up to 8 pseudo-random points, different for each `seed`.
pub fn random_split(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let n = rng.below(9);
    let cuts: Vec<usize> = (0..n).map(|_| rng.below(data.len() + 1)).collect();
    split_at(data, &cuts)
}

/// Whole, byte by byte (in 997-byte pieces past 20 000 bytes), and in
/// `splits` random cuts: every way to feed `data` the tests use.
pub fn feedings(data: &[u8], splits: u64) -> Vec<Vec<Vec<u8>>> {
    let mut all = vec![whole(data)];
    all.push(if data.len() <= 20_000 {
        bytewise(data)
    } else {
        pieces(data, 997)
    });
    for seed in 0..splits {
        all.push(random_split(data, seed));
    }
    all
}
