//! Property tests of what razer-exporter reads from outside: the laptop controller's 90-byte
//! answers (`hid::report::decode`, and a controller read fed them), the `--hid.replay` file
//! (`hid::replay::parse`, then the collector on its laptops) and openrazer's sysfs attributes
//! (the `openrazer` collector on the desk fixture with one attribute at a time mutated), with
//! `odin_testkit::mutate`: no panic, bounded time and memory, finite values, and an answer
//! accepted only when it is whole and consistent. The coverage-guided counterparts are
//! `fuzz/` targets `hid_report`, `hid_replay` and `sysfs_attr`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use odin_common::{Collector, Sink};
use odin_testkit::mutate::{assert_finite, bounded, variants, CountingAlloc, Limits, Rng};
use razer_exporter::collectors::hid::{Hid, Source};
use razer_exporter::collectors::openrazer::{parse_dpi, OpenRazer};
use razer_exporter::hid::replay::parse;
use razer_exporter::hid::report::{answer, crc, decode, Request, Status, ALL, REPORT_LEN};
use razer_exporter::hid::transport::{Transport, TransportError};
use razer_exporter::hid::Controller;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn controller_answers_survive_mutations() {
    for (i, get) in ALL.iter().enumerate() {
        let good = answer(get, 0xff, Status::Ok, &[1, 2, 3, 4]);
        assert_eq!(
            decode(get, 0xff, &good).map(|a| a[..4].to_vec()),
            Ok(vec![1, 2, 3, 4])
        );
        for v in variants(&good, 0x6869_6400 + i as u64, 64) {
            bounded(get.name(), &v, Limits::default(), |b| {
                if let Ok(args) = decode(get, 0xff, b) {
                    // Accepted: whole, its CRC right, the request echoed, status OK.
                    let r: &[u8; REPORT_LEN] = b.try_into().expect("90 bytes");
                    assert_eq!(r[88], crc(r));
                    assert_eq!(
                        (r[0], r[1], r[6], r[7]),
                        (0x02, 0xff, get.class(), get.id())
                    );
                    assert_eq!(&args[..], &r[8..88]);
                }
            });
        }
    }
}

/// A device that answers each request with the next of a list of byte strings.
struct Scripted(Vec<Vec<u8>>);

impl Transport for Scripted {
    fn exchange(&mut self, _: &Request) -> Result<Vec<u8>, TransportError> {
        if self.0.is_empty() {
            return Err(TransportError::NoAnswer);
        }
        Ok(self.0.remove(0))
    }

    fn retry_delay(&self) -> Duration {
        Duration::ZERO
    }
}

/// A controller read on answers with random faults: every value it reports is in range, and
/// it never sends more than three attempts per request.
#[test]
fn a_controller_read_on_broken_answers_stays_in_range() {
    let mut rng = Rng::new(0x7261_7a72);
    for round in 0..400 {
        let answers: Vec<Vec<u8>> = ALL
            .iter()
            .map(|g| {
                let data: Vec<u8> = (0..8).map(|_| rng.next_u64() as u8).collect();
                let status = Status::from_byte((rng.below(8)) as u8);
                let mut a = answer(g, 0xff, status, &data).to_vec();
                match rng.below(6) {
                    0 => a.truncate(rng.below(REPORT_LEN)),
                    1 => a[rng.below(REPORT_LEN)] ^= 1 << rng.below(8),
                    2 => a.extend_from_slice(&[0; 3]),
                    _ => {}
                }
                a
            })
            .collect();
        let v = odin_testkit::mutate::Variant {
            what: format!("round {round}"),
            bytes: answers.concat(),
        };
        bounded("controller", &v, Limits::default(), |_| {
            let mut c = Controller::new(Box::new(Scripted(answers.clone())));
            let r = c.read();
            assert!(r.fan_rpm.iter().flatten().all(|&rpm| rpm <= 25_500));
            assert!(r.optimizer.map_or(true, |(_, t)| t <= 127));
            assert!(c.requests <= ALL.len() as u64 * 3);
        });
    }
}

#[test]
fn replay_files_survive_mutations() {
    let demo = fs::read(crate_dir().join("demo/blade-15.toml")).unwrap();
    assert_eq!(parse(std::str::from_utf8(&demo).unwrap()).unwrap().len(), 1);
    let ctx = odin_testkit::live_context();
    for v in variants(&demo, 0x7265_706c, 96) {
        bounded("demo/blade-15.toml", &v, Limits::default(), |b| {
            let Ok(text) = std::str::from_utf8(b) else {
                return;
            };
            let Ok(laptops) = parse(text) else { return };
            let hid = Hid::new(
                Source::Replay(laptops),
                Duration::from_secs(30),
                Duration::from_secs(10),
            );
            for _ in 0..2 {
                let mut sink = Sink::new("razer");
                let _ = hid.collect(&ctx, &mut sink);
                assert_finite(&sink, "hid replay");
            }
        });
    }
}

#[test]
fn openrazer_attributes_survive_mutations() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("desk");
    odin_testkit::copy_tree(&crate_dir().join("tests/fixtures/desk"), &root);
    let ctx = odin_testkit::fixture_context(&root);
    let o = OpenRazer::new(Duration::from_secs(30), Duration::from_secs(10));
    // The desk fixture holds three malformed attributes on purpose (tests/binary.rs).
    let mut sink = Sink::new("razer");
    o.collect(&ctx, &mut sink).unwrap();
    assert_eq!(sink.item_errors().len(), 3, "{:?}", sink.item_errors());
    let files = odin_testkit::files_under(&root.join("sys"));
    for (i, path) in files.iter().enumerate() {
        let original = fs::read(path).unwrap();
        let label = path.strip_prefix(&root).unwrap().display().to_string();
        for v in variants(&original, 0x6f72_0000 + i as u64, 8) {
            bounded(&label, &v, Limits::default(), |b| {
                fs::write(path, b).unwrap();
                let mut sink = Sink::new("razer");
                let _ = o.collect(&ctx, &mut sink);
                assert_finite(&sink, &label);
                let _ = razer_exporter::hid::find(&ctx.sysfs, Path::new("/nonexistent"));
                let _ = parse_dpi(&String::from_utf8_lossy(b));
            });
        }
        fs::write(path, &original).unwrap();
    }
}
