//! The netlink source of tcpstat: inet_diag dumps of TCP sockets over a `NETLINK_SOCK_DIAG`
//! socket.
//!
//! One dump covers both address families: the legacy `TCPDIAG_GETSOCK` request (`struct
//! inet_diag_req`, which the kernel runs with family `AF_UNSPEC`). The kernel's cost is
//! dominated by walking every bucket of the TCP hash table, which IPv4 and IPv6 share, so one
//! dump instead of a `SOCK_DIAG_BY_FAMILY` (`struct inet_diag_req_v2`) dump per family halves it:
//! measured on a 262144-bucket host with 2000 sockets, about 2 ms less system CPU per run. The
//! v2 form cannot ask for `AF_UNSPEC` (the kernel answers ENOENT). Should a kernel refuse the
//! legacy request, [`tcp_sockets`] dumps each family with v2 instead, from then on.
//!
//! Written by hand on `libc` rather than with the rust-netlink crates (`netlink-packet-sock-diag`
//! 0.5, `netlink-sys` 0.9, `netlink-packet-core` 0.9): those parse only `SOCK_DIAG_BY_FAMILY`
//! messages, so they cannot read the answers to the one-dump request, and they decode every
//! socket message fully, attributes included (the kernel attaches several to every full socket
//! even with `idiag_ext` 0), where we need three fields at fixed offsets of one struct. The
//! unsafe code is the system calls in [`DiagSocket`], each with its safety note; parsing the
//! received bytes is safe, bounds-checked slice code ([`walk`]).
//!
//! Wire format (all integers in host byte order unless noted; `linux/netlink.h`,
//! `linux/sock_diag.h`, `linux/inet_diag.h`):
//!
//! - `struct nlmsghdr` (16 bytes): `nlmsg_len` u32 (header included), `nlmsg_type` u16,
//!   `nlmsg_flags` u16, `nlmsg_seq` u32, `nlmsg_pid` u32. Messages in a datagram follow each
//!   other at `NLMSG_ALIGN(nlmsg_len)` (a multiple of 4).
//! - legacy request payload `struct inet_diag_req` (60 bytes): `idiag_family` u8 (ignored),
//!   `idiag_src_len` u8, `idiag_dst_len` u8, `idiag_ext` u8, `struct inet_diag_sockid id`
//!   (48 bytes, zero: no filter), `idiag_states` u32 at 52, `idiag_dbs` u32.
//! - v2 request payload `struct inet_diag_req_v2` (56 bytes): `sdiag_family` u8,
//!   `sdiag_protocol` u8, `idiag_ext` u8, pad u8, `idiag_states` u32 at 4, `id` (48 bytes, zero).
//! - answer payload, of the request's message type, `struct inet_diag_msg` (72 bytes, then
//!   attributes we ignore): `idiag_family` u8 at 0, `idiag_state` u8 at 1, `idiag_timer` u8,
//!   `idiag_retrans` u8, `id` (48 bytes) at 4, `idiag_expires` u32 at 52, `idiag_rqueue` u32 at
//!   56, `idiag_wqueue` u32 at 60, `idiag_uid` u32 at 64, `idiag_inode` u32 at 68.
//! - `NLMSG_ERROR` payload: `error` i32 (a negative errno, 0 for an acknowledgement), then the
//!   request's header. `NLMSG_DONE` payload: i32, negative when the dump failed part-way.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use super::{FamilyStats, SocketLine, STATES};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
/// `TCPDIAG_GETSOCK` from `linux/inet_diag.h`: the legacy request, all families.
const TCPDIAG_GETSOCK: u16 = 18;
/// `SOCK_DIAG_BY_FAMILY` from `linux/sock_diag.h`: the v2 request, one family.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ROOT | NLM_F_MATCH`: dump every matching entry.
const NLM_F_DUMP: u16 = 0x300;

const INET_DIAG_REQ_LEN: usize = 60;
const INET_DIAG_REQ_V2_LEN: usize = 56;
const MAX_REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_LEN;
const INET_DIAG_MSG_LEN: usize = 72;
const OFF_FAMILY: usize = 0;
const OFF_STATE: usize = 1;
const OFF_RQUEUE: usize = 56;
const OFF_WQUEUE: usize = 60;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// States 1 (ESTABLISHED) to 11 (CLOSING), the ones `/proc/net/tcp` lists. Request sockets
/// (`TCP_NEW_SYN_RECV`, 12) come along with bit 3 and are reported as SYN_RECV, as in the file;
/// bit 13 (`TCP_BOUND_INACTIVE`, kernel 6.7+) would add bound-only sockets the file does not list,
/// so it stays off.
const STATES_MASK: u32 = ((1 << 12) - 1) & !1;

/// Size of the receive buffer. The kernel fills a dump datagram up to the largest read size it has
/// seen on the socket, capped just under 32 KiB; reading into more than that gains nothing, and
/// anything that still does not fit is reported (`MSG_TRUNC`), never silently cut.
pub(super) const RECV_BUFFER: usize = 64 * 1024;

/// `NLMSG_ALIGN`: round a message length up to a multiple of 4.
const fn nlmsg_align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Which dump to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// Legacy `TCPDIAG_GETSOCK`: every family in one dump.
    AllFamilies,
    /// `SOCK_DIAG_BY_FAMILY` for `AF_INET` or `AF_INET6`.
    Family(u8),
}

impl Request {
    /// The message type of the request and of its answers.
    fn kind(self) -> u16 {
        match self {
            Self::AllFamilies => TCPDIAG_GETSOCK,
            Self::Family(_) => SOCK_DIAG_BY_FAMILY,
        }
    }

    /// The request message: TCP, every state in [`STATES_MASK`], no extensions (`idiag_ext` 0),
    /// no socket filter. Returns the buffer and the length used.
    fn encode(self, seq: u32) -> ([u8; MAX_REQUEST_LEN], usize) {
        let mut req = [0u8; MAX_REQUEST_LEN];
        let p = NLMSG_HDRLEN;
        let len = match self {
            Self::AllFamilies => {
                // idiag_family is ignored (the kernel uses AF_UNSPEC); TCP is in the type.
                req[p + 52..p + 56].copy_from_slice(&STATES_MASK.to_ne_bytes());
                NLMSG_HDRLEN + INET_DIAG_REQ_LEN
            }
            Self::Family(family) => {
                req[p] = family;
                req[p + 1] = libc::IPPROTO_TCP as u8;
                req[p + 4..p + 8].copy_from_slice(&STATES_MASK.to_ne_bytes());
                NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN
            }
        };
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&self.kind().to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&seq.to_ne_bytes());
        // nlmsg_pid 0: the kernel fills in our port id.
        (req, len)
    }
}

/// Sockets counted per family.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) v4: FamilyStats,
    pub(super) v6: FamilyStats,
}

/// Whether a datagram ended the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    More,
    Done,
}

/// Walk the netlink messages of one received datagram of a dump whose answers have message type
/// `kind` (sent with `seq`), counting sockets into `counts`. A socket message that cannot be used
/// (too short, unknown family or state) is noted in `item_errors` and skipped; broken framing, a
/// kernel error and unexpected message types end the dump with `Err`.
pub(super) fn walk(
    datagram: &[u8],
    kind: u16,
    seq: u32,
    counts: &mut Counts,
    item_errors: &mut Vec<String>,
) -> anyhow::Result<Progress> {
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HDRLEN {
            bail!(
                "truncated netlink message: {} bytes left, header needs {NLMSG_HDRLEN}",
                rest.len()
            );
        }
        let len = u32_at(rest, 0) as usize;
        let msg_kind = u16_at(rest, 4);
        let msg_seq = u32_at(rest, 8);
        if len < NLMSG_HDRLEN || len > rest.len() {
            bail!(
                "truncated netlink message: nlmsg_len {len} with {} bytes left",
                rest.len()
            );
        }
        if msg_seq != seq {
            bail!("netlink message for sequence {msg_seq}, expected {seq}");
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        match msg_kind {
            k if k == kind => match parse_socket(payload) {
                Ok((AF_INET, sock)) => counts.v4.add(sock),
                Ok((_, sock)) => counts.v6.add(sock),
                Err(e) => item_errors.push(format!("inet_diag: {e}")),
            },
            NLMSG_DONE => {
                // Older kernels may send DONE without the status word; treat that as success.
                if let Some(status) = payload.get(..4) {
                    let status = i32::from_ne_bytes([status[0], status[1], status[2], status[3]]);
                    if status < 0 {
                        return Err(io::Error::from_raw_os_error(status.saturating_neg()))
                            .context("inet_diag dump ended with an error");
                    }
                }
                return Ok(Progress::Done);
            }
            NLMSG_ERROR => {
                let Some(code) = payload.get(..4) else {
                    bail!("truncated netlink error message ({} bytes)", payload.len());
                };
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                // 0 is an acknowledgement; none is requested, but it would be harmless.
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(code.saturating_neg()))
                        .context("kernel refused the inet_diag request");
                }
            }
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => bail!("netlink overrun: messages were lost"),
            other => bail!("unexpected netlink message type {other}"),
        }
        // The last message of a datagram may lack its padding.
        rest = &rest[nlmsg_align(len).min(rest.len())..];
    }
    Ok(Progress::More)
}

/// The family (`AF_INET` or `AF_INET6`) and contribution of one `struct inet_diag_msg`.
fn parse_socket(payload: &[u8]) -> Result<(u8, SocketLine), String> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(format!(
            "socket message of {} bytes, want at least {INET_DIAG_MSG_LEN}",
            payload.len()
        ));
    }
    let family = payload[OFF_FAMILY];
    if family != AF_INET && family != AF_INET6 {
        return Err(format!("socket of unknown address family {family}"));
    }
    let state = payload[OFF_STATE];
    if !(1..=STATES.len()).contains(&usize::from(state)) {
        return Err(format!("unknown state code {state:#04x}"));
    }
    Ok((
        family,
        SocketLine {
            state: usize::from(state) - 1,
            rx_queue: u64::from(u32_at(payload, OFF_RQUEUE)),
            tx_queue: u64::from(u32_at(payload, OFF_WQUEUE)),
        },
    ))
}

/// Count the TCP sockets of this network namespace: one legacy dump while `legacy_ok` holds,
/// otherwise (or when that dump fails) a v2 dump of IPv4, then of IPv6 if `want_v6`. A legacy
/// failure that v2 gets past clears `legacy_ok` and is logged once. `buf` receives datagrams
/// (at least [`RECV_BUFFER`] bytes is best); unusable socket messages go to `item_errors`.
pub(super) fn tcp_sockets(
    timeout: Duration,
    legacy_ok: &AtomicBool,
    want_v6: bool,
    buf: &mut [u8],
    item_errors: &mut Vec<String>,
) -> anyhow::Result<Counts> {
    let mut legacy_err = None;
    if legacy_ok.load(Ordering::Relaxed) {
        let sock = DiagSocket::open(timeout).context("opening a NETLINK_SOCK_DIAG socket")?;
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        match sock.dump(Request::AllFamilies, 1, buf, &mut counts, &mut errors) {
            Ok(()) => {
                item_errors.append(&mut errors);
                return Ok(counts);
            }
            Err(e) => legacy_err = Some(e),
        }
    }
    // A fresh socket: a failed dump may have left datagrams queued on the old one.
    let sock = DiagSocket::open(timeout).context("opening a NETLINK_SOCK_DIAG socket")?;
    let mut counts = Counts::default();
    sock.dump(Request::Family(AF_INET), 2, buf, &mut counts, item_errors)?;
    if want_v6 {
        sock.dump(Request::Family(AF_INET6), 3, buf, &mut counts, item_errors)?;
    }
    if let Some(e) = legacy_err {
        legacy_ok.store(false, Ordering::Relaxed);
        log::info!(
            "tcpstat: the kernel refused the one-dump inet_diag request ({e:#}); \
             dumping IPv4 and IPv6 separately from now on"
        );
    }
    Ok(counts)
}

/// A `NETLINK_SOCK_DIAG` socket. It lives in the network namespace of the thread that opened it,
/// which is the one `/proc/net` (`/proc/self/net`) describes for the same process.
pub(super) struct DiagSocket(OwnedFd);

impl DiagSocket {
    /// Open the socket; `timeout` bounds every receive so a kernel that never answers cannot
    /// hold the scrape thread forever.
    pub(super) fn open(timeout: Duration) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; it returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and nothing else owns it; OwnedFd closes it.
        let sock = Self(unsafe { OwnedFd::from_raw_fd(fd) });

        let timeout = timeout.max(Duration::from_millis(100));
        let tv = libc::timeval {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: the pointer and length describe `tv`, a live timeval, as SO_RCVTIMEO expects.
        let rc = unsafe {
            libc::setsockopt(
                sock.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    /// Send one request to the kernel (netlink port 0).
    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero is valid (pid 0 = the kernel, no groups).
        let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `msg` is a live slice and `kernel` a live sockaddr_nl whose size is passed.
            let n = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return if n as usize == msg.len() {
                    Ok(())
                } else {
                    Err(io::Error::other("short netlink send"))
                };
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receive one datagram into `buf`; returns its length. A datagram larger than `buf` is an
    /// error (with `MSG_TRUNC` the kernel reports the full length, so truncation is visible).
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: the pointer and length describe the live, writable slice `buf`.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n > buf.len() {
                    return Err(io::Error::other(format!(
                        "netlink datagram of {n} bytes exceeds the {}-byte buffer",
                        buf.len()
                    )));
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Run one dump, counting its sockets into `counts`; `buf` receives the datagrams.
    pub(super) fn dump(
        &self,
        req: Request,
        seq: u32,
        buf: &mut [u8],
        counts: &mut Counts,
        item_errors: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let (msg, len) = req.encode(seq);
        self.send(&msg[..len])
            .context("sending the inet_diag request")?;
        loop {
            let n = self.recv(buf).context("receiving the inet_diag dump")?;
            if n == 0 {
                return Err(anyhow!("empty netlink datagram before the end of the dump"));
            }
            if walk(&buf[..n], req.kind(), seq, counts, item_errors)? == Progress::Done {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEQ: u32 = 7;
    const LEGACY: u16 = TCPDIAG_GETSOCK;

    /// One netlink message: header with `kind`/`seq`, then `payload`, padded to 4 bytes unless
    /// `pad` is false.
    fn message(kind: u16, seq: u32, payload: &[u8], pad: bool) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(payload);
        if pad {
            m.resize(nlmsg_align(m.len()), 0);
        }
        m
    }

    /// The payload of a socket message as the kernel sends it: `inet_diag_msg`, then `attrs`
    /// bytes of attributes (odd counts exercise alignment).
    fn sock_payload(family: u8, state: u8, rq: u32, wq: u32, attrs: usize) -> Vec<u8> {
        let mut p = vec![0u8; INET_DIAG_MSG_LEN];
        p[OFF_FAMILY] = family;
        p[OFF_STATE] = state;
        p[4..6].copy_from_slice(&8080u16.to_be_bytes());
        p[52..56].copy_from_slice(&0xAAAA_AAAAu32.to_ne_bytes()); // idiag_expires
        p[OFF_RQUEUE..OFF_RQUEUE + 4].copy_from_slice(&rq.to_ne_bytes());
        p[OFF_WQUEUE..OFF_WQUEUE + 4].copy_from_slice(&wq.to_ne_bytes());
        p[64..68].copy_from_slice(&0xBBBB_BBBBu32.to_ne_bytes()); // idiag_uid
        p.extend(std::iter::repeat(0xEE).take(attrs));
        p
    }

    fn socket(kind: u16, family: u8, state: u8, rq: u32, wq: u32, attrs: usize) -> Vec<u8> {
        message(kind, SEQ, &sock_payload(family, state, rq, wq, attrs), true)
    }

    fn done(status: i32) -> Vec<u8> {
        message(NLMSG_DONE, SEQ, &status.to_ne_bytes(), true)
    }

    fn states(pairs: &[(usize, u64)]) -> [u64; 11] {
        let mut s = [0u64; 11];
        for &(i, n) in pairs {
            s[i] = n;
        }
        s
    }

    #[test]
    fn request_bytes() {
        let (r, len) = Request::AllFamilies.encode(9);
        assert_eq!(len, 76);
        assert_eq!(u32_at(&r, 0), 76);
        assert_eq!(u16_at(&r, 4), 18);
        assert_eq!(u16_at(&r, 6), 0x301);
        assert_eq!(u32_at(&r, 8), 9);
        assert_eq!(u32_at(&r, 12), 0);
        // family, src_len, dst_len, ext and the socket id all zero; states; dbs zero.
        assert!(r[16..68].iter().all(|&b| b == 0));
        assert_eq!(u32_at(&r, 68), 0b1111_1111_1110);
        assert_eq!(u32_at(&r, 72), 0);

        let (r, len) = Request::Family(AF_INET6).encode(3);
        assert_eq!(len, 72);
        assert_eq!(u32_at(&r, 0), 72);
        assert_eq!(u16_at(&r, 4), 20);
        assert_eq!(u16_at(&r, 6), 0x301);
        assert_eq!(u32_at(&r, 8), 3);
        assert_eq!(&r[16..20], &[AF_INET6, 6, 0, 0]);
        assert_eq!(u32_at(&r, 20), 0b1111_1111_1110);
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn several_messages_per_datagram_then_done() {
        let mut dgram = Vec::new();
        dgram.extend(socket(LEGACY, AF_INET, 1, 100, 7, 5)); // established
        dgram.extend(socket(LEGACY, AF_INET, 10, 3, 128, 0)); // listen: backlog 3, not summed
        dgram.extend(socket(LEGACY, AF_INET6, 8, 20, 0, 13)); // close_wait
        dgram.extend(socket(LEGACY, AF_INET, 6, 0, 0, 0)); // time_wait
        dgram.extend(socket(LEGACY, AF_INET6, 10, 1, 4096, 2)); // listen
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        let p = walk(&dgram, LEGACY, SEQ, &mut counts, &mut errors).unwrap();
        assert_eq!(p, Progress::More);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(counts.v4.states, states(&[(0, 1), (9, 1), (5, 1)]));
        assert_eq!((counts.v4.rx_queue, counts.v4.tx_queue), (100, 7));
        assert_eq!(counts.v6.states, states(&[(7, 1), (9, 1)]));
        assert_eq!((counts.v6.rx_queue, counts.v6.tx_queue), (20, 0));

        // The next datagram: one more socket, then DONE.
        let mut dgram = socket(LEGACY, AF_INET, 1, 1, 1, 0);
        dgram.extend(done(0));
        let p = walk(&dgram, LEGACY, SEQ, &mut counts, &mut errors).unwrap();
        assert_eq!(p, Progress::Done);
        assert_eq!(counts.v4.states[0], 2);
        assert_eq!((counts.v4.rx_queue, counts.v4.tx_queue), (101, 8));
    }

    #[test]
    fn v2_answers_have_their_own_type() {
        let mut dgram = socket(SOCK_DIAG_BY_FAMILY, AF_INET6, 2, 0, 1, 0);
        dgram.extend(done(0));
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        let p = walk(&dgram, SOCK_DIAG_BY_FAMILY, SEQ, &mut counts, &mut errors).unwrap();
        assert_eq!(p, Progress::Done);
        assert_eq!(counts.v6.states, states(&[(1, 1)]));
        assert_eq!(counts.v4, FamilyStats::default());
        // The same datagram in a legacy dump: the socket message has the wrong type.
        let err = walk(&dgram, LEGACY, SEQ, &mut counts, &mut errors).unwrap_err();
        assert_eq!(err.to_string(), "unexpected netlink message type 20");
    }

    #[test]
    fn unpadded_last_message_is_accepted() {
        let payload = sock_payload(AF_INET6, 2, 0, 0, 3);
        let dgram = message(LEGACY, SEQ, &payload, false);
        assert_eq!(dgram.len() % 4, 3);
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        let p = walk(&dgram, LEGACY, SEQ, &mut counts, &mut errors).unwrap();
        assert_eq!(p, Progress::More);
        assert_eq!(counts.v6.states[1], 1);
    }

    #[test]
    fn error_message_with_eperm() {
        let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
        payload.extend_from_slice(&Request::AllFamilies.encode(SEQ).0[..NLMSG_HDRLEN]);
        let dgram = message(NLMSG_ERROR, SEQ, &payload, true);
        let mut counts = Counts::default();
        let err = walk(&dgram, LEGACY, SEQ, &mut counts, &mut Vec::new()).unwrap_err();
        let io = err.downcast_ref::<io::Error>().expect("an io::Error cause");
        assert_eq!(io.raw_os_error(), Some(libc::EPERM));
        assert_eq!(
            format!("{err:#}"),
            "kernel refused the inet_diag request: Operation not permitted (os error 1)"
        );
        // An acknowledgement (error 0) is not a failure.
        let mut ack = message(NLMSG_ERROR, SEQ, &[0; 20], true);
        ack.extend(done(0));
        let p = walk(&ack, LEGACY, SEQ, &mut counts, &mut Vec::new()).unwrap();
        assert_eq!(p, Progress::Done);
    }

    #[test]
    fn done_with_error_status() {
        let mut counts = Counts::default();
        let err = walk(
            &done(-libc::ENOBUFS),
            LEGACY,
            SEQ,
            &mut counts,
            &mut Vec::new(),
        )
        .unwrap_err();
        let io = err.downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.raw_os_error(), Some(libc::ENOBUFS));
        // DONE without a status word (old kernels) ends the dump normally.
        let bare = message(NLMSG_DONE, SEQ, &[], true);
        let p = walk(&bare, LEGACY, SEQ, &mut counts, &mut Vec::new()).unwrap();
        assert_eq!(p, Progress::Done);
    }

    #[test]
    fn truncated_framing_is_an_error() {
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        // Length says 16 + 72 + 4 bytes, but the datagram ends 10 bytes early.
        let whole = socket(LEGACY, AF_INET, 1, 0, 0, 4);
        let cut = &whole[..whole.len() - 10];
        let err = walk(cut, LEGACY, SEQ, &mut counts, &mut errors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated netlink message: nlmsg_len 92 with 82 bytes left"
        );
        // A whole message, then the first 6 bytes of a header.
        let mut two = socket(LEGACY, AF_INET, 1, 0, 0, 0);
        two.extend_from_slice(&socket(LEGACY, AF_INET, 1, 0, 0, 0)[..6]);
        let err = walk(&two, LEGACY, SEQ, &mut counts, &mut errors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated netlink message: 6 bytes left, header needs 16"
        );
        // nlmsg_len smaller than the header itself.
        let mut tiny = done(0);
        tiny[0..4].copy_from_slice(&8u32.to_ne_bytes());
        let err = walk(&tiny, LEGACY, SEQ, &mut counts, &mut errors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated netlink message: nlmsg_len 8 with 20 bytes left"
        );
        // An error message too short for its code.
        let err = walk(
            &message(NLMSG_ERROR, SEQ, &[1, 2], true),
            LEGACY,
            SEQ,
            &mut counts,
            &mut errors,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "truncated netlink error message (2 bytes)");
    }

    #[test]
    fn bad_socket_messages_are_item_errors() {
        let mut dgram = Vec::new();
        dgram.extend(socket(LEGACY, AF_INET, 13, 5, 5, 0)); // TCP_BOUND_INACTIVE: not in /proc
        dgram.extend(socket(LEGACY, AF_INET, 0, 5, 5, 0));
        dgram.extend(socket(LEGACY, 1, 1, 5, 5, 0)); // AF_UNIX
        dgram.extend(message(LEGACY, SEQ, &[AF_INET, 1, 0, 0], true)); // short
        dgram.extend(socket(LEGACY, AF_INET, 11, 9, 4, 0)); // closing: good
        dgram.extend(done(0));
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        let p = walk(&dgram, LEGACY, SEQ, &mut counts, &mut errors).unwrap();
        assert_eq!(p, Progress::Done);
        assert_eq!(
            errors,
            vec![
                "inet_diag: unknown state code 0x0d",
                "inet_diag: unknown state code 0x00",
                "inet_diag: socket of unknown address family 1",
                "inet_diag: socket message of 4 bytes, want at least 72",
            ]
        );
        assert_eq!(counts.v4.states, states(&[(10, 1)]));
        assert_eq!((counts.v4.rx_queue, counts.v4.tx_queue), (9, 4));
        assert_eq!(counts.v6, FamilyStats::default());
    }

    #[test]
    fn unexpected_type_and_sequence_are_errors() {
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        let odd = message(0x10, SEQ, &[0; 8], true);
        let err = walk(&odd, LEGACY, SEQ, &mut counts, &mut errors).unwrap_err();
        assert_eq!(err.to_string(), "unexpected netlink message type 16");
        let err = walk(&done(0), LEGACY, 8, &mut counts, &mut errors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "netlink message for sequence 7, expected 8"
        );
        let overrun = message(NLMSG_OVERRUN, SEQ, &[], true);
        assert!(walk(&overrun, LEGACY, SEQ, &mut counts, &mut errors).is_err());
        // NOOP is skipped.
        let mut dgram = message(NLMSG_NOOP, SEQ, &[], true);
        dgram.extend(done(0));
        let p = walk(&dgram, LEGACY, SEQ, &mut counts, &mut errors).unwrap();
        assert_eq!(p, Progress::Done);
    }

    /// The one-dump request and the per-family ones see the same sockets (within the churn of
    /// other processes between the dumps).
    #[test]
    fn live_legacy_and_v2_dumps_agree() {
        let Ok(sock) = DiagSocket::open(Duration::from_secs(5)) else {
            eprintln!("skipped: NETLINK_SOCK_DIAG is not available here");
            return;
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _pair = (
            std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap(),
            listener.accept().unwrap(),
        );
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut errors = Vec::new();
        let mut legacy = Counts::default();
        sock.dump(Request::AllFamilies, 1, &mut buf, &mut legacy, &mut errors)
            .unwrap();
        let mut v2 = Counts::default();
        sock.dump(Request::Family(AF_INET), 2, &mut buf, &mut v2, &mut errors)
            .unwrap();
        sock.dump(Request::Family(AF_INET6), 3, &mut buf, &mut v2, &mut errors)
            .unwrap();
        assert_eq!(errors, Vec::<String>::new());
        assert!(
            legacy.v4.states[9] >= 1 && legacy.v4.states[0] >= 2,
            "{legacy:?}"
        );
        for (a, b) in [(&legacy.v4, &v2.v4), (&legacy.v6, &v2.v6)] {
            for i in 0..STATES.len() {
                assert!(a.states[i].abs_diff(b.states[i]) <= 2, "{a:?} vs {b:?}");
            }
        }

        // And tcp_sockets takes the one-dump path and keeps it.
        let ok = AtomicBool::new(true);
        let counts = tcp_sockets(Duration::from_secs(5), &ok, true, &mut buf, &mut errors).unwrap();
        assert!(ok.load(Ordering::Relaxed));
        assert!(counts.v4.states[9] >= 1, "{counts:?}");
        // With the legacy request switched off it dumps per family; without IPv6 it skips it.
        let off = AtomicBool::new(false);
        let counts =
            tcp_sockets(Duration::from_secs(5), &off, false, &mut buf, &mut errors).unwrap();
        assert!(counts.v4.states[9] >= 1, "{counts:?}");
        assert_eq!(counts.v6, FamilyStats::default());
    }
}
