"""``care-cardiac``: one entry point for every subcommand. ``fit``/``validate``/``test`` are the
Lightning CLI; the others are small programs of their own, imported only when asked for (the
Lightning CLI is slow to import)."""

from __future__ import annotations

import importlib
import sys

# Lightning CLI subcommands, and the other programs: subcommand -> (module, function)
LIGHTNING = ("fit", "validate", "test")
PROGRAMS = {
    "check": ("lightning_modules.command_line.check", "check_main"),
    "predict": ("lightning_modules.command_line.predict", "predict_main"),
    "evaluate": ("lightning_modules.command_line.evaluate", "evaluate_main"),
    "prompts": ("lightning_modules.command_line.prompts", "prompts_main"),
    "phantoms": ("lightning_modules.command_line.phantoms", "phantoms_main"),
}
# one line each, for this help and each program's own --help
DESCRIPTIONS = {
    "fit": "train an experiment (--config EXPERIMENT.yaml [overrides])",
    "validate": "score a checkpoint on the validation split",
    "test": "score a checkpoint on the test split: per case, center and ID/OOD, and the leaderboard",
    "check": "check every image and label of an experiment's sources; print the data's plan",
    "predict": "write label maps for images, on each image's own grid, in the release's codes",
    "evaluate": "score a folder of predicted label files against reference labels (no model)",
    "prompts": "score each structure asked alone, with its task, in held-out phrasings, and where absent",
    "phantoms": "write generated cardiac phantoms in the releases' layouts (the demo's data)",
}


def usage() -> str:
    lines = ["usage: care-cardiac SUBCOMMAND [options]   (care-cardiac SUBCOMMAND --help for its options)", "",
             "subcommands:"]
    lines += [f"  {name:<9} {text}" for name, text in DESCRIPTIONS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if not words or words[0] in ("-h", "--help"):
        print(usage())
        return 0
    if words[0] in PROGRAMS:
        module, function = PROGRAMS[words[0]]
        return getattr(importlib.import_module(module), function)(words[1:])
    if words[0] not in LIGHTNING:
        print(f"care-cardiac: unknown subcommand {words[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from lightning_modules.command_line.experiment import run_cli

    run_cli(words)
    return 0


if __name__ == "__main__":
    sys.exit(main())
