//! `reverie generate --identity FACE_IMAGE ...` on the tiny fixture model with the real face models:
//! guidance runs, every output carries an identity verdict (PNG text and the JSON sidecar), best-of
//! reports every candidate, and bad input is refused with a message naming what was wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn face_image(name: &str) -> String {
    repo()
        .join("tests/fixtures/faces/images")
        .join(name)
        .display()
        .to_string()
}

fn models_dir() -> String {
    std::env::var("REVERIE_MODELS_DIR").unwrap_or_else(|_| {
        panic!("REVERIE_MODELS_DIR is not set: run scripts/test (it fetches the face models)")
    })
}

fn generate(data: &Path, args: &[&str]) -> Output {
    let model = repo().join("tests/fixtures/sd-tiny/model");
    Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(data)
        .arg("generate")
        .arg("--model")
        .arg(model)
        .args(["--prompt", "a portrait", "--size", "64x64", "--steps", "2"])
        .args(["--guidance", "1", "--scheduler", "euler"])
        .args(args)
        .env("REVERIE_MODELS_DIR", models_dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("reverie runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn identity_guidance_runs_and_every_output_carries_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("me.png");
    let reference = face_image("frpy_obama.png");
    let output = generate(
        dir.path(),
        &[
            "--identity",
            &reference,
            "--identity-strength",
            "2",
            "--best-of",
            "2",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("me.json")).unwrap()).unwrap();
    let identity = sidecar["identity"].as_array().expect("identity list");
    assert_eq!(identity.len(), 1, "{sidecar}");
    let person = &identity[0];
    assert_eq!(person["reference"], reference.as_str());
    let distance = person["distance"].as_f64().expect("a distance");
    assert!(distance.is_finite() && distance >= 0.0);
    let verdict = person["verdict"].as_str().unwrap();
    assert!(
        ["verified", "weak", "missing"].contains(&verdict),
        "{verdict}"
    );
    // Random weights draw no detectable face; the verdict must say so, not invent one.
    if verdict == "verified" {
        assert!(distance < 0.6);
    }
    // Both candidates are reported, and the kept seed is one of them.
    let candidates = sidecar["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 2);
    let seeds: Vec<u64> = candidates
        .iter()
        .map(|c| c["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, vec![3, 4]);
    assert!(seeds.contains(&sidecar["seed"].as_u64().unwrap()));
    assert_eq!(sidecar["identity_strength"].as_f64(), Some(2.0));
    // The PNG carries the same report in its text chunks.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let text: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .chain(
            info.utf8_text
                .iter()
                .map(|c| (c.keyword.clone(), c.get_text().unwrap())),
        )
        .collect();
    let chunk = text
        .iter()
        .find(|(k, _)| k == "identity")
        .expect("identity text chunk");
    assert!(chunk.1.contains("verdict"), "{}", chunk.1);
}

#[test]
fn guidance_changes_the_picture_and_zero_strength_only_checks() {
    let dir = tempfile::tempdir().unwrap();
    let reference = face_image("facedetect_grace_hopper.png");
    let mut pictures = Vec::new();
    for strength in ["0", "3"] {
        let out = dir.path().join(format!("s{strength}.png"));
        let output = generate(
            dir.path(),
            &[
                "--identity",
                &reference,
                "--identity-strength",
                strength,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        pictures.push(image::open(&out).unwrap().to_rgb8());
    }
    let differing = pictures[0]
        .as_raw()
        .iter()
        .zip(pictures[1].as_raw())
        .filter(|(a, b)| a != b)
        .count();
    assert!(differing > 100, "guidance left the picture unchanged");
}

#[test]
fn bad_identity_input_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let out = out.to_str().unwrap();
    let refused = |args: &[&str], wanted: &str| {
        let output = generate(dir.path(), args);
        assert!(!output.status.success(), "{args:?} was accepted");
        let message = stderr(&output);
        assert!(
            message.contains(wanted),
            "{args:?}: expected {wanted:?} in: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
    };
    let obama = face_image("frpy_obama.png");
    refused(
        &["--identity", &face_image("dlib_dogs.png"), "--out", out],
        "no face found",
    );
    refused(
        &["--identity", &face_image("kpa_bar55.png"), "--out", out],
        "shows 4 faces",
    );
    refused(
        &[
            "--identity",
            &obama,
            "--identity-strength",
            "-1",
            "--out",
            out,
        ],
        "--identity-strength",
    );
    refused(
        &[
            "--identity",
            &obama,
            "--identity-strength",
            "1e9",
            "--out",
            out,
        ],
        "--identity-strength",
    );
    refused(&["--best-of", "3", "--out", out], "--identity");
    refused(
        &["--identity", &obama, "--best-of", "0", "--out", out],
        "--best-of",
    );
    refused(
        &["--identity", "/nonexistent/face.jpg", "--out", out],
        "/nonexistent/face.jpg",
    );
    // An explicit choice takes the largest face of a group photo instead.
    let output = generate(
        dir.path(),
        &[
            "--identity",
            &face_image("kpa_bar55.png"),
            "--identity-largest-face",
            "--out",
            out,
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

/// A copy of sd-tiny (weights linked) whose VAE config does not force f32: in f16 it cannot be
/// differentiated, and guidance must say so before sampling.
fn sd_tiny_without_upcast(dir: &Path) -> PathBuf {
    let source = repo().join("tests/fixtures/sd-tiny/model");
    let copy = dir.join("sd-tiny-f16");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let target = copy.join(entry.file_name());
        if entry.file_name() == "vae" {
            std::fs::create_dir_all(&target).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                let to = target.join(file.file_name());
                if file.file_name() == "config.json" {
                    let mut config: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
                    config["force_upcast"] = serde_json::Value::Bool(false);
                    std::fs::write(to, serde_json::to_vec(&config).unwrap()).unwrap();
                } else {
                    std::os::unix::fs::symlink(file.path(), to).unwrap();
                }
            }
        } else {
            std::fs::create_dir_all(&copy).unwrap();
            std::os::unix::fs::symlink(entry.path(), target).unwrap();
        }
    }
    copy
}

#[test]
fn guidance_on_a_vae_that_cannot_be_differentiated_is_refused_before_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let model = sd_tiny_without_upcast(dir.path());
    let out = dir.path().join("x.png");
    let output = Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("generate")
        .arg("--model")
        .arg(&model)
        .args(["--prompt", "a portrait", "--size", "64x64", "--steps", "2"])
        .args([
            "--dtype",
            "f16",
            "--identity",
            &face_image("frpy_obama.png"),
        ])
        .arg("--out")
        .arg(&out)
        .env("REVERIE_MODELS_DIR", models_dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("reverie runs");
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("--dtype f32"), "{message}");
    assert!(
        !message.contains("step 1/"),
        "refused only after sampling began: {message}"
    );
    assert!(!out.exists());
}
