"""Training-step cost of the prompt segmenter: 8 prompts vs 1 per sample, and prompt conditioning
vs the plain MONAI backbone with one output channel per structure, at a 2D CPU config (SwinUNETR
feature_size 12, batch 16 of 64x64: the demo's encoder when these figures were first taken) and,
without ``--quick``, at a GPU-sized 3D patch.

    python benchmarks/model_speed.py [--quick] [--rounds R] [--steps N] [--device cpu|cuda] [--bf16]

Each configuration runs in its own process, so its peak memory (CPU: max RSS; CUDA: max
allocated) is its own. A step is forward + Dice/BCE loss + backward + AdamW, timed after warm-up
steps; the prompt model's text embeddings are cached before timing, as in training.

Timing on a shared machine drifts by more than the effects measured here (a single pass of each
configuration gave prompts8_vs_1 of 0.87 to 1.43), so the configurations are interleaved: each
round runs every configuration once, in a rotated order, and a ratio is taken within a round,
where both sides saw the same machine state. Reported: the median over rounds and the spread
(min-max). Next to the times, a count that does not vary: floating-point operations of one step
(forward and backward), from ``torch.utils.flop_counter.FlopCounterMode``.

The last line is ``prompts8_vs_1=<r> conditioning_vs_backbone=<r> flops_prompts8_vs_1=<r>
flops_conditioning_vs_backbone=<r>`` for the CPU config (medians of per-round ratios of median
step times; FLOP ratios). Results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
from functools import partial

from child_process import (  # benchmarks/ is on sys.path when run as a script
    add_child_argument,
    answer_child,
    run_child,
)
from timing import step_times

STRUCTURES = ["lv", "rv", "la", "ra", "myo", "aorta", "pa", "scar"]


def build(kind: str, spatial_dims: int, prompts: int):
    import torch
    from monai.networks.nets import SwinUNETR

    import vocabulary
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


def _step(forward, image, target, mask, loss_fn, optimizer, bf16: bool, device) -> None:
    import torch

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = forward(image)
    loss = loss_fn(logits.float(), target, mask)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(config: dict) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lightning_modules.training.losses import PartialLabelLoss

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
    step = partial(_step, forward, image, target, mask, loss_fn, optimizer, config["bf16"], device)
    flops = None
    if config.get("count_flops"):
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops()
    times = step_times(step, device, config["warmup"], config["steps"])
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {**config, "step_s": statistics.median(times), "peak_mib": peak, "flops": flops}


def run(config: dict) -> dict:
    """``measure(config)`` in a fresh process (own peak memory)."""
    return run_child(__file__, config)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU config only (about 2 minutes on 2 cores)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every configuration")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration and round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    add_child_argument(parser)
    args = parser.parse_args()
    if answer_child(args.child, measure):
        return
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    sizes = [("cpu config 2D", [64, 64], 16)]
    if not args.quick:
        sizes.append(("3D patch", [96, 96, 96] if args.device == "cpu" else [128, 128, 128], 1 if args.device == "cpu" else 2))
    kinds = [("prompt", 1), ("prompt", 8), ("backbone", 8), ("multiscale", 8)]
    for name, patch, batch in sizes:
        steps = args.steps or (8 if len(patch) == 2 else 3)
        base = {"patch": patch, "batch": batch, "device": args.device, "bf16": args.bf16, "steps": steps, "warmup": 2}
        times: dict[tuple, list[float]] = {kind: [] for kind in kinds}
        first: dict[tuple, dict] = {}
        for round_index in range(args.rounds):
            order = kinds[round_index % len(kinds):] + kinds[:round_index % len(kinds)]  # rotated: no fixed position
            for kind, prompts in order:
                result = run({**base, "kind": kind, "prompts": prompts, "count_flops": round_index == 0})
                times[(kind, prompts)].append(result["step_s"])
                first.setdefault((kind, prompts), result)
        for kind, prompts in kinds:
            result = first[(kind, prompts)]
            print(f"{name} {'x'.join(map(str, patch))} batch {batch} {args.device}{' bf16' if args.bf16 else ''}: "
                  f"{kind} model, {prompts} {'output channels' if kind == 'backbone' else 'prompts'}: "
                  f"s/step {spread(times[(kind, prompts)])} over {args.rounds} rounds, "
                  f"{result['flops'] / 1e9:.2f} GFLOP/step, peak {result['peak_mib']:.0f} MiB", flush=True)
        ratios = {
            "prompts8_vs_1": (("prompt", 8), ("prompt", 1)),
            "conditioning_vs_backbone": (("prompt", 8), ("backbone", 8)),
            "multiscale_vs_single": (("multiscale", 8), ("prompt", 8)),
        }
        per_round = {key: [a / b for a, b in zip(times[top], times[bottom])] for key, (top, bottom) in ratios.items()}
        flops = {key: first[top]["flops"] / first[bottom]["flops"] for key, (top, bottom) in ratios.items()}
        for key in ratios:
            print(f"{name}: {key} time {spread(per_round[key])} (per-round ratios), FLOPs {flops[key]:.3f}")
        if name == sizes[0][0]:
            summary = (f"prompts8_vs_1={statistics.median(per_round['prompts8_vs_1']):.3f} "
                       f"conditioning_vs_backbone={statistics.median(per_round['conditioning_vs_backbone']):.3f} "
                       f"flops_prompts8_vs_1={flops['prompts8_vs_1']:.3f} "
                       f"flops_conditioning_vs_backbone={flops['conditioning_vs_backbone']:.3f}")
    print(summary)


if __name__ == "__main__":
    main()
