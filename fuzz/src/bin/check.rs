//! `check TARGET PATH...`: run a target on files (or every file of directories) without AFL++,
//! one at a time, and report each that panics or takes over a second: how a crash AFL++ found
//! is reproduced, and how `scripts/fuzz.sh` replays a finished corpus.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().expect("usage: check TARGET PATH...");
    let (_, run) = odin_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let mut files: Vec<PathBuf> = Vec::new();
    for a in args {
        let p = PathBuf::from(a);
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p);
        }
    }
    let (mut bad, mut slowest) = (0, (Duration::ZERO, PathBuf::new()));
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let t = Instant::now();
        let result = std::panic::catch_unwind(|| run(&data));
        let took = t.elapsed();
        if result.is_err() {
            bad += 1;
            eprintln!("check {name}: {} panicked", f.display());
        } else if took > Duration::from_secs(1) {
            bad += 1;
            eprintln!("check {name}: {} took {took:?}", f.display());
        }
        if took > slowest.0 {
            slowest = (took, f.clone());
        }
    }
    println!(
        "check {name}: {} inputs, {bad} failing, slowest {:?} ({})",
        files.len(),
        slowest.0,
        slowest.1.display()
    );
    std::process::exit(i32::from(bad > 0));
}
