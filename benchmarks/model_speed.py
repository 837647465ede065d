"""Training-step cost of the prompt segmenter: 8 prompts vs 1 per sample, and prompt conditioning
vs the plain MONAI backbone with one output channel per structure, at the demo's CPU config as it
was until issue 13 (2D SwinUNETR feature_size 12, batch 16 of 64x64; the demo's encoder is now the
plain U-Net, ``networks.unet.PlainUNet``) and, without ``--quick``, at a GPU-sized 3D patch.

    python benchmarks/model_speed.py [--quick] [--steps N] [--device cpu|cuda] [--bf16]

Each configuration runs in its own process, so its peak memory (CPU: max RSS; CUDA: max
allocated) is its own. A step is forward + Dice/BCE loss + backward + AdamW, timed after warm-up
steps; the prompt model's text embeddings are cached before timing, as in training. The last
line is ``prompts8_vs_1=<ratio> conditioning_vs_backbone=<ratio>`` for the CPU config (ratios of
median step times). Results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from functools import partial

import argparse
import resource
import statistics
import time

from child_process import add_child_argument, answer_child, run_child  # benchmarks/ is on sys.path when run as a script

STRUCTURES = ["lv", "rv", "la", "ra", "myo", "aorta", "pa", "scar"]


def build(kind: str, spatial_dims: int, prompts: int):
    import torch
    from monai.networks.nets import SwinUNETR

    from datamodules import vocabulary
    from networks.prompt_decoder import PromptMaskDecoder
    from networks.prompt_encoder import TextPromptEncoder
    from networks.segmenter import PromptSegmenter

    if kind == "backbone":  # the plain MONAI network, one output channel per structure
        net = SwinUNETR(in_channels=1, out_channels=prompts, feature_size=12, spatial_dims=spatial_dims)
        return net, lambda image: net(image)
    backbone = SwinUNETR(in_channels=1, out_channels=32, feature_size=12, spatial_dims=spatial_dims)
    if kind == "multiscale":  # experiments/multiscale_decoder.yaml: queries read the 1/32, 1/16 and output features
        decoder = partial(PromptMaskDecoder, num_layers=3, num_heads=4)
        net = PromptSegmenter(backbone, TextPromptEncoder(embed_dim=128), decoder, ["encoder10", "decoder5", "out"])
    else:
        net = PromptSegmenter(backbone, TextPromptEncoder(embed_dim=128), partial(PromptMaskDecoder, num_layers=2, num_heads=4))
    texts = [vocabulary.prompt(s, "CT") for s in STRUCTURES[:prompts]]

    def forward(image):
        embeddings, padding = net.encode_prompts([texts] * image.shape[0])
        return net(image, embeddings, padding)

    forward(torch.zeros(1, 1, *([64] * spatial_dims)))  # fill the text cache before timing
    return net, forward


def measure(config: dict) -> dict:
    import torch

    from lightning_modules.losses import PartialLabelLoss

    torch.manual_seed(0)
    device = torch.device(config["device"])
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    net, forward = build(config["kind"], len(config["patch"]), config["prompts"])
    net.to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = PartialLabelLoss()
    image = torch.randn(config["batch"], 1, *config["patch"], device=device)
    target = (torch.rand(config["batch"], config["prompts"], *config["patch"], device=device) > 0.9).float()
    mask = torch.ones(config["batch"], config["prompts"], dtype=torch.bool, device=device)
    times = []
    for step in range(config["warmup"] + config["steps"]):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["bf16"]):
            logits = forward(image)
        loss = loss_fn(logits.float(), target, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= config["warmup"]:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {**config, "step_s": statistics.median(times), "peak_mib": peak}


def run(config: dict) -> dict:
    """``measure(config)`` in a fresh process (own peak memory)."""
    return run_child(__file__, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU config only (under 3 minutes on 2 cores)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    add_child_argument(parser)
    args = parser.parse_args()
    if answer_child(args.child, measure):
        return
    sizes = [("cpu config 2D", [64, 64], 16)]
    if not args.quick:
        sizes.append(("3D patch", [96, 96, 96] if args.device == "cpu" else [128, 128, 128], 1 if args.device == "cpu" else 2))
    results = {}
    for name, patch, batch in sizes:
        steps = args.steps or (8 if len(patch) == 2 else 3)
        base = {"patch": patch, "batch": batch, "device": args.device, "bf16": args.bf16, "steps": steps, "warmup": 2}
        for kind, prompts in (("prompt", 1), ("prompt", 8), ("backbone", 8), ("multiscale", 8)):
            result = run({**base, "kind": kind, "prompts": prompts})
            results[(name, kind, prompts)] = result
            print(f"{name} {'x'.join(map(str, patch))} batch {batch} {args.device}{' bf16' if args.bf16 else ''}: "
                  f"{kind} model, {prompts} {'output channels' if kind == 'backbone' else 'prompts'}: "
                  f"{result['step_s']:.3f} s/step, peak {result['peak_mib']:.0f} MiB", flush=True)
    first = sizes[0][0]
    eight, one = results[(first, "prompt", 8)]["step_s"], results[(first, "prompt", 1)]["step_s"]
    backbone = results[(first, "backbone", 8)]["step_s"]
    print(f"multiscale_vs_single={results[(first, 'multiscale', 8)]['step_s'] / eight:.3f} (8 prompts)")
    print(f"prompts8_vs_1={eight / one:.3f} conditioning_vs_backbone={eight / backbone:.3f}")


if __name__ == "__main__":
    main()
