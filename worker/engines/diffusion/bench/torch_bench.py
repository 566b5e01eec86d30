#!/usr/bin/env python3
"""PyTorch/diffusers side of the diffusion CPU benchmark (examples/cpu_bench/main.rs runs it).

usage: torch_bench.py MODEL_DIR --size W[xH] --steps N [--unet-runs R] [--image-runs K] [--threads T]
       torch_bench.py MODEL_DIR --size W[xH] --steps N --adapter-overhead --lora FILE:WEIGHT ...
                      --ip-adapter FILE --ip-image PNG --ip-scale S [--image-runs K] [--threads T]

Loads the diffusers folder MODEL_DIR (the very folder our side loads; SD 1.x/2.x or SDXL, by
model_index.json), then times on the CPU:
  * one UNet step: a batch-2 forward (classifier-free guidance) with 77 text tokens (SDXL: plus
    added_cond_kwargs text_embeds and time_ids), median of R;
  * one image: the model's pipeline with N steps, guidance 7.5 and VAE decode to PIL, median of K.
Each is preceded by a warm-up call. Prints one JSON object on stdout; peak_rss_mb is this
process's VmHWM, so run it in its own process.

--adapter-overhead times whole generations instead, each variant on its own pipeline, in
interleaved rounds after a warm-up round: without adapters, with the LoRAs on PEFT's unfused
low-rank side path (load_lora_weights + set_adapters, diffusers' default), with them fused
(fuse_lora, then unload_lora_weights drops the PEFT wrappers) and with the IP-Adapter
(load_ip_adapter, image prompt encoded in each generation). For each: seconds per step (median
interval between consecutive callback_on_step_end calls), per image (median of K), and the time of
the adapter calls on the loaded pipeline.
"""
import argparse
import json
import os
import statistics
import sys
import time

PROMPT = "a lighthouse on a cliff at sunset"
GUIDANCE = 7.5
TEXT_TOKENS = 77
# SDXL base's time ids: original size, crop top-left, target size (the refiner has 5).
XL_TIME_IDS = 6


def peak_rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def median_seconds(work, runs):
    work()  # warm-up: first-touch allocations, lazily picked kernels
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_size(text):
    """`W` (square) or `WxH` pixels -> (width, height)."""
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def parse_lora(text):
    path, _, weight = text.rpartition(":")
    return path, float(weight)


def is_xl(model_dir):
    with open(os.path.join(model_dir, "model_index.json")) as index:
        return json.load(index)["_class_name"].startswith("StableDiffusionXL")


def load_pipeline(model_dir):
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if is_xl(model_dir):
        pipe = StableDiffusionXLPipeline.from_pretrained(
            model_dir, add_watermarker=False, torch_dtype=torch.float32
        )
    else:
        pipe = StableDiffusionPipeline.from_pretrained(
            model_dir, safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unet_step_inputs(unet, width, height):
    """Random batch-2 inputs of one CFG UNet step: positional args and keyword args."""
    import torch

    config = unet.config
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, config.in_channels, height // 8, width // 8, generator=generator)
    text = torch.randn(2, TEXT_TOKENS, config.cross_attention_dim, generator=generator)
    kwargs = {"encoder_hidden_states": text}
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - XL_TIME_IDS * config.addition_time_embed_dim
        time_ids = torch.tensor([[height, width, 0, 0, height, width]] * 2, dtype=torch.float32)
        text_embeds = torch.randn(2, pooled, generator=generator)
        kwargs["added_cond_kwargs"] = {"text_embeds": text_embeds, "time_ids": time_ids}
    return (sample, torch.tensor([999.0, 749.0])), kwargs


def generate(pipe, width, height, steps, **extra):
    import torch

    return pipe(
        PROMPT,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(1),
        output_type="pil",
        **extra,
    )


def measure_model(args, width, height):
    import torch

    pipe = load_pipeline(args.model)
    unet = pipe.unet
    inputs, kwargs = unet_step_inputs(unet, width, height)
    with torch.inference_mode():
        unet_step_s = median_seconds(lambda: unet(*inputs, **kwargs), args.unet_runs)
        image_s = median_seconds(lambda: generate(pipe, width, height, args.steps), args.image_runs)
    return {"unet_step_s": unet_step_s, "image_s": image_s, "peak_rss_mb": peak_rss_mb()}


class RenderTimings:
    """Seconds of whole pictures and of their denoising steps. A step is the interval between two
    consecutive step-end callbacks: one CFG UNet forward plus the scheduler step, without the
    prompt encoding before the loop and the VAE decode after it."""

    def __init__(self):
        self.image_s = []
        self.step_s = []

    def record(self, run_generation):
        stamps = []

        def on_step_end(_pipe, _step, _timestep, callback_kwargs):
            stamps.append(time.perf_counter())
            return callback_kwargs

        start = time.perf_counter()
        run_generation(on_step_end)
        self.image_s.append(time.perf_counter() - start)
        self.step_s.extend(later - earlier for earlier, later in zip(stamps, stamps[1:]))


def seconds(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def load_loras(pipe, loras):
    names = [f"lora{i}" for i in range(len(loras))]
    for name, (path, _) in zip(names, loras):
        pipe.load_lora_weights(path, adapter_name=name)
    pipe.set_adapters(names, adapter_weights=[weight for _, weight in loras])


def fuse_loras(pipe):
    # Fusing merges the deltas into the base weights; unloading then removes PEFT's wrappers, so
    # the UNet runs plain layers as ours does.
    pipe.fuse_lora()
    pipe.unload_lora_weights()


def load_ip_adapter(pipe, adapter_path, scale):
    from transformers import CLIPImageProcessor

    folder, weight_name = os.path.split(adapter_path)
    pipe.load_ip_adapter(folder, subfolder="", weight_name=weight_name, image_encoder_folder="image_encoder")
    # The default CLIPImageProcessor resizes to 224 px; the fixture's vision tower takes its own size.
    side = pipe.image_encoder.config.image_size
    pipe.feature_extractor = CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )
    pipe.set_ip_adapter_scale(scale)


def adapter_variants(args):
    """(kind, label, setup on a freshly loaded pipeline, extra pipeline arguments) of each variant;
    the kinds are the ones examples/cpu_bench/adapters.rs reads."""
    from PIL import Image

    loras = [parse_lora(text) for text in args.lora]
    names = " + ".join(f"{os.path.splitext(os.path.basename(path))[0]} {weight}" for path, weight in loras)

    def side_path(pipe):
        load_loras(pipe, loras)

    def fused(pipe):
        load_loras(pipe, loras)
        fuse_loras(pipe)

    def ip_adapter(pipe):
        load_ip_adapter(pipe, args.ip_adapter, args.ip_scale)

    photo = Image.open(args.ip_image).convert("RGB")
    return [
        ("no_adapters", "none", lambda pipe: None, {}),
        ("lora_side_path", f"LoRAs {names}, PEFT side path (unfused)", side_path, {}),
        ("lora_fused", f"LoRAs {names}, fuse_lora + unload_lora_weights", fused, {}),
        # The photo is encoded in each generation, as our side does.
        ("ip_adapter", f"IP-Adapter (plain), scale {args.ip_scale}", ip_adapter, {"ip_adapter_image": photo}),
    ]


def measure_adapters(args, width, height):
    """Every variant on its own pipeline, in interleaved rounds (each renders every variant once) so
    that a change of load on a shared machine hits all variants alike; the first round is a warm-up."""
    import torch

    loaded = []
    for kind, label, setup, extra in adapter_variants(args):
        pipe = load_pipeline(args.model)
        loaded.append((kind, label, pipe, extra, seconds(lambda: setup(pipe))))
    timings = [RenderTimings() for _ in loaded]
    with torch.inference_mode():
        for round_index in range(args.image_runs + 1):
            for (_, _, pipe, extra, _), timing in zip(loaded, timings):

                def run_generation(on_step_end, pipe=pipe, extra=extra):
                    generate(pipe, width, height, args.steps, callback_on_step_end=on_step_end, **extra)

                if round_index == 0:
                    run_generation(None)
                else:
                    timing.record(run_generation)
    return {
        "variants": [
            {
                "kind": kind,
                "label": label,
                "step_s": statistics.median(timing.step_s),
                "image_s": statistics.median(timing.image_s),
                "extra_load_s": extra_load_s,
            }
            for (kind, label, _, _, extra_load_s), timing in zip(loaded, timings)
        ]
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--size", required=True, help="image size in pixels: W (square) or WxH")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--unet-runs", type=int, default=3)
    parser.add_argument("--image-runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapter-overhead", action="store_true")
    parser.add_argument("--lora", action="append", default=[], help="FILE:WEIGHT, repeatable")
    parser.add_argument("--ip-adapter")
    parser.add_argument("--ip-image")
    parser.add_argument("--ip-scale", type=float, default=0.5)
    args = parser.parse_args()

    import torch
    import diffusers

    torch.set_num_threads(args.threads)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()

    width, height = parse_size(args.size)
    if args.adapter_overhead:
        if not (args.lora and args.ip_adapter and args.ip_image):
            parser.error("--adapter-overhead needs --lora, --ip-adapter and --ip-image")
        measured = measure_adapters(args, width, height)
    else:
        measured = measure_model(args, width, height)
    print(
        json.dumps(
            {
                "implementation": f"diffusers {diffusers.__version__} / torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                **measured,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
