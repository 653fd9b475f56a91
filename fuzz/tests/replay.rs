//! Every seed and every fixed crash, through its target's check, on stable
//! (`cargo test` here, run by `make fuzz-check`). A crash libFuzzer finds goes to
//! `regressions/<target>/` once fixed (docs/proxy/fuzzing.md).
use std::path::Path;

fn replay(kind: &str) -> usize {
    let mut count = 0;
    for target in seawall_fuzz::TARGETS {
        let check = seawall_fuzz::check_of(target).expect("a target");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(kind)
            .join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.expect("an entry").path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("readable");
            eprintln!("{}", path.display());
            check(&data);
            count += 1;
        }
    }
    count
}

#[test]
fn every_seed_passes() {
    assert!(replay("seeds") > 0, "no seeds: run fuzz/seeds/generate.py");
}

#[test]
fn every_fixed_crash_passes() {
    replay("regressions");
}
