"""dlib's own Python bindings timed on the same images and the same work as `bench_faces`:
CNN detection with one upsampling (as the fixture's reference outputs), then 5-point landmarks and
150x150 chips (padding 0.25) outside the timing, then descriptors of all chips in one batched call.

usage: python dlib_bench.py MODELS_DIR IMAGES_DIR   -> one JSON line on stdout
"""
import json
import os
import sys
import time

import dlib
import numpy as np
from PIL import Image


def main():
    models, images_dir = sys.argv[1], sys.argv[2]
    detector = dlib.cnn_face_detection_model_v1(os.path.join(models, "mmod_human_face_detector.dat"))
    predictor = dlib.shape_predictor(os.path.join(models, "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat"))
    images = [
        np.asarray(Image.open(os.path.join(images_dir, name)).convert("RGB"))
        for name in sorted(os.listdir(images_dir))
        if name.endswith((".png", ".jpg"))
    ]
    start = time.perf_counter()
    detections = [detector(image, 1) for image in images]
    detect_seconds = time.perf_counter() - start
    faces = sum(len(d) for d in detections)
    chips = []
    for image, found in zip(images, detections):
        for d in found:
            shape = predictor(image, d.rect)
            chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
    start = time.perf_counter()
    for first in range(0, len(chips), 32):
        encoder.compute_face_descriptor(chips[first:first + 32])
    descriptor_seconds = time.perf_counter() - start
    print(json.dumps({
        "images": len(images),
        "faces": faces,
        "detection_faces_per_s": faces / detect_seconds,
        "descriptor_faces_per_s": len(chips) / descriptor_seconds,
        "threads": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
