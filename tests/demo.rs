//! The README's first command, `reverie demo`, on the embedded default: no service addresses, state in a
//! fresh data directory. Every request of the demo must succeed and leave its images and provenance.

use std::path::Path;
use std::process::Command;

/// Service settings that would move the demo off the embedded adapters.
const SERVICE_VARIABLES: [&str; 5] = [
    "REVERIE_AMQP_URL",
    "REVERIE_REDIS_URL",
    "REVERIE_S3_BUCKET",
    "REVERIE_S3_ENDPOINT",
    "REVERIE_CONFIG",
];

fn files_named(dir: &Path, extension: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                files_named(&path, extension)
            } else {
                usize::from(path.extension().is_some_and(|e| e == extension))
            }
        })
        .sum()
}

#[test]
fn the_demo_runs_on_the_embedded_default() {
    let work = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_reverie"));
    command
        .current_dir(work.path())
        .env("REVERIE_DATA_DIR", work.path().join("data"))
        .args(["demo", "--out", "images"]);
    for variable in SERVICE_VARIABLES {
        command.env_remove(variable);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        !stdout.contains("Failed") && stdout.matches("Succeeded").count() >= 5,
        "every demo request succeeds:\n{stdout}"
    );
    let images = work.path().join("images");
    let pngs = files_named(&images, "png");
    assert!(pngs >= 14, "images written: {pngs}\n{stdout}");
    assert!(
        files_named(&images, "json") >= pngs,
        "every image has its provenance JSON beside it"
    );
}
