//! Fuzz target `transcript`: see `odin_fuzz::transcript`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::transcript::run(data);
    });
}
