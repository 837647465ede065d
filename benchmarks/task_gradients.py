"""How the tasks of the unified model pull on the shared weights: per-task gradients at saved
checkpoints, on the training patches the experiment draws.

    python benchmarks/task_gradients.py CKPT [CKPT ...] [--config experiments/real_samples.yaml]
                                        [--pairs 6] [--samples 4]

For each checkpoint and each of ``--pairs`` pairs of one-task batches (``--samples`` patches of
each task, drawn as the experiment's sampler draws them, with its augmentation), each task's
gradient is taken with the weight its structure groups have in a mixed batch's Dice term (LA 1
of 4, MyoPS 3 of 4). Printed per part of the network (image encoder = ``net.backbone``, prompt
decoder = ``net.decoder``): the cosine between the two tasks' gradients, their norms, and the
norms after dividing by Adam's second-moment estimate from the checkpoint (the step Adam would
take for each task alone, up to the learning rate). A negative cosine with a much larger norm
on one side means the summed step cancels the other task's descent. Results are recorded in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
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
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--config", default=str(REPO / "experiments" / "real_samples.yaml"))
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
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

    pairs = [{task: one_task_batch(task) for task in tasks} for _ in range(args.pairs)]
    group_counts = {task: len({key for keys in pairs[0][task]["structures"] for key in keys}) for task in tasks}
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
                share = group_counts[task] / sum(group_counts.values())
                loss = module._training_loss(pair[task])[0] * share
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


if __name__ == "__main__":
    main()
