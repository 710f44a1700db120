//! `seeds OUT`: write each fuzz target's starting corpus to `OUT/<target>/`, from the
//! repository's fixtures and, where present, the nvidia-smi captures in the shared folder
//! (`$ODIN_SHARED_DIR`, else `../shared` next to the repository). Nothing is copied into the
//! repository; the corpora live wherever OUT is (`scripts/fuzz.sh` puts them under
//! `fuzz/work/`, which git ignores).

use std::fs;
use std::path::{Path, PathBuf};

use gpu_exporter::testing::capture::split_sections;
use odin_fuzz::{proc_net, proc_pid, repo, sysfs_attr};
use razer_exporter::hid::report::{answer, Status, ALL};

struct Out {
    dir: PathBuf,
    n: usize,
}

impl Out {
    fn new(root: &Path, target: &str) -> Out {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        Out { dir, n: 0 }
    }

    /// One seed: the selector bytes, then the content (AFL++ refuses seeds over 1 MB).
    fn put(&mut self, head: &[u8], content: &[u8]) {
        let mut seed = head.to_vec();
        seed.extend_from_slice(&content[..content.len().min(512 * 1024)]);
        fs::write(self.dir.join(format!("seed-{:04}", self.n)), seed).unwrap();
        self.n += 1;
    }
}

fn shared_dir() -> Option<PathBuf> {
    std::env::var_os("ODIN_SHARED_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo().join("../shared")])
        .find(|d| d.join("captures/nvidia-smi").is_dir())
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

fn nvidia_smi(root: &Path) {
    let mut csv = Out::new(root, "nvidia_smi_csv");
    let mut q = Out::new(root, "nvidia_smi_q");
    csv.put(
        &[2],
        b"00000000:01:00.0, 39.32 W\n00000000:02:00.0, [N/A]\n",
    );
    csv.put(&[2], b"00000000:01:00.0, 39.32\n");
    let Some(shared) = shared_dir() else {
        eprintln!("seeds: no captures/nvidia-smi in the shared folder; nvidia-smi seeds are few");
        q.put(
            &[],
            b"NVIDIA-SMI version  : 595.71.05\nCUDA Version         : 13.1\n",
        );
        return;
    };
    for file in files_in(&shared.join("captures/nvidia-smi")) {
        if file.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for s in split_sections(&text) {
            let body = s.body.as_bytes();
            if s.command.contains("--query-gpu=") {
                csv.put(&[0], body);
                let rows = s.body.split_once('\n').map_or("", |(_, r)| r);
                csv.put(&[1], rows.as_bytes());
            } else if s.command.contains("--query-compute-apps=") {
                csv.put(&[3], body);
                let rows = s.body.split_once('\n').map_or("", |(_, r)| r);
                csv.put(&[4], rows.as_bytes());
            } else if s.command.contains("--format=csv") {
                csv.put(&[0], body);
            } else if s.command.contains("--help-query-gpu")
                || s.command.contains("--version")
                || s.command.ends_with(" -q")
                || s.command.trim() == "nvidia-smi"
            {
                q.put(&[], body);
            }
        }
    }
}

/// An inet_diag answer: `n` socket messages of type `kind`, then `NLMSG_DONE`.
fn datagram(kind: u16, n: u8) -> Vec<u8> {
    let mut d = Vec::new();
    let mut msg = |ty: u16, payload: &[u8]| {
        d.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        d.extend_from_slice(&ty.to_ne_bytes());
        d.extend_from_slice(&2u16.to_ne_bytes());
        d.extend_from_slice(&proc_net::SEQ.to_ne_bytes());
        d.extend_from_slice(&0u32.to_ne_bytes());
        d.extend_from_slice(payload);
    };
    for i in 0..n {
        let mut p = [0u8; 72];
        p[0] = if i % 2 == 0 { 2 } else { 10 };
        p[1] = 1 + i % 11;
        p[56..60].copy_from_slice(&u32::from(i).to_ne_bytes());
        p[60..64].copy_from_slice(&(u32::from(i) * 3).to_ne_bytes());
        msg(kind, &p);
    }
    msg(3, &0i32.to_ne_bytes());
    d
}

fn proc_net_seeds(root: &Path) {
    let mut out = Out::new(root, "proc_net");
    let fixtures = repo().join("exporters/network-exporter/tests/fixtures");
    for tree in ["host-a", "broken", "malformed"] {
        for (i, f) in proc_net::FILES.iter().enumerate() {
            if let Ok(content) = fs::read(fixtures.join(tree).join("proc/net").join(f)) {
                out.put(&[i as u8], &content);
            }
        }
    }
    let diag = (proc_net::FILES.len() - 1) as u8;
    out.put(&[diag, 0], &datagram(18, 4));
    out.put(&[diag, 1], &datagram(20, 3));
}

fn sysfs_seeds(root: &Path) {
    let mut out = Out::new(root, "sysfs_attr");
    for t in 0..sysfs_attr::TREES.len() {
        for (i, (_, content)) in sysfs_attr::files(t).iter().enumerate() {
            let i = i as u16;
            out.put(&[t as u8, i.to_le_bytes()[0], i.to_le_bytes()[1]], content);
        }
    }
}

fn token_seeds(root: &Path) {
    let fixtures = repo().join("exporters/token-collector/tests/fixtures");
    let mut transcript = Out::new(root, "transcript");
    let mut stack = vec![fixtures.join("tree")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(content) = fs::read(&p) {
                transcript.put(&[0], &content);
                for line in content.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    transcript.put(&[0], line);
                }
            }
        }
    }
    let mut capture = Out::new(root, "terminal_capture");
    let mut spool = Vec::new();
    for f in files_in(&fixtures.join("capture")) {
        let content = fs::read(&f).unwrap();
        capture.put(&[0], &content);
        capture.put(&[7], &content);
        for (n, r) in token_collector::capture::recognise(&content)
            .into_iter()
            .enumerate()
        {
            let c = r.into_captured(format!("spool:{n}"), 1_700_000_000_000, None);
            if let Ok(line) = serde_json_line(&c) {
                spool.extend_from_slice(line.as_bytes());
                spool.push(b'\n');
            }
        }
    }
    transcript.put(&[1], &spool);
}

fn serde_json_line(c: &token_collector::usage::Captured) -> Result<String, String> {
    serde_json::to_string(c).map_err(|e| e.to_string())
}

fn hid_seeds(root: &Path) {
    let mut report = Out::new(root, "hid_report");
    let mut all = Vec::new();
    for (i, get) in ALL.iter().enumerate() {
        let a = answer(get, 0xff, Status::Ok, &[1, 2, 3, 4]);
        report.put(&[i as u8], &a);
        all.push(90u8);
        all.extend_from_slice(&a);
    }
    report.put(&[0x80], &all);
    let busy = answer(&ALL[1], 0xff, Status::Busy, &[]);
    let mut retry = vec![90u8];
    retry.extend_from_slice(&busy);
    retry.push(0);
    retry.extend_from_slice(&all);
    report.put(&[0x80], &retry);

    let mut replay = Out::new(root, "hid_replay");
    for f in files_in(&repo().join("exporters/razer-exporter/demo")) {
        replay.put(&[], &fs::read(&f).unwrap());
    }
    replay.put(
        &[],
        b"[[laptop]]\nproduct = 0x028A\n\n[[laptop.answer]]\nrequest = \"fan_1\"\nstatus = \"busy\"\n\n[[laptop.answer]]\nrequest = \"fan_1\"\ndata = [0, 1, 40]\ncrc = \"bad\"\nlength = 40\n\n[[laptop.answer]]\nrequest = \"firmware\"\nraw = \"02 ff 00 00 00 02 00 81 01 02\"\n",
    );
}

fn proc_pid_seeds(root: &Path) {
    let mut out = Out::new(root, "proc_pid");
    for (i, f) in proc_pid::FILES.iter().enumerate() {
        out.put(&[i as u8], proc_pid::original(f));
    }
    let tcp = repo().join("exporters/network-exporter/tests/fixtures/host-a/proc/net");
    out.put(&[7], &fs::read(tcp.join("tcp")).unwrap());
    out.put(&[8], &fs::read(tcp.join("tcp6")).unwrap());
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: seeds OUT"));
    nvidia_smi(&root);
    proc_net_seeds(&root);
    sysfs_seeds(&root);
    token_seeds(&root);
    hid_seeds(&root);
    proc_pid_seeds(&root);
}
