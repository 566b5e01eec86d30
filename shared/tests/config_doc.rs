//! docs/configuration.md is generated from the key table; this keeps the two from drifting.
//! `REVERIE_BLESS=1 cargo test -p reverie-shared --test config_doc` rewrites the document.

use reverie_shared::config::Config;

const HEADER: &str = "# Configuration\n\nEvery key, from `shared/src/config/keys.rs` (`reverie config keys` prints the same table).\nLayers, later ones winning: defaults < TOML file (`--config FILE` / `REVERIE_CONFIG`) < `REVERIE_*`\nenvironment variables < flags (`--data-dir`, `--amqp-url`, `--redis-url`, `--s3-bucket`, `--s3-endpoint`,\n`--log-format`, and `--set key=value` for any key). Secrets take a value or a `*_file` path, never both.\nWith no service addresses, every command uses the embedded adapters under `data_dir`.\n\n";

#[test]
fn configuration_doc_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let expected = format!("{HEADER}{}", Config::keys_markdown());
    if std::env::var_os("REVERIE_BLESS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/configuration.md is stale: run REVERIE_BLESS=1 cargo test -p reverie-shared --test config_doc"
    );
}
