//! Writes each photo as decoded by this project (the `image` crate, no orientation) to a lossless PNG
//! in OUT_DIR, so the TFJS reference run sees exactly the pixels our detector sees: JPEG decoders
//! disagree by a fraction of a level (chroma upsampling, IDCT rounding), which is not what the
//! parity test is about.
//!
//! `cargo run -p reverie-pets --example decoded_copies -- OUT_DIR PHOTO...`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: decoded_copies OUT_DIR PHOTO...")?,
    );
    std::fs::create_dir_all(&out)?;
    for path in args {
        let photo = image::open(&path)?.to_rgb8();
        let name = std::path::Path::new(&path)
            .file_name()
            .ok_or("photo path has no file name")?;
        let target = out.join(format!("{}.png", name.to_string_lossy()));
        photo.save(&target)?;
        println!("{}", target.display());
    }
    Ok(())
}
