//! Razer's 90-byte control report, and the only requests this exporter can build: GETs.
//!
//! ```text
//! byte  0      status            (0x00 in a request; the device's answer status in a reply)
//! byte  1      transaction id    (echoed by the device)
//! bytes 2-3    remaining packets (big-endian; 0 for a single report)
//! byte  4      protocol type     (0)
//! byte  5      data size         (number of argument bytes that matter)
//! byte  6      command class
//! byte  7      command id        (bit 7 set: a GET, the device answers with the value)
//! bytes 8-87   80 argument bytes
//! byte  88     CRC: XOR of bytes 2 to 87
//! byte  89     reserved (0)
//! ```
//!
//! The layout and the command ids are openrazer's (`razercommon.h`, `razerchromacommon.c`),
//! checked against its driver source. **Read only**: a [`Get`] can only be one of the
//! constants below, each checked at compile time to have bit 7 of its command id set, and
//! [`encode`] is the one function that turns a request into bytes for a transport. A SET
//! (bit 7 clear) cannot be built from outside this module:
//!
//! ```compile_fail
//! // The fields and the constructor are private: no other code can make a SET.
//! let set = razer_exporter::hid::report::Get { class: 0x0d, id: 0x02, args: [0, 1, 4, 0], len: 3, size: 4, name: "x" };
//! ```
//!
//! ```compile_fail
//! let set = razer_exporter::hid::report::Get::new(0x0d, 0x02, 4, &[0, 1, 4], "x");
//! ```
//!
//! ```compile_fail
//! // Transports take a Request, which only encode() makes.
//! let set = razer_exporter::hid::report::Request([0u8; 90]);
//! ```

/// Length of a report without the HID report-number byte.
pub const REPORT_LEN: usize = 90;

/// Transaction id this exporter uses. openrazer uses 0xFF for every Blade since 2016.
pub const TRANSACTION_ID: u8 = 0xff;

/// A GET request: command class, command id (bit 7 set), the leading argument bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Get {
    class: u8,
    id: u8,
    args: [u8; 4],
    len: u8,
    size: u8,
    name: &'static str,
}

impl Get {
    /// Private: the constants below are every request there is. Fails to compile (in a
    /// `const`) or panics when `id` lacks bit 7, i.e. would be a SET. `size` is the data size
    /// byte openrazer sends with the command (the length of the answer's data).
    const fn new(class: u8, id: u8, size: u8, args: &[u8], name: &'static str) -> Get {
        assert!(id & 0x80 != 0, "a GET has bit 7 of its command id set");
        assert!(args.len() <= 4 && args.len() <= size as usize);
        let mut a = [0u8; 4];
        let mut i = 0;
        while i < args.len() {
            a[i] = args[i];
            i += 1;
        }
        Get {
            class,
            id,
            args: a,
            len: args.len() as u8,
            size,
            name,
        }
    }

    pub fn class(&self) -> u8 {
        self.class
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// The data size byte of the request.
    pub fn size(&self) -> u8 {
        self.size
    }

    /// The argument bytes sent (the rest of the 80 are zero).
    pub fn args(&self) -> &[u8] {
        &self.args[..self.len as usize]
    }

    /// Short name for logs, `/health` and the replay file (`power_mode_1`).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Firmware version: answer bytes 0 (major) and 1 (minor). Class 0x00, id 0x81.
pub const FIRMWARE: Get = Get::new(0x00, 0x81, 2, &[], "firmware");
/// Power mode, asked of fan zone 1: args `[0, zone]`; answer byte 2 the mode, byte 3 the fan
/// mode.
pub const POWER_MODE: Get = Get::new(0x0d, 0x82, 4, &[0, 1], "power_mode");
/// Boost level of the CPU (arg 1) and the GPU (arg 2): answer byte 2.
pub const BOOST_CPU: Get = Get::new(0x0d, 0x87, 3, &[0, 1], "boost_cpu");
pub const BOOST_GPU: Get = Get::new(0x0d, 0x87, 3, &[0, 2], "boost_gpu");
/// Fan speed the controller holds in fan zone 1 and 2: answer byte 2 × 100 rpm, 0 = automatic.
pub const FAN_1: Get = Get::new(0x0d, 0x81, 3, &[0, 1], "fan_1");
pub const FAN_2: Get = Get::new(0x0d, 0x81, 3, &[0, 2], "fan_2");
/// Keyboard backlight brightness of a Blade (arg 1: the backlight LED): answer byte 1, 0-255.
pub const KEYBOARD_BRIGHTNESS: Get = Get::new(0x0e, 0x84, 2, &[1], "keyboard_brightness");
/// Battery health optimizer: answer byte 0, bit 7 on/off, low 7 bits the threshold in %.
pub const BATTERY_OPTIMIZER: Get = Get::new(0x07, 0x92, 1, &[], "battery_optimizer");

/// Every request the exporter sends, in the order one read sends them.
pub const ALL: &[Get] = &[
    FIRMWARE,
    POWER_MODE,
    BOOST_CPU,
    BOOST_GPU,
    FAN_1,
    FAN_2,
    KEYBOARD_BRIGHTNESS,
    BATTERY_OPTIMIZER,
];

/// The bytes of a GET request, made only by [`encode`] (the field is private): what every
/// transport takes, so that nothing but a [`Get`] can reach a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request([u8; REPORT_LEN]);

impl Request {
    pub fn bytes(&self) -> &[u8; REPORT_LEN] {
        &self.0
    }
}

/// XOR of bytes 2 to 87, Razer's checksum.
pub fn crc(report: &[u8; REPORT_LEN]) -> u8 {
    report[2..88].iter().fold(0, |acc, b| acc ^ b)
}

/// The request's 90 bytes. The one place a request becomes bytes: the transports take only
/// this output, so only GETs ever reach a device.
pub fn encode(get: &Get, transaction: u8) -> Request {
    // Unreachable for a `Get` from this module; kept so that a future constructor cannot
    // slip a SET through.
    assert!(get.id & 0x80 != 0, "refusing to encode a SET command");
    let mut r = [0u8; REPORT_LEN];
    r[1] = transaction;
    r[5] = get.size;
    r[6] = get.class;
    r[7] = get.id;
    r[8..8 + get.len as usize].copy_from_slice(get.args());
    r[88] = crc(&r);
    Request(r)
}

/// A device's status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    New,
    Busy,
    Ok,
    Failure,
    Timeout,
    NotSupported,
    Other(u8),
}

impl Status {
    pub fn from_byte(b: u8) -> Status {
        match b {
            0x00 => Status::New,
            0x01 => Status::Busy,
            0x02 => Status::Ok,
            0x03 => Status::Failure,
            0x04 => Status::Timeout,
            0x05 => Status::NotSupported,
            other => Status::Other(other),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            Status::New => 0x00,
            Status::Busy => 0x01,
            Status::Ok => 0x02,
            Status::Failure => 0x03,
            Status::Timeout => 0x04,
            Status::NotSupported => 0x05,
            Status::Other(b) => b,
        }
    }
}

/// Why an answer was not used: the `kind` label of `razer_hid_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Problem {
    /// Status 0x01 (after the retries).
    Busy,
    /// Status 0x03, or a status byte this exporter does not know.
    Failure,
    /// Status 0x04 (after the retries).
    Timeout,
    /// Status 0x05: this model has no such command (probed once, then left out).
    NotSupported,
    BadCrc,
    WrongTransaction,
    /// An answer to another command class or id.
    WrongCommand,
    /// Fewer than 90 bytes came back.
    ShortRead,
    /// Nothing came back in time (or status 0x00: the request was never processed).
    NoAnswer,
    /// The transport failed (an I/O error other than a timeout).
    Io,
}

impl Problem {
    /// Every kind, in label order.
    pub const ALL: [Problem; 10] = [
        Problem::Busy,
        Problem::Failure,
        Problem::Timeout,
        Problem::NotSupported,
        Problem::BadCrc,
        Problem::WrongTransaction,
        Problem::WrongCommand,
        Problem::ShortRead,
        Problem::NoAnswer,
        Problem::Io,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            Problem::Busy => "busy",
            Problem::Failure => "failure",
            Problem::Timeout => "timeout",
            Problem::NotSupported => "not_supported",
            Problem::BadCrc => "bad_crc",
            Problem::WrongTransaction => "wrong_transaction",
            Problem::WrongCommand => "wrong_command",
            Problem::ShortRead => "short_read",
            Problem::NoAnswer => "no_answer",
            Problem::Io => "io",
        }
    }

    /// Worth asking again at once (the device said so).
    pub fn retry(self) -> bool {
        matches!(self, Problem::Busy | Problem::Timeout)
    }
}

/// Check an answer to `get` sent with `transaction`; the 80 argument bytes when it is good.
/// The checks, in order: length, CRC, transaction id, command, status.
pub fn decode(get: &Get, transaction: u8, answer: &[u8]) -> Result<[u8; 80], Problem> {
    let Ok(r) = <&[u8; REPORT_LEN]>::try_from(answer) else {
        return Err(if answer.len() < REPORT_LEN {
            Problem::ShortRead
        } else {
            Problem::Io
        });
    };
    if Status::from_byte(r[0]) == Status::New {
        return Err(Problem::NoAnswer);
    }
    if r[88] != crc(r) {
        return Err(Problem::BadCrc);
    }
    if r[1] != transaction {
        return Err(Problem::WrongTransaction);
    }
    if r[6] != get.class || r[7] != get.id {
        return Err(Problem::WrongCommand);
    }
    match Status::from_byte(r[0]) {
        Status::Ok => {}
        Status::Busy => return Err(Problem::Busy),
        Status::Timeout => return Err(Problem::Timeout),
        Status::NotSupported => return Err(Problem::NotSupported),
        Status::Failure | Status::Other(_) | Status::New => return Err(Problem::Failure),
    }
    let mut args = [0u8; 80];
    args.copy_from_slice(&r[8..88]);
    Ok(args)
}

/// The answer a device gives: `status`, the echoed header of `get`, `data` as the first
/// argument bytes, a correct CRC. What the fake controller and the replay build.
pub fn answer(get: &Get, transaction: u8, status: Status, data: &[u8]) -> [u8; REPORT_LEN] {
    let mut r = [0u8; REPORT_LEN];
    r[0] = status.byte();
    r[1] = transaction;
    r[5] = get.size.max(data.len().min(80) as u8);
    r[6] = get.class;
    r[7] = get.id;
    let n = data.len().min(80);
    r[8..8 + n].copy_from_slice(&data[..n]);
    r[88] = crc(&r);
    r
}

/// Find the [`Get`] that `request` (90 bytes from [`encode`]) is, if it is one of [`ALL`]:
/// how a fake controller knows what it was asked.
pub fn parse_request(request: &[u8]) -> Option<Get> {
    let r = <&[u8; REPORT_LEN]>::try_from(request).ok()?;
    ALL.iter()
        .find(|g| r[6] == g.class && r[7] == g.id && r[8..8 + g.len as usize] == *g.args())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_a_get_and_encodes_as_one() {
        assert_eq!(ALL.len(), 8);
        for g in ALL {
            assert_ne!(g.id() & 0x80, 0, "{}", g.name());
            let r = *encode(g, TRANSACTION_ID).bytes();
            assert_ne!(r[7] & 0x80, 0, "{}", g.name());
            assert_eq!(r[0], 0, "a request carries status 0");
            assert_eq!(r[1], TRANSACTION_ID);
            assert_eq!(&r[2..5], &[0, 0, 0]);
            assert_eq!(r[5], g.size());
            assert!(r[8 + g.args().len()..88].iter().all(|&b| b == 0));
            assert_eq!(r[88], crc(&r));
            assert_eq!(r[89], 0);
            assert_eq!(parse_request(&r), Some(*g));
            assert_eq!(parse_request(&r[..89]), None);
        }
    }

    #[test]
    #[should_panic(expected = "bit 7")]
    fn a_set_cannot_be_made() {
        // The constructor is private to this module; even here it refuses a SET.
        let _ = Get::new(0x0d, 0x02, 4, &[0, 1, 4], "set_power_mode");
    }

    #[test]
    fn crc_is_the_xor_of_bytes_2_to_87() {
        // openrazer's request for the firmware version with transaction 0xff: class 0x00,
        // id 0x81, size 2 → CRC = 0x02 ^ 0x81 = 0x83.
        let r = encode(&FIRMWARE, 0xff);
        assert_eq!(r.bytes()[88], 0x83);
        let mut x = [0u8; REPORT_LEN];
        x[2] = 0x12;
        x[87] = 0x34;
        x[0] = 0xff; // outside the range
        x[88] = 0x77;
        assert_eq!(crc(&x), 0x12 ^ 0x34);
    }

    #[test]
    fn decode_checks_length_crc_transaction_command_and_status() {
        let good = answer(&POWER_MODE, 0xff, Status::Ok, &[0, 1, 2, 0]);
        assert_eq!(
            &decode(&POWER_MODE, 0xff, &good).unwrap()[..4],
            &[0, 1, 2, 0]
        );

        assert_eq!(
            decode(&POWER_MODE, 0xff, &good[..40]),
            Err(Problem::ShortRead)
        );
        assert_eq!(decode(&POWER_MODE, 0xff, &[]), Err(Problem::ShortRead));
        let mut bad = good;
        bad[88] ^= 1;
        assert_eq!(decode(&POWER_MODE, 0xff, &bad), Err(Problem::BadCrc));
        assert_eq!(
            decode(&POWER_MODE, 0x1f, &good),
            Err(Problem::WrongTransaction)
        );
        assert_eq!(decode(&BOOST_CPU, 0xff, &good), Err(Problem::WrongCommand));
        for (status, problem) in [
            (Status::Busy, Problem::Busy),
            (Status::Failure, Problem::Failure),
            (Status::Timeout, Problem::Timeout),
            (Status::NotSupported, Problem::NotSupported),
            (Status::Other(0x42), Problem::Failure),
            (Status::New, Problem::NoAnswer),
        ] {
            let a = answer(&POWER_MODE, 0xff, status, &[0, 1, 2]);
            assert_eq!(decode(&POWER_MODE, 0xff, &a), Err(problem), "{status:?}");
        }
        assert!(Problem::Busy.retry() && Problem::Timeout.retry());
        assert!(!Problem::BadCrc.retry() && !Problem::NotSupported.retry());
    }

    #[test]
    fn any_bytes_decode_without_panicking() {
        // A small deterministic mutation run over a good answer (the property tests of the
        // fuzzing issue go further): every byte value at every position.
        let good = answer(&FAN_1, 0xff, Status::Ok, &[0, 1, 42]);
        for pos in 0..REPORT_LEN {
            for v in [0u8, 1, 2, 5, 0x7f, 0x80, 0xff] {
                let mut m = good;
                m[pos] = v;
                let _ = decode(&FAN_1, 0xff, &m);
            }
        }
        for n in 0..=REPORT_LEN + 2 {
            let _ = decode(&FAN_1, 0xff, &vec![2u8; n]);
        }
    }
}
