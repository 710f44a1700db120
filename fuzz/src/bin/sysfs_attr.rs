//! Fuzz target `sysfs_attr`: see `odin_fuzz::sysfs_attr`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::sysfs_attr::run(data);
    });
}
