//! The command line on the embedded default, as a person uses it: import, show, analyse, similar,
//! people (name, merge, split), re-import — all in one data directory, no services.

use std::path::{Path, PathBuf};
use std::process::Command;

fn reverie(data: &Path, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reverie"));
    command
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG");
    if let Ok(models) = std::env::var("REVERIE_MODELS_DIR") {
        command.env("REVERIE_MODELS_DIR", models);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "reverie {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Creates the tenant and grants consent for its library: what the library's analysis needs.
fn consent(data: &Path, tenant: &str) {
    reverie(data, &["tenant", "create", tenant]);
    reverie(data, &["consent", "grant", "--tenant", tenant, "library"]);
}

fn fixtures(part: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(part)
        .display()
        .to_string()
}

#[test]
fn import_show_analyse_and_find_similar_photos() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    consent(d, "ann");
    let out = reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "ann",
            &fixtures("library/folder"),
        ],
    );
    assert!(out.contains("imported 11 photos"), "{out}");
    let summary: serde_json::Value = serde_json::from_str(&reverie(
        d,
        &["library", "show", "--tenant", "ann", "--json"],
    ))
    .unwrap();
    assert_eq!(summary["schema"], "reverie.library-summary.v1");
    assert_eq!(summary["photos"], 11);
    assert_eq!(summary["places"][0]["name"], "Home");
    assert_eq!(summary["light"]["sunset"], 1);
    reverie(d, &["analyse", "--tenant", "ann"]);
    let similar = reverie(
        d,
        &[
            "library",
            "similar",
            "--tenant",
            "ann",
            "waikiki_sunset.jpg",
            "--count",
            "3",
        ],
    );
    let lines: Vec<&str> = similar.lines().collect();
    assert_eq!(lines.len(), 3, "{similar}");
    let scores: Vec<f32> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "closest first: {scores:?}"
    );
    assert!(
        !similar.contains("waikiki_sunset.jpg"),
        "a photo is not its own neighbour"
    );
}

#[test]
fn people_are_named_merged_and_split_and_survive_a_reimport() {
    if std::env::var_os("REVERIE_MODELS_DIR").is_none() {
        panic!("REVERIE_MODELS_DIR is not set: run scripts/test (it fetches the face models)");
    }
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let photos = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures("faces/images")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("frpy_obama") || name.starts_with("johns_John_Salley_0001") {
            std::fs::copy(&path, photos.path().join(&name)).unwrap();
        }
    }
    consent(d, "bo");
    // The import analyses the library (consent given): people are there without another command.
    reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "bo",
            &photos.path().display().to_string(),
        ],
    );
    let people: serde_json::Value =
        serde_json::from_str(&reverie(d, &["people", "list", "--tenant", "bo", "--json"])).unwrap();
    let people = people.as_array().unwrap().clone();
    assert_eq!(people.len(), 2, "Obama and John Salley: {people:#?}");
    let obama = people
        .iter()
        .find(|p| p["faces"][0]["photo"].as_str().unwrap().contains("obama"))
        .unwrap();
    let salley = people
        .iter()
        .find(|p| p["faces"][0]["photo"].as_str().unwrap().contains("Salley"))
        .unwrap();
    let (obama_id, salley_id) = (obama["id"].to_string(), salley["id"].to_string());
    reverie(
        d,
        &["people", "name", "--tenant", "bo", &obama_id, "Barack"],
    );
    reverie(d, &["people", "name", "--tenant", "bo", &salley_id, "me"]);

    // Split one face off Barack, then merge it back.
    let face = &obama["faces"][0];
    let b = &face["box"];
    let spec = format!(
        "{}:{},{},{},{}",
        face["photo_id"].as_str().unwrap(),
        b["left"],
        b["top"],
        b["right"],
        b["bottom"]
    );
    let split = reverie(
        d,
        &[
            "people", "split", "--tenant", "bo", &obama_id, "--face", &spec,
        ],
    );
    let new_id = split.trim().rsplit(' ').next().unwrap().to_string();
    let after_split: serde_json::Value =
        serde_json::from_str(&reverie(d, &["people", "list", "--tenant", "bo", "--json"])).unwrap();
    assert_eq!(after_split.as_array().unwrap().len(), 3);
    reverie(
        d,
        &["people", "merge", "--tenant", "bo", &obama_id, &new_id],
    );

    // A re-import and a re-analysis keep the names.
    reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "bo",
            &photos.path().display().to_string(),
        ],
    );
    reverie(d, &["analyse", "--tenant", "bo"]);
    let people: serde_json::Value =
        serde_json::from_str(&reverie(d, &["people", "list", "--tenant", "bo", "--json"])).unwrap();
    let people = people.as_array().unwrap();
    assert_eq!(people.len(), 2);
    let barack = people
        .iter()
        .find(|p| p["name"] == "Barack")
        .expect("the name survived");
    assert_eq!(
        barack["faces"].as_array().unwrap().len(),
        obama["faces"].as_array().unwrap().len()
    );
    assert!(
        people.iter().any(|p| p["is_me"] == true),
        "\"me\" marks the tenant's own person"
    );
}

/// `reverie` expected to fail: its stderr.
fn reverie_fails(data: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "reverie {args:?} should have failed"
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn without_consent_nothing_is_analysed_and_the_people_list_says_why() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    reverie(d, &["tenant", "create", "cy"]);
    let report: serde_json::Value = serde_json::from_str(&reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "cy",
            "--json",
            &fixtures("library/folder"),
        ],
    ))
    .unwrap();
    assert_eq!(report["imported"], 11);
    assert_eq!(report["analysis"]["ran"], "not_run");
    assert_eq!(report["analysis"]["analysis"], "no_consent");

    let listed: serde_json::Value =
        serde_json::from_str(&reverie(d, &["people", "list", "--tenant", "cy", "--json"])).unwrap();
    assert_eq!(listed["analysis"], "no_consent", "{listed}");
    assert_eq!(listed["people"], serde_json::json!([]));
    assert_eq!(listed["shards_analysed"], 0);
    let message = listed["message"].as_str().unwrap();
    assert!(
        message.contains("reverie consent grant --tenant cy library"),
        "says how to grant consent: {message}"
    );
    let text = reverie(d, &["people", "list", "--tenant", "cy"]);
    assert!(text.contains("has not consented"), "{text}");
    let refused = reverie_fails(d, &["analyse", "--tenant", "cy"]);
    assert!(refused.contains("has not consented"), "{refused}");
    assert!(
        reverie(d, &["library", "show", "--tenant", "cy"]).contains("not computed yet"),
        "no palettes either: nothing was analysed"
    );

    // Granting consent runs the analysis that was waiting for it.
    let granted = reverie(d, &["consent", "grant", "--tenant", "cy", "library"]);
    assert!(granted.contains("analysed"), "{granted}");
    let listed: serde_json::Value =
        serde_json::from_str(&reverie(d, &["people", "list", "--tenant", "cy", "--json"])).unwrap();
    assert!(
        listed.is_array(),
        "a finished analysis lists people as before: {listed}"
    );
}

#[test]
fn a_takeout_zip_imports_as_downloaded_and_unsafe_entries_are_listed() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let out = reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "zoe",
            &fixtures("library/takeout.zip"),
        ],
    );
    assert!(out.contains("imported 7 photos"), "{out}");
    let out = reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "zoe",
            &fixtures("library/malicious.zip"),
        ],
    );
    assert!(out.contains("imported 1 photos"), "{out}");
    for line in [
        "../../escaped.jpg: unsafe path: path traversal (..)",
        "/etc/absolute.jpg: unsafe path: absolute path",
        "Takeout/Google Photos/Trip/link_to_passwd.jpg: unsafe path: symbolic link in archive",
    ] {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
}

/// On a farm (a broker configured) the import publishes one analysis job per shard for the workers,
/// and `people list` says the analysis is pending until they are done.
#[test]
fn on_a_farm_the_import_queues_the_analysis_for_the_workers() {
    let Ok(amqp) = std::env::var("REVERIE_TEST_AMQP_URL") else {
        panic!("REVERIE_TEST_AMQP_URL is not set: run scripts/test (it starts RabbitMQ)");
    };
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let prefix = "cli-analysis-test";
    let farm = |args: &[&str]| {
        let mut all = vec!["--amqp-url", amqp.as_str(), "--set"];
        let queues = format!("queues.prefix={prefix}");
        all.push(&queues);
        all.extend_from_slice(args);
        reverie(d, &all)
    };
    farm(&["tenant", "create", "dee"]);
    farm(&["consent", "grant", "--tenant", "dee", "library"]);
    let report: serde_json::Value = serde_json::from_str(&farm(&[
        "library",
        "import",
        "--tenant",
        "dee",
        "--json",
        &fixtures("library/folder"),
    ]))
    .unwrap();
    assert_eq!(report["analysis"]["ran"], "queued", "{report}");
    assert_eq!(report["analysis"]["jobs"], 1);
    let listed: serde_json::Value =
        serde_json::from_str(&farm(&["people", "list", "--tenant", "dee", "--json"])).unwrap();
    assert_eq!(listed["analysis"], "pending", "{listed}");
    assert!(listed["message"].as_str().unwrap().contains("workers"));
    // The job is on the analysis queue, as a worker would take it.
    let again: serde_json::Value = serde_json::from_str(&farm(&[
        "library",
        "import",
        "--tenant",
        "dee",
        "--json",
        &fixtures("library/folder"),
    ]))
    .unwrap();
    assert_eq!(again["imported"], 0);
    assert_eq!(
        again["analysis"]["jobs"], 1,
        "a shard without an analysis is queued again (the job id is the shard's)"
    );
}
