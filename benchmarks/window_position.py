"""Does the model's answer depend on where the heart lies in its window? A probe of one slice per case.

    python benchmarks/window_position.py --config EXPERIMENT.yaml --ckpt_path BEST.ckpt \
        --split val --output results/window_position.csv [--structure lv] [--stride 8]

On the slice of each case with the most reference ``--structure``, a training-size window is
slid over every position (step ``--stride``) and the network run on it alone. Per window: the
share of the structure's reference voxels the window holds (``held``), and the recall of those of
them at least ``--margin`` of the window from every edge (``interior_recall``: voxels whose context the
window holds). A per-voxel model keeps interior recall whatever share of the structure is held;
a model that decides per window drops it to 0 when too little of the structure is held, which
draws a straight edge where two sliding windows meet. The decoder's per-window bias of that
prompt (``bias``) is written too: the one number a window adds to every voxel's logit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trained_model import mask_on_grid, trained_experiment  # noqa: E402

from datamodules.collate import collate_volume  # noqa: E402
from datamodules.preprocessing import PAD_VALUE  # noqa: E402
from datamodules.volumes import VolumeDataset  # noqa: E402
from lightning_modules.evaluation.results_io import unused_path, write_csv_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--structure", default="lv")
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--margin", type=float, default=0.125, help="interior: this share of the window from every edge")
    args, cli = trained_experiment(argv, parser)
    net, size = cli.model.net, cli.datamodule.patch_size
    if len(size) != 2:
        raise SystemExit("the probe slides 2D windows: a 2D experiment is needed")
    margin = [int(s * args.margin) for s in size]
    interior = torch.zeros(size, dtype=torch.bool)  # voxels whose context the window holds
    interior[margin[0]:size[0] - margin[0], margin[1]:size[1] - margin[1]] = True
    biases: list[torch.Tensor] = []  # the decoder's per-window bias, caught on its way out
    hook = net.decoder.to_bias.register_forward_hook(lambda module, inputs, output: biases.append(output))
    rows = []
    for item in VolumeDataset(cli.datamodule.cases(args.split)):
        batch = collate_volume([item])
        if args.structure not in batch["structures"]:
            continue
        channel = list(batch["structures"]).index(args.structure)
        reference = mask_on_grid(batch, np.asarray(batch["reference"])[channel])
        axis = batch["slice_axis"]
        index = int(np.argmax(reference.sum(tuple(a for a in range(3) if a != axis))))
        image = batch["image"][0, 0].select(axis, index)
        target = torch.from_numpy(reference).select(axis, index)
        pad = [max(s - n, 0) for s, n in zip(size, image.shape)]
        image = torch.nn.functional.pad(image, (0, pad[1], 0, pad[0]), value=PAD_VALUE)  # as the inferers pad
        target = torch.nn.functional.pad(target, (0, pad[1], 0, pad[0]))
        embeddings, padding = net.encode_prompts([list(batch["prompts"][0])])
        total = int(target.sum())
        for x in range(0, image.shape[0] - size[0] + 1, args.stride):
            for y in range(0, image.shape[1] - size[1] + 1, args.stride):
                window = image[x:x + size[0], y:y + size[1]][None, None]
                held = target[x:x + size[0], y:y + size[1]]
                if not held.any():
                    continue
                biases.clear()
                with torch.no_grad():
                    logits = net(window, embeddings, padding)[0, channel]
                inner = held & interior
                rows.append({"case_id": batch["case_id"], "modality": batch["modality"], "x": x, "y": y,
                             "held": float(held.sum()) / total, "interior_voxels": int(inner.sum()),
                             "interior_recall": float((logits[inner] > 0).float().mean()) if inner.any() else np.nan,
                             "bias": float(biases[-1][0, channel])})
        print(f"{batch['case_id']} ({batch['modality']}): {len(rows)} windows so far", flush=True)
    hook.remove()
    frame = pd.DataFrame(rows)
    output = unused_path(Path(args.output))
    write_csv_atomic(frame, output)
    frame["held_share"] = pd.cut(frame["held"], [0, 0.25, 0.5, 0.75, 0.999, 1.0])
    summary = frame.groupby(["modality", "held_share"], observed=True)[["interior_recall", "bias"]].agg(["mean", "count"])
    print(summary.round(3).to_string())
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
