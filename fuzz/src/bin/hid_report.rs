//! Fuzz target `hid_report`: see `odin_fuzz::hid_report`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::hid_report::run(data);
    });
}
