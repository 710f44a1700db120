//! Fuzz target `proc_pid`: see `odin_fuzz::proc_pid`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::proc_pid::run(data);
    });
}
