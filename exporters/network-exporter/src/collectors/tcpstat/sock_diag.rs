//! The netlink source of tcpstat: one `SOCK_DIAG_BY_FAMILY` dump (inet_diag) per address family
//! over a `NETLINK_SOCK_DIAG` socket.
//!
//! Written by hand on `libc` rather than with the rust-netlink crates: we need four bytes-wide
//! fields of one fixed struct, while `netlink-packet-sock-diag` decodes every message fully,
//! attributes into a `Vec` per socket included (the kernel attaches several to every full socket
//! even with `idiag_ext` 0), and brings three crates and their dependencies. The unsafe code is
//! the four system calls in [`DiagSocket`]; parsing the received bytes is safe, bounds-checked
//! slice code ([`walk`]).
//!
//! Wire format (all integers in host byte order unless noted; `linux/netlink.h`,
//! `linux/sock_diag.h`, `linux/inet_diag.h`):
//!
//! - `struct nlmsghdr` (16 bytes): `nlmsg_len` u32 (header included), `nlmsg_type` u16,
//!   `nlmsg_flags` u16, `nlmsg_seq` u32, `nlmsg_pid` u32. Messages in a datagram follow each
//!   other at `NLMSG_ALIGN(nlmsg_len)` (a multiple of 4).
//! - request payload `struct inet_diag_req_v2` (56 bytes): `sdiag_family` u8, `sdiag_protocol`
//!   u8, `idiag_ext` u8, pad u8, `idiag_states` u32, `struct inet_diag_sockid id` (48 bytes,
//!   zero: no filter).
//! - answer payload `struct inet_diag_msg` (72 bytes, then attributes we ignore):
//!   `idiag_family` u8 at 0, `idiag_state` u8 at 1, `idiag_timer` u8, `idiag_retrans` u8,
//!   `id` (48 bytes) at 4, `idiag_expires` u32 at 52, `idiag_rqueue` u32 at 56, `idiag_wqueue`
//!   u32 at 60, `idiag_uid` u32 at 64, `idiag_inode` u32 at 68.
//! - `NLMSG_ERROR` payload: `error` i32 (a negative errno, 0 for an acknowledgement), then the
//!   request's header. `NLMSG_DONE` payload: i32, negative when the dump failed part-way.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use super::{FamilyStats, SocketLine, STATES};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
/// `SOCK_DIAG_BY_FAMILY` from `linux/sock_diag.h`: request and answer type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ROOT | NLM_F_MATCH`: dump every matching entry.
const NLM_F_DUMP: u16 = 0x300;

const INET_DIAG_REQ_V2_LEN: usize = 56;
const REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN;
const INET_DIAG_MSG_LEN: usize = 72;
const OFF_FAMILY: usize = 0;
const OFF_STATE: usize = 1;
const OFF_RQUEUE: usize = 56;
const OFF_WQUEUE: usize = 60;

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

/// The dump request for one address family: TCP, every state in [`STATES_MASK`], no extensions
/// (`idiag_ext` 0), no socket filter.
pub(super) fn request(family: u8, seq: u32) -> [u8; REQUEST_LEN] {
    let mut req = [0u8; REQUEST_LEN];
    req[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
    let p = NLMSG_HDRLEN;
    req[p] = family;
    req[p + 1] = libc::IPPROTO_TCP as u8;
    // idiag_ext (p + 2) and the pad byte stay 0; the socket id stays zero.
    req[p + 4..p + 8].copy_from_slice(&STATES_MASK.to_ne_bytes());
    req
}

/// Whether a datagram ended the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    More,
    Done,
}

/// Walk the netlink messages of one received datagram of the dump for `family` (sent with
/// `seq`), counting sockets into `stats`. A socket message that cannot be used (too short, other
/// family, unknown state) is noted in `item_errors` and skipped; broken framing, a kernel error
/// and unexpected message types end the dump with `Err`.
pub(super) fn walk(
    datagram: &[u8],
    family: u8,
    seq: u32,
    stats: &mut FamilyStats,
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
        let kind = u16_at(rest, 4);
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
        match kind {
            SOCK_DIAG_BY_FAMILY => match parse_socket(payload, family) {
                Ok(sock) => stats.add(sock),
                Err(e) => item_errors.push(format!("inet_diag: {e}")),
            },
            NLMSG_DONE => {
                // Older kernels may send DONE without the status word; treat that as success.
                if let Some(status) = payload.get(..4) {
                    let status = i32::from_ne_bytes([status[0], status[1], status[2], status[3]]);
                    if status < 0 {
                        return Err(io::Error::from_raw_os_error(-status))
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

/// What one `struct inet_diag_msg` contributes.
fn parse_socket(payload: &[u8], family: u8) -> Result<SocketLine, String> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(format!(
            "socket message of {} bytes, want at least {INET_DIAG_MSG_LEN}",
            payload.len()
        ));
    }
    let got_family = payload[OFF_FAMILY];
    if got_family != family {
        return Err(format!(
            "socket of address family {got_family} in the dump of family {family}"
        ));
    }
    let state = payload[OFF_STATE];
    if !(1..=STATES.len()).contains(&usize::from(state)) {
        return Err(format!("unknown state code {state:#04x}"));
    }
    Ok(SocketLine {
        state: usize::from(state) - 1,
        rx_queue: u64::from(u32_at(payload, OFF_RQUEUE)),
        tx_queue: u64::from(u32_at(payload, OFF_WQUEUE)),
    })
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

    /// Dump the TCP sockets of `family` (`AF_INET` or `AF_INET6`), using `buf` for receiving.
    pub(super) fn dump_tcp(
        &self,
        family: u8,
        seq: u32,
        buf: &mut [u8],
        item_errors: &mut Vec<String>,
    ) -> anyhow::Result<FamilyStats> {
        self.send(&request(family, seq))
            .context("sending the inet_diag request")?;
        let mut stats = FamilyStats::default();
        loop {
            let n = self.recv(buf).context("receiving the inet_diag dump")?;
            if n == 0 {
                return Err(anyhow!("empty netlink datagram before the end of the dump"));
            }
            if walk(&buf[..n], family, seq, &mut stats, item_errors)? == Progress::Done {
                return Ok(stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A socket message as the kernel sends it: `inet_diag_msg`, then `attrs` extra bytes of
    /// attributes (here an odd count, to exercise alignment).
    fn socket(family: u8, state: u8, rq: u32, wq: u32, attrs: usize) -> Vec<u8> {
        let mut p = vec![0u8; INET_DIAG_MSG_LEN];
        p[OFF_FAMILY] = family;
        p[OFF_STATE] = state;
        p[4..6].copy_from_slice(&8080u16.to_be_bytes());
        p[OFF_RQUEUE..OFF_RQUEUE + 4].copy_from_slice(&rq.to_ne_bytes());
        p[OFF_WQUEUE..OFF_WQUEUE + 4].copy_from_slice(&wq.to_ne_bytes());
        p[68..72].copy_from_slice(&77u32.to_ne_bytes());
        p.extend(std::iter::repeat(0xEE).take(attrs));
        message(SOCK_DIAG_BY_FAMILY, 7, &p, true)
    }

    fn done(status: i32) -> Vec<u8> {
        message(NLMSG_DONE, 7, &status.to_ne_bytes(), true)
    }

    const V4: u8 = libc::AF_INET as u8;
    const V6: u8 = libc::AF_INET6 as u8;

    #[test]
    fn request_bytes() {
        let r = request(V6, 9);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), 72);
        assert_eq!(u16_at(&r, 4), 20);
        assert_eq!(u16_at(&r, 6), 0x301);
        assert_eq!(u32_at(&r, 8), 9);
        assert_eq!(&r[16..20], &[V6, 6, 0, 0]);
        assert_eq!(u32_at(&r, 20), 0b1111_1111_1110);
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn several_messages_per_datagram_then_done() {
        let mut dgram = Vec::new();
        dgram.extend(socket(V4, 1, 100, 7, 5)); // established
        dgram.extend(socket(V4, 10, 3, 128, 0)); // listen: backlog 3, not summed
        dgram.extend(socket(V4, 8, 20, 0, 13)); // close_wait
        dgram.extend(socket(V4, 6, 0, 0, 0)); // time_wait
        let mut stats = FamilyStats::default();
        let mut errors = Vec::new();
        let p = walk(&dgram, V4, 7, &mut stats, &mut errors).unwrap();
        assert_eq!(p, Progress::More);
        assert_eq!(errors, Vec::<String>::new());
        let mut want = [0u64; 11];
        want[0] = 1;
        want[9] = 1;
        want[7] = 1;
        want[5] = 1;
        assert_eq!(stats.states, want);
        assert_eq!(stats.rx_queue, 120);
        assert_eq!(stats.tx_queue, 7);

        // The next datagram: one more socket, then DONE.
        let mut dgram = socket(V4, 1, 1, 1, 0);
        dgram.extend(done(0));
        let p = walk(&dgram, V4, 7, &mut stats, &mut errors).unwrap();
        assert_eq!(p, Progress::Done);
        assert_eq!(stats.states[0], 2);
        assert_eq!(stats.rx_queue, 121);
        assert_eq!(stats.tx_queue, 8);
    }

    #[test]
    fn unpadded_last_message_is_accepted() {
        let mut p = vec![0u8; INET_DIAG_MSG_LEN + 3];
        p[OFF_FAMILY] = V6;
        p[OFF_STATE] = 2;
        let dgram = message(SOCK_DIAG_BY_FAMILY, 7, &p, false);
        assert_eq!(dgram.len() % 4, 3);
        let mut stats = FamilyStats::default();
        let mut errors = Vec::new();
        assert_eq!(
            walk(&dgram, V6, 7, &mut stats, &mut errors).unwrap(),
            Progress::More
        );
        assert_eq!(stats.states[1], 1);
    }

    #[test]
    fn error_message_with_eperm() {
        let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
        payload.extend_from_slice(&request(V4, 7)[..NLMSG_HDRLEN]);
        let dgram = message(NLMSG_ERROR, 7, &payload, true);
        let err = walk(&dgram, V4, 7, &mut FamilyStats::default(), &mut Vec::new()).unwrap_err();
        let io = err.downcast_ref::<io::Error>().expect("an io::Error cause");
        assert_eq!(io.raw_os_error(), Some(libc::EPERM));
        assert!(format!("{err:#}").contains("refused"), "{err:#}");
    }

    #[test]
    fn done_with_error_status() {
        let err = walk(
            &done(-libc::ENOBUFS),
            V4,
            7,
            &mut FamilyStats::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
        let io = err.downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.raw_os_error(), Some(libc::ENOBUFS));
    }

    #[test]
    fn truncated_framing_is_an_error() {
        let mut stats = FamilyStats::default();
        let mut errors = Vec::new();
        // Length says 88 + 4 bytes of attributes, but the datagram ends 10 bytes early.
        let whole = socket(V4, 1, 0, 0, 4);
        let err = walk(&whole[..whole.len() - 10], V4, 7, &mut stats, &mut errors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated netlink message: nlmsg_len 92 with 82 bytes left"
        );
        // A whole message, then the first 6 bytes of a header.
        let mut two = socket(V4, 1, 0, 0, 0);
        two.extend_from_slice(&socket(V4, 1, 0, 0, 0)[..6]);
        let err = walk(&two, V4, 7, &mut stats, &mut errors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated netlink message: 6 bytes left, header needs 16"
        );
        // nlmsg_len smaller than the header itself.
        let mut tiny = done(0);
        tiny[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(walk(&tiny, V4, 7, &mut stats, &mut errors).is_err());
    }

    #[test]
    fn bad_socket_messages_are_item_errors() {
        let mut dgram = Vec::new();
        dgram.extend(socket(V4, 13, 5, 5, 0)); // TCP_BOUND_INACTIVE: not a /proc state
        dgram.extend(socket(V4, 0, 5, 5, 0));
        dgram.extend(socket(V6, 1, 5, 5, 0)); // wrong family for this dump
        dgram.extend(message(SOCK_DIAG_BY_FAMILY, 7, &[V4, 1, 0, 0], true)); // short
        dgram.extend(socket(V4, 11, 9, 4, 0)); // closing: good
        dgram.extend(done(0));
        let mut stats = FamilyStats::default();
        let mut errors = Vec::new();
        let p = walk(&dgram, V4, 7, &mut stats, &mut errors).unwrap();
        assert_eq!(p, Progress::Done);
        assert_eq!(
            errors,
            vec![
                "inet_diag: unknown state code 0x0d",
                "inet_diag: unknown state code 0x00",
                "inet_diag: socket of address family 10 in the dump of family 2",
                "inet_diag: socket message of 4 bytes, want at least 72",
            ]
        );
        let mut want = [0u64; 11];
        want[10] = 1;
        assert_eq!(stats.states, want);
        assert_eq!((stats.rx_queue, stats.tx_queue), (9, 4));
    }

    #[test]
    fn unexpected_type_and_sequence_are_errors() {
        let mut stats = FamilyStats::default();
        let mut errors = Vec::new();
        let err = walk(
            &message(0x10, 7, &[0; 8], true),
            V4,
            7,
            &mut stats,
            &mut errors,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "unexpected netlink message type 16");
        let err = walk(&done(0), V4, 8, &mut stats, &mut errors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "netlink message for sequence 7, expected 8"
        );
        // NOOP is skipped.
        let mut dgram = message(NLMSG_NOOP, 7, &[], true);
        dgram.extend(done(0));
        assert_eq!(
            walk(&dgram, V4, 7, &mut stats, &mut errors).unwrap(),
            Progress::Done
        );
    }
}
