//! Fuzz target `nvidia_smi_csv`: see `odin_fuzz::nvidia_smi_csv`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        odin_fuzz::nvidia_smi_csv::run(data);
    });
}
