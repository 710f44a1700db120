//! Fuzz target `proc_net`: see `odin_fuzz::proc_net`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::proc_net::run(data);
    });
}
