//! `--hid.replay=FILE`: a laptop controller's answers read from a file instead of a device,
//! for the end-to-end test, the stack's demo and anyone without a Blade. The same answers,
//! built in code, are the fake controller of the unit tests. The format (TOML):
//!
//! ```toml
//! [[laptop]]
//! product = 0x028A            # USB product id (vendor 0x1532); names the model
//! device = "1532:028A@1-8"    # optional; default "1532:<product>@replay<N>"
//!
//! [[laptop.answer]]
//! request = "power_mode"      # a request name: firmware, power_mode, boost_cpu, boost_gpu,
//!                             # fan_1, fan_2, keyboard_brightness, battery_optimizer
//! status = "ok"               # ok, busy, failure, timeout, not_supported, silence
//! data = [0, 1, 1, 0]         # the answer's first argument bytes
//! # Faults, optional: crc = "bad", transaction = 0x1f, command = 0x83 (answer another id),
//! # length = 40 (cut the answer short); or raw = "02 ff 00 ..." (90 recorded bytes, as is).
//! ```
//!
//! Several answers to one request are given in turn, the last one from then on. A request
//! the file does not mention answers "not supported", as a model without it would.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use super::report::{self, answer, parse_request, Get, Request, Status, REPORT_LEN};
use super::transport::{Transport, TransportError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    laptop: Vec<LaptopEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaptopEntry {
    product: u16,
    device: Option<String>,
    #[serde(default)]
    answer: Vec<AnswerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerEntry {
    request: String,
    #[serde(default = "ok")]
    status: String,
    #[serde(default)]
    data: Vec<u8>,
    crc: Option<String>,
    transaction: Option<u8>,
    command: Option<u8>,
    length: Option<usize>,
    raw: Option<String>,
}

fn ok() -> String {
    "ok".into()
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// These bytes, as they are.
    Bytes(Vec<u8>),
    /// No answer at all.
    Silence,
}

/// How to build a [`Reply`] to a request: status and data, and the faults to put in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: Status,
    pub data: Vec<u8>,
    pub bad_crc: bool,
    pub transaction: Option<u8>,
    pub command: Option<u8>,
    pub length: Option<usize>,
}

impl Answer {
    pub fn ok(data: &[u8]) -> Answer {
        Answer::status(Status::Ok, data)
    }

    pub fn status(status: Status, data: &[u8]) -> Answer {
        Answer {
            status,
            data: data.to_vec(),
            bad_crc: false,
            transaction: None,
            command: None,
            length: None,
        }
    }

    /// The bytes a controller would send to `get` asked with `transaction`.
    pub fn reply(&self, get: &Get, transaction: u8) -> Reply {
        let mut r = answer(
            get,
            self.transaction.unwrap_or(transaction),
            self.status,
            &self.data,
        );
        if let Some(id) = self.command {
            r[7] = id;
            r[88] = report::crc(&r);
        }
        if self.bad_crc {
            r[88] ^= 0x5a;
        }
        let n = self.length.unwrap_or(REPORT_LEN).min(REPORT_LEN);
        Reply::Bytes(r[..n].to_vec())
    }
}

/// A laptop's controller as scripted: per request, the replies in turn.
#[derive(Debug, Clone, Default)]
pub struct Script {
    replies: HashMap<&'static str, (Vec<Scripted>, usize)>,
}

#[derive(Debug, Clone)]
enum Scripted {
    Build(Answer),
    Raw(Reply),
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Answer `get` with `answer` (after the answers given before it).
    pub fn on(mut self, get: Get, answer: Answer) -> Script {
        self.push(get, Scripted::Build(answer));
        self
    }

    /// Answer `get` with exactly `reply` (after the answers given before it).
    pub fn raw(mut self, get: Get, reply: Reply) -> Script {
        self.push(get, Scripted::Raw(reply));
        self
    }

    fn push(&mut self, get: Get, s: Scripted) {
        self.replies.entry(get.name()).or_default().0.push(s);
    }

    fn next(&mut self, get: &Get, transaction: u8) -> Reply {
        let Some((list, at)) = self.replies.get_mut(get.name()) else {
            return Answer::status(Status::NotSupported, &[]).reply(get, transaction);
        };
        let i = (*at).min(list.len() - 1);
        *at += 1;
        match &list[i] {
            Scripted::Build(a) => a.reply(get, transaction),
            Scripted::Raw(r) => r.clone(),
        }
    }
}

/// A [`Transport`] that answers from a [`Script`]; what a request was is read back from its
/// bytes, so the replay sees exactly what a device would.
pub struct Replayed {
    script: Script,
    /// Requests received, in order (tests look at them).
    pub received: Vec<[u8; REPORT_LEN]>,
}

impl Replayed {
    pub fn new(script: Script) -> Replayed {
        Replayed {
            script,
            received: Vec::new(),
        }
    }
}

impl Transport for Replayed {
    fn exchange(&mut self, request: &Request) -> Result<Vec<u8>, TransportError> {
        let bytes = request.bytes();
        self.received.push(*bytes);
        let Some(get) = parse_request(bytes) else {
            return Err(TransportError::Io(
                "replay: a request it does not know".into(),
            ));
        };
        match self.script.next(&get, bytes[1]) {
            Reply::Bytes(b) => Ok(b),
            Reply::Silence => Err(TransportError::NoAnswer),
        }
    }

    fn retry_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A laptop in a replay file.
#[derive(Debug, Clone)]
pub struct ReplayLaptop {
    pub product: u16,
    pub device: String,
    pub script: Script,
}

fn hex_bytes(text: &str) -> anyhow::Result<Vec<u8>> {
    text.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).with_context(|| format!("{h:?} is not a hex byte")))
        .collect()
}

fn status(name: &str) -> anyhow::Result<Option<Status>> {
    Ok(Some(match name {
        "ok" => Status::Ok,
        "busy" => Status::Busy,
        "failure" => Status::Failure,
        "timeout" => Status::Timeout,
        "not_supported" => Status::NotSupported,
        "silence" => return Ok(None),
        other => {
            bail!("status {other:?}: one of ok, busy, failure, timeout, not_supported, silence")
        }
    }))
}

/// Parse a replay file's text.
pub fn parse(text: &str) -> anyhow::Result<Vec<ReplayLaptop>> {
    let file: File = toml::from_str(text)?;
    let mut out = Vec::new();
    for (n, l) in file.laptop.into_iter().enumerate() {
        let mut script = Script::new();
        for (i, a) in l.answer.into_iter().enumerate() {
            let at = || format!("laptop {} answer {}", n + 1, i + 1);
            let get = *report::ALL
                .iter()
                .find(|g| g.name() == a.request)
                .with_context(|| {
                    let names: Vec<_> = report::ALL.iter().map(|g| g.name()).collect();
                    format!(
                        "{}: request {:?} is not one of {}",
                        at(),
                        a.request,
                        names.join(", ")
                    )
                })?;
            if let Some(raw) = &a.raw {
                let bytes = hex_bytes(raw).with_context(at)?;
                script = script.raw(get, Reply::Bytes(bytes));
                continue;
            }
            let Some(status) = status(&a.status).with_context(at)? else {
                script = script.raw(get, Reply::Silence);
                continue;
            };
            let bad_crc = match a.crc.as_deref() {
                None | Some("good") => false,
                Some("bad") => true,
                Some(other) => bail!("{}: crc {other:?}: \"good\" or \"bad\"", at()),
            };
            if a.data.len() > 80 {
                bail!("{}: data has {} bytes, at most 80", at(), a.data.len());
            }
            script = script.on(
                get,
                Answer {
                    status,
                    data: a.data,
                    bad_crc,
                    transaction: a.transaction,
                    command: a.command,
                    length: a.length,
                },
            );
        }
        out.push(ReplayLaptop {
            product: l.product,
            device: l
                .device
                .unwrap_or_else(|| format!("1532:{:04X}@replay{}", l.product, n + 1)),
            script,
        });
    }
    Ok(out)
}

/// Read and parse a replay file; the error names the file.
pub fn load(path: &Path) -> anyhow::Result<Vec<ReplayLaptop>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--hid.replay: cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("--hid.replay: {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::report::{decode, encode, Problem, BOOST_CPU, FAN_1, POWER_MODE};
    use super::*;

    fn ask(t: &mut Replayed, get: &Get) -> Result<[u8; 80], Problem> {
        match t.exchange(&encode(get, 0xff)) {
            Ok(bytes) => decode(get, 0xff, &bytes),
            Err(TransportError::NoAnswer) => Err(Problem::NoAnswer),
            Err(TransportError::Io(_)) => Err(Problem::Io),
        }
    }

    #[test]
    fn a_file_with_every_fault() {
        let laptops = parse(
            r#"
            [[laptop]]
            product = 0x028A
            device = "1532:028A@1-8"
            [[laptop.answer]]
            request = "power_mode"
            status = "busy"
            [[laptop.answer]]
            request = "power_mode"
            data = [0, 1, 1, 0]
            [[laptop.answer]]
            request = "fan_1"
            crc = "bad"
            data = [0, 1, 42]
            [[laptop.answer]]
            request = "fan_1"
            transaction = 0x1f
            [[laptop.answer]]
            request = "fan_1"
            command = 0x82
            [[laptop.answer]]
            request = "fan_1"
            length = 40
            [[laptop.answer]]
            request = "fan_1"
            status = "silence"
            [[laptop.answer]]
            request = "boost_cpu"
            raw = "02 ff 00 00 00 03 0d 87 00 01 02"
            "#,
        )
        .unwrap();
        assert_eq!(laptops.len(), 1);
        assert_eq!(laptops[0].device, "1532:028A@1-8");
        let mut t = Replayed::new(laptops[0].script.clone());
        assert_eq!(ask(&mut t, &POWER_MODE), Err(Problem::Busy));
        assert_eq!(&ask(&mut t, &POWER_MODE).unwrap()[..4], &[0, 1, 1, 0]);
        // the last answer repeats
        assert_eq!(&ask(&mut t, &POWER_MODE).unwrap()[..4], &[0, 1, 1, 0]);
        assert_eq!(ask(&mut t, &FAN_1), Err(Problem::BadCrc));
        assert_eq!(ask(&mut t, &FAN_1), Err(Problem::WrongTransaction));
        assert_eq!(ask(&mut t, &FAN_1), Err(Problem::WrongCommand));
        assert_eq!(ask(&mut t, &FAN_1), Err(Problem::ShortRead));
        assert_eq!(ask(&mut t, &FAN_1), Err(Problem::NoAnswer));
        assert_eq!(
            ask(&mut t, &BOOST_CPU),
            Err(Problem::ShortRead),
            "11 raw bytes"
        );
        // not in the file: not supported
        assert_eq!(ask(&mut t, &report::FIRMWARE), Err(Problem::NotSupported));
        assert_eq!(t.received.len(), 10);
        assert!(t.received.iter().all(|r| r[7] & 0x80 != 0));
    }

    #[test]
    fn bad_files_say_where() {
        for (text, want) in [
            ("[[laptop]]\nproduct = 1\n[[laptop.answer]]\nrequest = \"set_mode\"\n", "laptop 1 answer 1: request \"set_mode\" is not one of firmware"),
            ("[[laptop]]\nproduct = 1\n[[laptop.answer]]\nrequest = \"fan_1\"\nstatus = \"great\"\n", "status \"great\""),
            ("[[laptop]]\nproduct = 1\n[[laptop.answer]]\nrequest = \"fan_1\"\nraw = \"zz\"\n", "\"zz\" is not a hex byte"),
            ("[[laptop]]\nproduct = 1\nmystery = 2\n", "unknown field"),
            ("[[laptop]]\nproduct = 70000\n", "product"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(want), "{err} should contain {want}");
        }
        assert!(load(Path::new("/nonexistent/replay.toml"))
            .unwrap_err()
            .to_string()
            .contains("--hid.replay: cannot read /nonexistent/replay.toml"));
    }
}
