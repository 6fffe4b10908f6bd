//! `omni-metrics report FILE...` and `omni-metrics compare BASE NEW`: see
//! [`omni_metrics::cli`].

fn main() -> std::process::ExitCode {
    omni_metrics::cli::main()
}
