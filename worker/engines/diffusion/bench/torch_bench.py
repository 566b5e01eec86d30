#!/usr/bin/env python3
"""PyTorch/diffusers side of the diffusion CPU benchmark (examples/cpu_bench.rs runs it).

usage: torch_bench.py MODEL_DIR --size PIXELS --steps N [--unet-runs R] [--image-runs K] [--threads T]

Loads the diffusers folder MODEL_DIR (the very folder our side loads), then times on the CPU:
  * one UNet step: a batch-2 forward (classifier-free guidance) with 77 text tokens, median of R;
  * one image: StableDiffusionPipeline with N steps, guidance 7.5 and VAE decode to PIL, median of K.
Each is preceded by a warm-up call. Prints one JSON object on stdout; peak_rss_mb is this
process's VmHWM, so run it in its own process.
"""
import argparse
import json
import statistics
import sys
import time


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--size", type=int, required=True, help="image side in pixels")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--unet-runs", type=int, default=3)
    parser.add_argument("--image-runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    import diffusers
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(args.threads)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()

    pipe = StableDiffusionPipeline.from_pretrained(
        args.model, safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet
    latent = args.size // 8
    context = unet.config.cross_attention_dim
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, unet.config.in_channels, latent, latent, generator=generator)
    text = torch.randn(2, 77, context, generator=generator)
    timesteps = torch.tensor([999.0, 749.0])

    with torch.inference_mode():
        unet_step_s = median_seconds(lambda: unet(sample, timesteps, encoder_hidden_states=text), args.unet_runs)

        def one_image():
            pipe(
                "a lighthouse on a cliff at sunset",
                height=args.size,
                width=args.size,
                num_inference_steps=args.steps,
                guidance_scale=7.5,
                generator=torch.Generator().manual_seed(1),
                output_type="pil",
            )

        image_s = median_seconds(one_image, args.image_runs)

    print(
        json.dumps(
            {
                "implementation": f"diffusers {diffusers.__version__} / torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "unet_step_s": unet_step_s,
                "image_s": image_s,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
