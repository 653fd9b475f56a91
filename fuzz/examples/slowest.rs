//! The slowest inputs of a corpus, through a target's check (natively, no
//! sanitizer): where a target's executions per second go.
//!
//!     cargo run --release --example slowest -- corpus/spec_json spec_json
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(target)) = (args.next(), args.next()) else {
        eprintln!("usage: slowest CORPUS_DIR TARGET");
        std::process::exit(2);
    };
    let check = seawall_fuzz::check_of(&target).expect("a target name");
    let mut times: Vec<(Duration, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("a corpus directory") {
        let path = entry.expect("an entry").path();
        let data = std::fs::read(&path).expect("readable");
        let start = Instant::now();
        check(&data);
        times.push((start.elapsed(), path.display().to_string()));
    }
    let total: Duration = times.iter().map(|t| t.0).sum();
    times.sort();
    println!("{} inputs in {total:?}", times.len());
    for (took, path) in times.iter().rev().take(10) {
        println!("{took:>12.3?}  {path}");
    }
}
