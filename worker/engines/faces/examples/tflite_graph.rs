//! Prints the operator list of a `.tflite` file (development aid for the
//! segmentation network): `cargo run -p reverie-faces --example tflite_graph -- FILE`.
fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: tflite_graph FILE.tflite");
    let bytes = std::fs::read(&path).expect("read file");
    match reverie_faces::segmentation::tflite::TfliteModel::parse(&bytes) {
        Ok(model) => {
            println!(
                "version {} description {:?}",
                model.version, model.description
            );
            println!("inputs {:?} outputs {:?}", model.inputs, model.outputs);
            print!("{}", model.describe());
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
