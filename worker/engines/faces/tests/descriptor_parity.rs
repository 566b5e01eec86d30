//! Descriptor parity: dlib's saved chips through our ResNet match dlib's descriptors.

mod common;

use common::test_device;
use reverie_faces::models::{ModelStore, DESCRIPTOR_MODEL};
use reverie_faces::resnet::DescriptorNet;

#[test]
fn descriptors_from_reference_chips_match_dlib() {
    let store = ModelStore::new(common::models_dir());
    let bytes = store.load(DESCRIPTOR_MODEL.name).expect("load resnet");
    let net = DescriptorNet::from_bytes(&bytes, &test_device()).expect("parse resnet");
    let mut chips = Vec::new();
    let mut wanted = Vec::new();
    for id in common::reference_ids() {
        let reference = common::reference(&id);
        for face in reference["faces"].as_array().expect("faces") {
            chips.push(common::load_rgb(
                face["chip_file"].as_str().expect("chip file"),
            ));
            let d: Vec<f64> = face["descriptor"]
                .as_array()
                .expect("descriptor")
                .iter()
                .map(|v| v.as_f64().expect("f64"))
                .collect();
            wanted.push((format!("{id}#{}", face["index"]), d));
        }
    }
    assert_eq!(chips.len(), 108, "fixture has 108 faces");
    let mut worst = 0f64;
    for (chunk, want) in chips.chunks(16).zip(wanted.chunks(16)) {
        let refs: Vec<&image::RgbImage> = chunk.iter().collect();
        let got = net.descriptors(&refs).expect("descriptors");
        for (g, (name, w)) in got.iter().zip(want) {
            let d = common::euclidean(g, w);
            worst = worst.max(d);
            assert!(d < 0.01, "{name}: descriptor distance {d} to dlib's");
        }
    }
    eprintln!("worst descriptor distance to dlib: {worst:e}");
}
