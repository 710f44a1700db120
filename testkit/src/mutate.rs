//! Deterministic mutations of real inputs, for the parsers' property tests
//! (`exporters/*/tests/properties.rs`), and the bounds every parse of them must keep.
//!
//! [`variants`] turns one real input (a fixture file, an nvidia-smi capture section) into a
//! fixed list of broken ones: empty, cut at every line end and at the places inside lines where
//! the kind of byte changes, lines removed or doubled, bits flipped, numbers replaced by huge or
//! odd ones, invalid UTF-8 and NUL bytes put in, the whole repeated and one very long line. The
//! pseudo-random choices come from a fixed seed, so a failure names a variant that the next run
//! makes again. [`bounded`] runs one parse and fails, naming the variant, when it panics, runs
//! longer than [`Limits::time`] or allocates more than [`Limits`] allows; the allocation bound
//! needs [`CountingAlloc`] as the test binary's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A small fixed-seed generator (splitmix64): the same seed gives the same variants.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// One mutated input and how it was made.
#[derive(Debug, Clone)]
pub struct Variant {
    pub what: String,
    pub bytes: Vec<u8>,
}

impl Variant {
    fn new(what: impl Into<String>, bytes: Vec<u8>) -> Variant {
        Variant {
            what: what.into(),
            bytes,
        }
    }
}

/// Numbers put in place of a number of the input.
pub const ODD_NUMBERS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "-9223372036854775809",
    "-1",
    "0",
    "1e309",
    "-1e309",
    "NaN",
    "inf",
    "0x",
    "ffffffffffffffffffffffff",
    "4294967296",
];

/// The kind of a byte, for cutting where one kind of text turns into another.
fn class(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => 0,
        b'a'..=b'z' | b'A'..=b'Z' | b'_' => 1,
        b' ' | b'\t' => 2,
        b'\n' | b'\r' => 3,
        0x80.. => 4,
        _ => 5,
    }
}

/// Byte offsets just after each `\n`, and the length when the input does not end with one.
pub fn line_ends(input: &[u8]) -> Vec<usize> {
    let mut ends: Vec<usize> = input
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    if input.last().is_some_and(|&b| b != b'\n') {
        ends.push(input.len());
    }
    ends
}

/// Pick at most `n` of `items`, spread evenly, keeping the first and the last.
fn spread<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n || n < 2 {
        return items.iter().take(n).cloned().collect();
    }
    (0..n)
        .map(|k| items[k * (items.len() - 1) / (n - 1)].clone())
        .collect()
}

/// The variants of `input` (see the module documentation), at most about `budget` of them.
pub fn variants(input: &[u8], seed: u64, budget: usize) -> Vec<Variant> {
    let mut rng = Rng::new(seed);
    let mut out = vec![
        Variant::new("unchanged", input.to_vec()),
        Variant::new("empty", Vec::new()),
        Variant::new("one byte", input.iter().take(1).copied().collect()),
        Variant::new("only newlines", vec![b'\n'; 3]),
    ];
    let per_kind = (budget / 8).max(4);
    let ends = line_ends(input);
    let lines: Vec<(usize, usize)> = ends
        .iter()
        .scan(0, |start, &end| {
            let l = (*start, end);
            *start = end;
            Some(l)
        })
        .collect();

    // Truncation: at line ends, and where the kind of byte changes inside a line.
    for &end in &spread(&ends, per_kind) {
        out.push(Variant::new(
            format!("cut after byte {end} (a line end)"),
            input[..end].to_vec(),
        ));
    }
    let changes: Vec<usize> = (1..input.len())
        .filter(|&i| class(input[i]) != class(input[i - 1]) && class(input[i - 1]) != 3)
        .collect();
    for &at in &spread(&changes, per_kind * 2) {
        out.push(Variant::new(
            format!("cut at byte {at} (inside a line)"),
            input[..at].to_vec(),
        ));
    }

    // Lines removed and doubled.
    for &(s, e) in &spread(&lines, per_kind / 2) {
        let mut removed = input[..s].to_vec();
        removed.extend_from_slice(&input[e..]);
        out.push(Variant::new(format!("line at {s} removed"), removed));
        let mut doubled = input[..e].to_vec();
        doubled.extend_from_slice(&input[s..]);
        out.push(Variant::new(format!("line at {s} doubled"), doubled));
    }

    if !input.is_empty() {
        // Bit flips.
        for k in 0..per_kind {
            let mut b = input.to_vec();
            let flips = [1, 2, 8][k % 3];
            let mut at = Vec::new();
            for _ in 0..flips {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
                at.push(i);
            }
            out.push(Variant::new(format!("bits flipped at {at:?}"), b));
        }

        // Numbers replaced by odd ones.
        let numbers: Vec<(usize, usize)> = {
            let mut v = Vec::new();
            let mut i = 0;
            while i < input.len() {
                if input[i].is_ascii_digit() {
                    let s = i;
                    while i < input.len() && input[i].is_ascii_digit() {
                        i += 1;
                    }
                    v.push((s, i));
                } else {
                    i += 1;
                }
            }
            v
        };
        for _ in 0..per_kind.min(numbers.len()) {
            let (s, e) = numbers[rng.below(numbers.len())];
            let odd = ODD_NUMBERS[rng.below(ODD_NUMBERS.len())];
            let mut b = input[..s].to_vec();
            b.extend_from_slice(odd.as_bytes());
            b.extend_from_slice(&input[e..]);
            out.push(Variant::new(format!("number at {s} is {odd}"), b));
        }
        // Every number the largest u64 (parses, then overflows whatever it is multiplied
        // by), and every number too large for any integer type.
        for huge in ["18446744073709551615", "99999999999999999999999"] {
            let mut every = Vec::with_capacity(input.len() * 2);
            let mut last = 0;
            for &(s, e) in &numbers {
                every.extend_from_slice(&input[last..s]);
                every.extend_from_slice(huge.as_bytes());
                last = e;
            }
            every.extend_from_slice(&input[last..]);
            out.push(Variant::new(format!("every number {huge}"), every));
        }

        // Invalid UTF-8, NUL, CR.
        for (what, bytes) in [
            ("invalid UTF-8", &[0xff, 0xfe][..]),
            ("a lone continuation byte", &[0x80][..]),
            ("a cut multi-byte character", &[0xe2, 0x82][..]),
            ("NUL", &[0][..]),
            ("CR", &[b'\r'][..]),
        ] {
            for _ in 0..2 {
                let i = rng.below(input.len() + 1);
                let mut b = input[..i].to_vec();
                b.extend_from_slice(bytes);
                b.extend_from_slice(&input[i..]);
                out.push(Variant::new(format!("{what} at {i}"), b));
            }
        }
        out.push(Variant::new(
            "CRLF line ends",
            input
                .iter()
                .flat_map(|&b| {
                    if b == b'\n' {
                        vec![b'\r', b'\n']
                    } else {
                        vec![b]
                    }
                })
                .collect(),
        ));

        // Size: the whole repeated, one long line.
        let times = (1 << 20) / input.len().max(1);
        out.push(Variant::new(
            format!("repeated {} times", times.clamp(2, 50)),
            input.repeat(times.clamp(2, 50)),
        ));
    }
    let mut long = input.to_vec();
    long.extend(std::iter::repeat(b'7').take(256 * 1024));
    long.push(b'\n');
    out.push(Variant::new("a 256 KiB line of digits appended", long));
    out
}

/// How much a parse may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time of one parse (a debug build on a busy machine: generous).
    pub time: Duration,
    /// Allocated bytes live at once, at most this many per input byte ...
    pub bytes_per_input_byte: usize,
    /// ... plus this many.
    pub bytes_fixed: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            time: Duration::from_secs(5),
            bytes_per_input_byte: 64,
            bytes_fixed: 16 << 20,
        }
    }
}

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // `try_with`: the thread may be tearing its locals down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

/// The system allocator, counting the bytes each thread has live and their peak, for
/// [`bounded`]'s allocation bound. Install it in a test binary with
/// `#[global_allocator] static ALLOC: odin_testkit::mutate::CountingAlloc = CountingAlloc;`.
pub struct CountingAlloc;

// SAFETY: every call is passed on to `System` unchanged; the counting touches only
// thread-local integers and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// The peak of bytes live on this thread while `f` ran, above what was live before; `None`
/// when [`CountingAlloc`] is not the global allocator.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let probe = Box::new(0u64);
    let counting = LIVE.with(Cell::get) != start;
    drop(probe);
    let r = f();
    let peak = PEAK.with(Cell::get) - start;
    (r, counting.then_some(peak.max(0) as usize))
}

/// The first bytes of an input, escaped, for a failure message.
pub fn excerpt(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes.iter().take(160) {
        let _ = write!(s, "{}", std::ascii::escape_default(*b));
    }
    if bytes.len() > 160 {
        s.push_str("...");
    }
    s
}

/// Run `f` on the variant's bytes; fail the test, naming `label` and the variant, when it
/// panics, takes longer than `limits.time`, or (with [`CountingAlloc`] installed) has more
/// bytes live at once than the limits allow for the input's size.
pub fn bounded<R>(label: &str, v: &Variant, limits: Limits, f: impl FnOnce(&[u8]) -> R) -> R {
    let t = Instant::now();
    let (result, peak) = peak_during(|| catch_unwind(AssertUnwindSafe(|| f(&v.bytes))));
    let took = t.elapsed();
    let about = || {
        format!(
            "{label}, variant \"{}\" ({} bytes: \"{}\")",
            v.what,
            v.bytes.len(),
            excerpt(&v.bytes)
        )
    };
    let r = match result {
        Ok(r) => r,
        Err(_) => panic!("{} panicked", about()),
    };
    assert!(took <= limits.time, "{} took {took:?}", about());
    if let Some(peak) = peak {
        let allowed = v.bytes.len() * limits.bytes_per_input_byte + limits.bytes_fixed;
        assert!(
            peak <= allowed,
            "{} had {peak} bytes allocated at once (allowed {allowed})",
            about()
        );
    }
    r
}

/// Every gauge and counter value a collector wrote is a finite number.
pub fn assert_finite(sink: &odin_common::Sink, label: &str) {
    for f in sink.families() {
        for m in f.get_metric() {
            let v = match f.get_field_type() {
                prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                _ => m.get_gauge().get_value(),
            };
            assert!(v.is_finite(), "{label}: {} has the value {v}", f.name());
        }
    }
}

/// The shared folder (`$ODIN_SHARED_DIR`, else `../shared` next to the repository root
/// `repo`), if it exists: where the nvidia-smi captures are read from at test time.
pub fn shared_dir(repo: &std::path::Path) -> Option<std::path::PathBuf> {
    std::env::var_os("ODIN_SHARED_DIR")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([repo.join("../shared")])
        .find(|d| d.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_deterministic_and_varied() {
        let input = b"eth0: 1 2 3\nlo: 4 5 6\n";
        let a = variants(input, 7, 40);
        let b = variants(input, 7, 40);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.bytes == y.bytes));
        assert!(a.iter().any(|v| v.bytes.is_empty()));
        assert!(a.iter().any(|v| std::str::from_utf8(&v.bytes).is_err()));
        assert!(a.iter().any(|v| v.what.contains("inside a line")));
        assert_eq!(line_ends(input), vec![12, 22]);
    }

    #[test]
    fn bounded_names_the_variant_of_a_panic() {
        let v = Variant::new("x", b"abc".to_vec());
        let r = catch_unwind(|| bounded("t", &v, Limits::default(), |_| panic!("boom")));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("variant \"x\""), "{msg}");
    }
}
