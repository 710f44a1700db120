//! Fuzz target `nvidia_smi_q`: see `odin_fuzz::nvidia_smi_q`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::nvidia_smi_q::run(data);
    });
}
