//! Fuzz target `hid_replay`: see `odin_fuzz::hid_replay`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::hid_replay::run(data);
    });
}
