"""How the tasks of the unified model pull on the shared weights: per-task gradients at saved
checkpoints, on the training patches the experiment draws.

    python benchmarks/task_gradients.py CKPT [CKPT ...] [--config experiments/real_samples.yaml]
                                        [--pairs 6] [--samples 4]
    python benchmarks/task_gradients.py --time 5 [--config ...]

For each checkpoint and each of ``--pairs`` pairs of one-task batches (``--samples`` patches of
each task, drawn as the experiment's sampler draws them, with its augmentation), each task's
gradient is taken with the weight its structure groups have in a mixed batch's Dice term (LA 1
of 4, MyoPS 3 of 4). Printed per part of the network (image encoder = ``net.backbone``, prompt
decoder = ``net.decoder``): the cosine between the two tasks' gradients, their norms, and the
norms after dividing by Adam's second-moment estimate from the checkpoint (the step Adam would
take for each task alone, up to the learning rate). A negative cosine with a much larger norm
on one side means the summed step cancels the other task's descent.

``--time R`` instead times training steps (forward, loss, backward, AdamW) on one mixed batch of
the experiment's batch size (half of each task) with the plain summed loss, ``gradient_balance``
and ``gradient_surgery``, interleaved over R rounds of 10 steps each, and prints each one's
median and spread of seconds per step and its ratio to the plain step. Results are recorded in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.collate import collate_patches  # noqa: E402
from datamodules.sampling import PatchDraw  # noqa: E402
from lightning_modules.experiment import build_experiment  # noqa: E402

PARTS = ("net.backbone", "net.decoder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--config", default=str(REPO / "experiments" / "real_samples.yaml"))
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--time", type=int, default=0, metavar="ROUNDS")
    args = parser.parse_args()
    if not args.checkpoints and not args.time:
        parser.error("give checkpoints to measure gradients at, or --time ROUNDS")
    torch.set_num_threads(2)
    cli = build_experiment(["--config", args.config, "--trainer.logger", "false"])
    module, datamodule = cli.model, cli.datamodule
    datamodule.setup("fit")
    dataset = datamodule.train_dataloader().dataset
    by_task: dict[str, list[int]] = {}
    for index, case in enumerate(dataset.cases):
        by_task.setdefault(case.case.task, []).append(index)
    if len(by_task) != 2:
        raise SystemExit(f"needs an experiment with two training tasks, got {sorted(by_task)}")
    tasks = sorted(by_task)
    rng = np.random.default_rng(0)

    def one_task_batch(task: str) -> dict:
        return collate_patches([dataset[PatchDraw(int(rng.choice(by_task[task])), int(rng.integers(1 << 30)))]
                                for _ in range(args.samples)])

    if args.time:
        half = datamodule.batch_size // 2
        samples = [dataset[PatchDraw(int(rng.choice(by_task[t])), int(rng.integers(1 << 30)))]
                   for t in tasks for _ in range(half)]
        time_steps(module, collate_patches(samples), args.time)
        return
    pairs = [{task: one_task_batch(task) for task in tasks} for _ in range(args.pairs)]
    shares = module.task_shares(collate_patches([dataset[PatchDraw(by_task[t][0], 0)] for t in tasks]))
    names = [name for name, p in module.named_parameters() if p.requires_grad]
    params = dict(module.named_parameters())
    for path in args.checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        module.load_state_dict(checkpoint["state_dict"])
        module.train()
        state = checkpoint["optimizer_states"][0]["state"]
        step = int(state[0]["step"])
        # Adam's bias-corrected second moment, in the optimizer's parameter order (module.parameters())
        scale = {name: (state[i]["exp_avg_sq"] / (1 - 0.999 ** step)).sqrt() + 1e-8
                 for i, name in enumerate(names) if i in state}
        rows = {part: [] for part in PARTS}
        for pair in pairs:
            grads = {}
            for task in tasks:
                loss = module._training_loss(pair[task])[0] * shares[task]
                values = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
                grads[task] = dict(zip(names, values))
            for part in PARTS:
                keys = [n for n in names if n.startswith(part) and all(grads[t][n] is not None for t in tasks)]
                flat = {t: torch.cat([grads[t][n].flatten() for n in keys]) for t in tasks}
                adam = {t: torch.cat([(grads[t][n] / scale[n]).flatten() for n in keys]) for t in tasks}
                a, b = tasks
                rows[part].append([float(torch.nn.functional.cosine_similarity(flat[a], flat[b], dim=0)),
                                   float(flat[a].norm()), float(flat[b].norm()),
                                   float(adam[a].norm()), float(adam[b].norm())])
        print(f"{path} (step {step})")
        for part, values in rows.items():
            r = np.array(values)
            cos, na, nb, aa, ab = r.mean(0)
            print(f"  {part}: cos({tasks[0]},{tasks[1]}) {cos:+.3f} [{r[:, 0].min():+.3f}, {r[:, 0].max():+.3f}]"
                  f"  |g| {tasks[0]} {na:.4f} {tasks[1]} {nb:.4f} ({nb / na:.1f}x)"
                  f"  |g/sqrt(v)| {tasks[0]} {aa:.1f} {tasks[1]} {ab:.1f}")


def time_steps(module, batch: dict, rounds: int, steps: int = 10) -> None:
    """Seconds per training step of each way of combining the tasks, interleaved over rounds."""
    module.log = lambda *args, **kwargs: None  # no trainer here
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    modes = {"sum": (False, False), "gradient_balance": (False, True), "gradient_surgery": (True, False)}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    module.train()
    for round_index in range(rounds + 1):  # round 0 warms up
        for mode, (surgery, balance) in modes.items():
            module.gradient_surgery, module.gradient_balance = surgery, balance
            start = time.perf_counter()
            for _ in range(steps):
                optimizer.zero_grad()
                module.training_step(batch, 0).backward()
                optimizer.step()
            if round_index:
                seconds[mode].append((time.perf_counter() - start) / steps)
    base = float(np.median(seconds["sum"]))
    print(f"batch {batch['image'].shape[0]} ({', '.join(sorted(set(batch['task'])))}), {rounds} rounds of {steps} steps, "
          f"{torch.get_num_threads()} threads")
    for mode, values in seconds.items():
        print(f"  {mode}: {np.median(values):.3f} s/step [{min(values):.3f}, {max(values):.3f}]"
              f"  {np.median(values) / base:.2f}x the summed loss")


if __name__ == "__main__":
    main()
