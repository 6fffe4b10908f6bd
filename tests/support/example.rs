//! Where `cargo test` put the example program.

use std::path::PathBuf;

/// The `omni_pipeline` example, built by `cargo test` beside the test binaries
/// (target/<profile>/examples).
#[track_caller]
#[allow(dead_code)] // Not every test target that includes this file runs it.
pub(crate) fn omni_pipeline() -> PathBuf {
    built("omni_pipeline")
}

/// The `multiprocess` example, as [`omni_pipeline`].
#[track_caller]
#[allow(dead_code)] // Not every test target that includes this file runs it.
pub(crate) fn multiprocess() -> PathBuf {
    built("multiprocess")
}

/// The `serve` example, as [`omni_pipeline`].
#[track_caller]
#[allow(dead_code)] // Not every test target that includes this file runs it.
pub(crate) fn serve() -> PathBuf {
    built("serve")
}

/// The example `name`, built by `cargo test` beside the test binaries.
#[track_caller]
fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) else {
        panic!("unexpected test binary location {}", exe.display());
    };
    let example = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.exists(),
        "{} is built by `cargo test`",
        example.display()
    );
    example
}
