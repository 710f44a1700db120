//! The fake `libnvidia-ml.so` (`tests/fake-nvml/fake_nvml.c`): build it, give each test its
//! own copy, write its data file ([`data`], re-exported here), open the NVML backend on it, and
//! inject XID events.
//!
//! The library is compiled once per process with the system C compiler (`$CC`, else `cc`)
//! into `<target dir>/tmp/fake-nvml/` (cargo's `CARGO_TARGET_TMPDIR` of integration tests).
//! Every [`FakeNvml`] copies it into its own directory: the dynamic loader keeps one instance
//! per file, and the fake keeps its GPUs in globals, so a shared file would make parallel tests
//! read each other's GPUs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::reading::Backend;

pub mod data;
pub use data::*;

/// Which build of the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Every entry point the backend calls.
    Current,
    /// Without the entry points a pre-R510 driver's library lacks
    /// (`nvmlDeviceGetMemoryInfo_v2`, `nvmlDeviceGetMarginTemperature`,
    /// `nvmlDeviceGetJpgUtilization`, `nvmlDeviceGetOfaUtilization`).
    OldDriver,
}

/// The NVML functions [`Variant::OldDriver`] leaves out.
pub const OLD_DRIVER_MISSING: [&str; 4] = [
    "nvmlDeviceGetJpgUtilization",
    "nvmlDeviceGetMarginTemperature",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetOfaUtilization",
];

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-nvml/fake_nvml.c")
}

fn compile(variant: Variant) -> PathBuf {
    let name = match variant {
        Variant::Current => "current",
        Variant::OldDriver => "old-driver",
    };
    let dir = target_tmp_dir().join("fake-nvml").join(name);
    std::fs::create_dir_all(&dir).expect("create fake-nvml build dir");
    let out = dir.join("libnvidia-ml.so.1");
    // Several test binaries may build at once: compile to a private name, then rename.
    let tmp = dir.join(format!("libnvidia-ml.so.1.{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(&cc);
    cmd.args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&tmp)
        .arg(source())
        .arg("-lpthread");
    if variant == Variant::OldDriver {
        cmd.arg("-DFAKE_OLD_DRIVER");
    }
    let result = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?} for the fake NVML: {e}"));
    assert!(
        result.status.success(),
        "building the fake NVML failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &out).expect("install the fake NVML");
    out
}

/// `<target dir>/tmp`, found from the running test, bench or example
/// (`<target dir>/<profile>/deps/<test>` or `<target dir>/<profile>/examples/<name>`); the
/// system's temporary directory for a binary elsewhere.
fn target_tmp_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe.parent().and_then(Path::parent);
    match profile_dir.and_then(Path::parent) {
        Some(target) if target.join("CACHEDIR.TAG").exists() => target.join("tmp"),
        _ => std::env::temp_dir().join("odin-gpu-exporter"),
    }
}

/// The built fake library for `variant` (compiled on first use).
pub fn library(variant: Variant) -> &'static Path {
    static CURRENT: OnceLock<PathBuf> = OnceLock::new();
    static OLD: OnceLock<PathBuf> = OnceLock::new();
    let cell = match variant {
        Variant::Current => &CURRENT,
        Variant::OldDriver => &OLD,
    };
    cell.get_or_init(|| compile(variant))
}

/// Serialises `open` calls: the fake reads its environment variables in `nvmlInit_v2`.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// One private copy of the fake library with its data file.
pub struct FakeNvml {
    dir: tempfile::TempDir,
    pub lib: PathBuf,
    pub data: PathBuf,
    /// Where the fake logs every device call, after [`FakeNvml::log_calls`].
    call_log: Option<PathBuf>,
}

impl FakeNvml {
    /// A private copy of `variant`, answering from `data` (see [`data_file`]).
    pub fn new(variant: Variant, data: &str) -> FakeNvml {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("libnvidia-ml.so.1");
        std::fs::copy(library(variant), &lib).expect("copy the fake NVML");
        let data_path = dir.path().join("nvml-data.txt");
        std::fs::write(&data_path, data).expect("write fake NVML data");
        FakeNvml {
            dir,
            lib,
            data: data_path,
            call_log: None,
        }
    }

    /// Make the fake log every call that names a device (`FAKE_NVML_CALL_LOG`), read back
    /// with [`FakeNvml::calls`]. Takes effect at the next open.
    pub fn log_calls(mut self) -> FakeNvml {
        self.call_log = Some(self.dir.path().join("calls.log"));
        self
    }

    /// The calls logged so far, `<function> <gpu>` each (`-1`: no device).
    pub fn calls(&self) -> Vec<String> {
        let path = self.call_log.as_ref().expect("log_calls() first");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Forget the calls logged so far.
    pub fn clear_calls(&self) {
        if let Some(p) = &self.call_log {
            std::fs::write(p, "").expect("clear the fake NVML call log");
        }
    }

    /// Run `open` (given this copy's library path) with the environment `nvmlInit_v2` reads
    /// set for this copy: for readers other than the NVML backend, such as
    /// [`crate::power::PowerReader`]. `fail` and `init_fail` as in [`FakeNvml::open_with`].
    pub fn with_env<T>(
        &self,
        fail: Option<&str>,
        init_fail: Option<i32>,
        open: impl FnOnce(&Path) -> T,
    ) -> T {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("FAKE_NVML_DATA", &self.data);
        let vars = [
            ("FAKE_NVML_FAIL", fail.map(str::to_owned)),
            ("FAKE_NVML_INIT_FAIL", init_fail.map(|c| c.to_string())),
            (
                "FAKE_NVML_CALL_LOG",
                self.call_log.as_ref().map(|p| p.display().to_string()),
            ),
        ];
        for (var, value) in &vars {
            match value {
                Some(v) => std::env::set_var(var, v),
                None => std::env::remove_var(var),
            }
        }
        let opened = open(&self.lib);
        std::env::remove_var("FAKE_NVML_DATA");
        for (var, _) in vars {
            std::env::remove_var(var);
        }
        opened
    }

    /// Open the NVML backend on this copy. `fail`: `FAKE_NVML_FAIL` rules
    /// (`nvmlDeviceGetTemperature:3`, `*@1:15`), `init_fail`: `FAKE_NVML_INIT_FAIL`.
    pub fn open_with(
        &self,
        fail: Option<&str>,
        init_fail: Option<i32>,
    ) -> anyhow::Result<Box<dyn Backend>> {
        self.with_env(fail, init_fail, |lib| crate::nvml::open(Some(lib)))
    }

    pub fn open(&self) -> Box<dyn Backend> {
        self.open_with(None, None).expect("open the fake NVML")
    }

    /// Queue a critical XID event for GPU `gpu` in this copy (it must be open). Returns whether
    /// a registered event set took it.
    pub fn inject_xid(&self, gpu: u32, xid: u64) -> bool {
        let path = std::ffi::CString::new(self.lib.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: RTLD_NOLOAD only looks up the copy the backend already loaded (null if it is
        // not loaded); the symbol has the C signature declared here.
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            assert!(!handle.is_null(), "the fake NVML copy is not loaded");
            let sym = libc::dlsym(handle, c"fakeNvmlInjectXid".as_ptr());
            assert!(!sym.is_null(), "fakeNvmlInjectXid missing");
            let inject: extern "C" fn(u32, u64) -> i32 = std::mem::transmute(sym);
            let queued = inject(gpu, xid) == 1;
            libc::dlclose(handle);
            queued
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
