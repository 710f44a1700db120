//! Fuzz target `terminal_capture`: see `odin_fuzz::terminal_capture`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::terminal_capture::run(data);
    });
}
