from functools import partial

import pytest
import torch
from monai.networks.nets import DynUNet, SwinUNETR

from networks.prompt_decoder import PromptMaskDecoder
from networks.prompt_encoder import REFERENCE_BATCH, TextPromptEncoder
from networks.segmenter import PromptSegmenter

FEATURES = 16


@pytest.fixture(scope="module")
def encoder():
    return TextPromptEncoder(embed_dim=32)


# SwinUNETR (feature_size 12) stages at 1/32, 1/16 and 1/8 of the input, and their channels
SWIN_LAYERS, SWIN_CHANNELS = ["encoder10", "decoder5", "decoder4"], [192, 96, 48]


def make(encoder, spatial_dims: int, backbone=None, multiscale: bool = False) -> PromptSegmenter:
    backbone = backbone or SwinUNETR(in_channels=1, out_channels=FEATURES, feature_size=12, depths=(1, 1, 1, 1),
                                     spatial_dims=spatial_dims)
    if multiscale:
        return PromptSegmenter(backbone, encoder, partial(PromptMaskDecoder, num_layers=3, num_heads=2),
                               feature_layers=SWIN_LAYERS)
    return PromptSegmenter(backbone, encoder, partial(PromptMaskDecoder, num_layers=1, num_heads=2))


# SwinUNETR downsamples 32x: 64 is the smallest input whose bottleneck instance norm has >1 voxel
@pytest.mark.parametrize("multiscale", [False, True], ids=["pooled", "multiscale"])
@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 64, 64, 64)], ids=["2d", "3d"])
def test_one_logit_map_per_prompt(encoder, shape, multiscale):
    net = make(encoder, len(shape) - 2, multiscale=multiscale)
    prompts = [["left atrium in LGE MRI", "myocardial scar in LGE MRI", None]] * shape[0]
    embeddings, padding = net.encode_prompts(prompts)
    assert embeddings.shape == (shape[0], 3, 32) and padding[:, 2].all()
    logits = net(torch.randn(shape), embeddings, padding)
    assert logits.shape == (shape[0], 3, *shape[2:])


@pytest.mark.parametrize("multiscale", [False, True], ids=["pooled", "multiscale"])
def test_prompts_permute_with_outputs_and_unseen_prompt_runs(encoder, multiscale):
    net = make(encoder, 2, multiscale=multiscale).eval()
    image = torch.randn(1, 1, 64, 64)
    prompts = ["left atrium in LGE MRI", "pulmonary artery in CT", "the heart muscle wall, please"]
    e, _ = net.encode_prompts([prompts])
    e_rev, _ = net.encode_prompts([prompts[::-1]])
    with torch.no_grad():
        out, out_rev = net(image, e), net(image, e_rev)
    torch.testing.assert_close(out.flip(1), out_rev, rtol=1e-4, atol=1e-4)


def test_prompt_sets_from_one_backbone_pass_equal_each_set_asked_alone(encoder):
    net = make(encoder, 2, multiscale=True).eval()
    image = torch.randn(2, 1, 64, 64)
    sets = [["left ventricle blood pool in CT", "myocardial scar in CT"], ["myocardial scar in CT"], ["LV cavity"]]
    encoded = [net.encode_prompts([prompts]) for prompts in sets]
    with torch.no_grad():
        together = net.forward_prompt_sets(image, encoded)
        separate = torch.cat([net(image, e, p) for e, p in encoded], 1)
    assert together.shape == (2, 4, 64, 64)
    torch.testing.assert_close(together, separate)
    # no prompt reads another: scar beside the LV is scar alone; the LV is not (the control)
    assert (together[:, 1] - together[:, 2]).abs().max() < 1e-5 < 1e-3 < (together[:, 0] - together[:, 2]).abs().max()


def test_text_model_runs_once_per_new_prompt(encoder):
    encoder([["right atrium in MRI"]])  # the first forward also calibrates (its own text-model call)
    calls = encoder.text_model_calls
    encoder([["right atrium in MRI"], ["right atrium in MRI"]])
    assert encoder.text_model_calls == calls
    assert not any(name.startswith("_text_model") for name in encoder.state_dict())  # frozen MiniLM not checkpointed



def test_checkpoint_records_its_text_model_and_refuses_another(encoder, tmp_path, monkeypatch):
    # the projection is trained on one text model's embeddings: another model's are refused, naming both
    torch.save(encoder.state_dict(), tmp_path / "encoder.pt")
    state = torch.load(tmp_path / "encoder.pt", weights_only=True)  # the record is plain data
    assert state["_extra_state"]["text_model"].startswith("all-MiniLM-L6-v2")
    assert len(state["_extra_state"]["embedding"]) == 16
    same = TextPromptEncoder(embed_dim=encoder.embed_dim)
    same.load_state_dict(state)
    other = TextPromptEncoder(embed_dim=encoder.embed_dim)  # stands in for an encoder of another text model
    monkeypatch.setattr(other, "text_embeddings", lambda texts: encoder.text_embeddings(texts).roll(1, dims=-1))
    monkeypatch.setattr(other, "text_model_name", lambda: "another-encoder")
    with pytest.raises(ValueError, match="all-MiniLM-L6-v2.*'another-encoder'"):
        other.load_state_dict(state)
    del state["_extra_state"]  # a checkpoint from before the record loads, with a warning
    with pytest.warns(UserWarning, match="does not record which text model"):
        same.load_state_dict(state)

def test_cnn_backbone_plugs_in(encoder):
    unet = DynUNet(2, 1, FEATURES, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2])
    net = make(encoder, 2, backbone=unet)
    embeddings, padding = net.encode_prompts([["left atrium in LGE MRI"]])
    assert net(torch.randn(1, 1, 64, 64), embeddings, padding).shape == (1, 1, 64, 64)


def test_bad_arguments_raise(encoder):
    with pytest.raises(ValueError, match="divisible"):
        PromptMaskDecoder(16, embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="at least one prompt"):
        encoder([[None, None]])
    net = make(encoder, 2)
    embeddings, _ = net.encode_prompts([["left atrium in LGE MRI"]])
    with pytest.raises(ValueError, match="image must be"):
        net(torch.randn(1, 64, 64), embeddings)
    swin = SwinUNETR(in_channels=1, out_channels=FEATURES, feature_size=12, depths=(1, 1, 1, 1), spatial_dims=2)
    decoder = partial(PromptMaskDecoder, num_layers=3, num_heads=2)
    with pytest.raises(ValueError, match="not submodules of SwinUNETR"):
        PromptSegmenter(swin, encoder, decoder, feature_layers=["encoder10", "decoder5", "decoder9"])
    with pytest.raises(ValueError, match="memory_channels"):
        PromptMaskDecoder(FEATURES, 32, memory_channels=[])
    with pytest.raises(ValueError, match="did not return one feature tensor"):
        PromptSegmenter(swin, encoder, decoder, feature_layers=["swinViT"])
    with pytest.raises(ValueError, match="embed_dim.*divisible.*num_heads"):  # 32 from the prompt encoder, 3 heads
        PromptSegmenter(swin, encoder, partial(PromptMaskDecoder, num_heads=3))


def test_decoder_sizes_are_read_off_the_backbone_and_prompt_encoder(encoder):
    """Nothing the backbone or the prompt encoder fixes is typed a second time for the decoder."""
    swin = SwinUNETR(in_channels=1, out_channels=24, feature_size=12, depths=(1, 1, 1, 1), spatial_dims=2)
    net = PromptSegmenter(swin, encoder, partial(PromptMaskDecoder, num_layers=3, num_heads=2),
                          feature_layers=SWIN_LAYERS)
    assert net.decoder.feature_channels == 24 and net.decoder.memory_channels == SWIN_CHANNELS
    assert net.decoder.layers[0].self_attn.embed_dim == encoder.embed_dim
    assert swin.training  # the probe pass leaves the mode as it was
    embeddings, padding = net.encode_prompts([["left atrium in LGE MRI"]])
    assert net(torch.randn(1, 1, 64, 64), embeddings, padding).shape == (1, 1, 64, 64)
    unet = DynUNet(3, 1, 8, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2])
    net3d = PromptSegmenter(unet, encoder, partial(PromptMaskDecoder, num_heads=2), feature_layers=["bottleneck"])
    assert net3d.decoder.feature_channels == 8 and net3d.decoder.memory_channels == [128]  # DynUNet filters 32, 64, 128


def test_fixed_head_refuses_a_backbone_with_other_channel_count():
    from networks.fixed_head import FixedHeadSegmenter

    swin = SwinUNETR(in_channels=1, out_channels=8, feature_size=12, depths=(1, 1, 1, 1), spatial_dims=2)
    with pytest.raises(ValueError, match="8 output channels.*structures names 9"):
        FixedHeadSegmenter(swin)


def test_multiscale_hooks_read_the_named_stages_and_leave_no_hook_behind(encoder):
    net = make(encoder, 2, multiscale=True)
    image = torch.randn(1, 1, 64, 64)
    features, memory = net._backbone(image)
    assert [tuple(m.shape) for m in memory] == [(1, 192, 2, 2), (1, 96, 4, 4), (1, 48, 8, 8)]
    assert not any(m._forward_hooks for m in net.backbone.modules())
    # the decoder reads the stages: changing the bottleneck tokens changes the logits
    embeddings, _ = net.encode_prompts([["left atrium in LGE MRI"]])
    with torch.no_grad():
        base = net.decoder(features, embeddings, memory=memory)
        moved = net.decoder(features, embeddings, memory=[memory[0] + 1.0, *memory[1:]])
    assert not torch.allclose(base, moved)


def test_deep_supervision_returns_every_layer_and_trains_through_them(encoder):
    from lightning_modules.training.module import CardiacSegmentationModule
    from networks.fixed_head import FixedHeadSegmenter

    net = make(encoder, 2, multiscale=True)
    embeddings, padding = net.encode_prompts([["left atrium in LGE MRI", "aorta in CT"]])
    image = torch.randn(1, 1, 64, 64)
    outputs = net(image, embeddings, padding, all_layers=True)
    assert len(outputs) == 3 and all(o.shape == (1, 2, 64, 64) for o in outputs)
    with torch.no_grad():
        torch.testing.assert_close(outputs[-1], net(image, embeddings, padding))
    module = CardiacSegmentationModule(net, deep_supervision=True)
    batch = {"image": image, "prompts": [["left atrium in LGE MRI", "aorta in CT"]], "task": ["whs"],
             "structures": [["la", "aorta"]], "target": (torch.rand(1, 2, 64, 64) > 0.7).float(),
             "prompt_mask": torch.tensor([[True, True]])}
    module.log = lambda *args, **kwargs: None  # no trainer attached
    loss = module.training_step(batch, 0)
    groups = [["whs/la", "whs/aorta"]]
    per_layer = [module.loss(o, batch["target"], batch["prompt_mask"], groups) for o in outputs]
    # nnU-Net's halving weights, normalised: 1/7, 2/7, 4/7 for three layers
    torch.testing.assert_close(loss, (per_layer[0] + 2 * per_layer[1] + 4 * per_layer[2]) / 7)
    assert not torch.isclose(loss, per_layer[2])
    loss.backward()
    assert net.decoder.layers[0].multihead_attn.in_proj_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="deep_supervision"):
        backbone = SwinUNETR(in_channels=1, out_channels=9, feature_size=12, depths=(1, 1, 1, 1), spatial_dims=2)
        CardiacSegmentationModule(FixedHeadSegmenter(backbone), deep_supervision=True)


def test_the_calibration_set_embedded_in_padded_batches_matches_one_text_per_pass():
    # masked pooling: a padded text's mean must not count its padding (that moves it by ~1e-1)
    import vocabulary

    encoder = TextPromptEncoder()
    _, texts = zip(*vocabulary.labelled_prompts())
    texts = list(texts[:REFERENCE_BATCH + 8])  # two batches, short texts padded to long ones
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 run's calibration: the text model keeps float32
        batched = encoder.reference_embeddings(texts)
    torch.testing.assert_close(batched, encoder.text_embeddings(texts), atol=1e-5, rtol=0)
    assert encoder.reference_embeddings(texts) is encoder.reference_embeddings(texts)  # once per process


def test_within_structure_whitening_puts_every_synonym_nearest_its_own_structure():
    import vocabulary

    encoder = TextPromptEncoder()
    encoder._calibrate()

    def embedded(text):
        z = (encoder.text_embeddings([text]) - encoder.text_mean) @ encoder.text_whitening
        return torch.nn.functional.normalize(z, dim=-1)[0]

    for modality, phrase in vocabulary.MODALITY_PHRASES.items():
        canonical = {key: embedded(vocabulary.prompt(key, modality)) for key in vocabulary.STRUCTURES}
        for key, structure in vocabulary.STRUCTURES.items():
            for synonym in structure.names[1:]:
                z = embedded(f"{synonym} in {phrase}")
                nearest = max(canonical, key=lambda k: float(z @ canonical[k]))
                assert nearest == key, f"{synonym!r} in {phrase} is nearest {nearest!r}"


def test_the_discriminant_subspace_keeps_only_directions_that_tell_structures_apart():
    import vocabulary

    encoder = TextPromptEncoder(embed_dim=8).eval()
    encoder._calibrate()

    def whitened(texts):
        return (encoder.text_embeddings(list(texts)) - encoder.text_mean) @ encoder.text_whitening

    projector = encoder.text_projector.double()
    rank = round(float(projector.trace()))
    assert 1 <= rank <= len(vocabulary.STRUCTURES) - 1
    torch.testing.assert_close(projector @ projector, projector, atol=1e-5, rtol=0)  # a projector
    # an embedding moved along a direction the projector drops prompts exactly as before
    lv = whitened([vocabulary.prompt("lv", "LGE")])
    dropped = torch.linalg.eigh(projector).eigenvectors[:, 0].float()  # eigenvalue 0
    moved = lv + 5.0 * dropped
    assert float(torch.linalg.vector_norm(moved - lv)) > 4.9
    torch.testing.assert_close(moved @ encoder.text_projector, lv @ encoder.text_projector, atol=1e-4, rtol=0)
    # and what is kept still puts every canonical prompt nearest its own structure's centroid
    keys, texts = zip(*vocabulary.labelled_prompts())
    kept = whitened(texts) @ encoder.text_projector
    names = sorted(set(keys))
    centroids = torch.stack([kept[[k == name for k in keys]].mean(0) for name in names])
    for key in vocabulary.STRUCTURES:
        z = whitened([vocabulary.prompt(key, "LGE")]) @ encoder.text_projector
        assert names[int(torch.cdist(z, centroids).argmin())] == key


def test_prototype_prompts_reach_the_decoder_as_the_structure_they_are_nearest():
    """Every phrasing of the vocabulary reads as its own structure (weight > 0.99), so all of a
    structure's synonyms give the projection the same input; a phrasing halfway between two
    centroids reads as both; the weights are a distribution."""
    import vocabulary

    encoder = TextPromptEncoder(embed_dim=8).eval()
    keys, texts = zip(*vocabulary.labelled_prompts())
    weights = encoder.structure_weights(list(texts))
    for key, text in zip(keys, texts):
        assert weights[text][key] > 0.99, (text, weights[text])
        assert abs(sum(weights[text].values()) - 1) < 1e-5
    out, _ = encoder([[vocabulary.prompt("lv", "CT"), vocabulary.STRUCTURES["lv"].names[1] + " in CT", vocabulary.prompt("rv", "CT")]])
    torch.testing.assert_close(out[0, 0], out[0, 1], atol=1e-4, rtol=0)  # synonyms: one input
    assert float((out[0, 0] - out[0, 2]).abs().max()) > 1e-3  # another structure: another input
    names = sorted(vocabulary.STRUCTURES)
    lv, rv = (encoder.text_centroids[names.index(k)] for k in ("lv", "rv"))
    halfway = encoder._read_as_structures(((lv + rv) / 2)[None])[0]
    assert abs(float(halfway[names.index("lv")]) - 0.5) < 0.01 and abs(float(halfway[names.index("rv")]) - 0.5) < 0.01
    with pytest.raises(ValueError, match="prototype_temperature"):
        TextPromptEncoder(prototype_temperature=0)


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 64, 64, 64)], ids=["2d", "3d"])
def test_fixed_head_answers_each_prompt_with_its_structure_channel(shape):
    from networks.fixed_head import FixedHeadSegmenter

    backbone = SwinUNETR(in_channels=1, out_channels=3, feature_size=12, depths=(1, 1, 1, 1), spatial_dims=len(shape) - 2)
    net = FixedHeadSegmenter(backbone, structures=["lv", "myo", "scar"])
    prompts = [["myocardial infarct in LGE MRI", "left ventricle blood pool in CT", None]] * shape[0]
    channels, padding = net.encode_prompts(prompts)
    assert channels.tolist()[0] == [2, 0, 0] and padding[:, 2].all()
    image = torch.randn(shape)
    logits = net(image, channels, padding)
    assert logits.shape == (shape[0], 3, *shape[2:])
    full = backbone(image)
    assert torch.equal(logits[:, 0], full[:, 2]) and torch.equal(logits[:, 1], full[:, 0])
    with pytest.raises(ValueError, match="vocabulary prompts only"):
        net.encode_prompts([["the heart's left chamber"]])
    with pytest.raises(ValueError, match="distinct vocabulary keys"):
        FixedHeadSegmenter(backbone, structures=["lv", "lv"])


@pytest.mark.parametrize("count", [1, 10])
def test_one_and_ten_prompts_run_and_a_masked_prompt_gets_zero_gradient(encoder, count):
    import vocabulary
    from lightning_modules.training.losses import PartialLabelLoss

    net = make(encoder, 2)
    texts = [vocabulary.prompt(k, m) for k in vocabulary.STRUCTURES for m in ("CT", "LGE")][:count]
    embeddings, padding = net.encode_prompts([texts, texts])
    logits = net(torch.randn(2, 1, 64, 64), embeddings, padding)
    assert logits.shape == (2, count, 64, 64)
    logits.retain_grad()
    mask = torch.ones(2, count, dtype=torch.bool)
    mask[1, -1] = False  # the last prompt of sample 1 is not annotated there
    target = (torch.rand(2, count, 64, 64) > 0.8).float()
    groups = [[f"t/{i}" for i in range(count)]] * 2
    PartialLabelLoss()(logits, target, mask, groups).backward()
    assert torch.all(logits.grad[1, -1] == 0)
    assert logits.grad[0, -1].abs().sum() > 0


def test_an_embedding_depends_on_its_text_alone(encoder):
    # a resumed run fills its cache in another order than the run it continues
    alone = TextPromptEncoder().text_embeddings(["left atrial blood pool"])[0]
    with_others = TextPromptEncoder().text_embeddings(
        ["left atrial blood pool", "a much longer prompt naming the trunk of the pulmonary artery in CT"])[0]
    assert torch.equal(alone, with_others)


@pytest.mark.parametrize("dims, size", [(2, 96), (3, 32)])
def test_plain_unet_follows_nnunet_widths_and_keeps_the_input_size(dims, size):
    from networks.unet import PlainUNet

    net = PlainUNet(spatial_dims=dims, out_channels=8, levels=5, base_filters=4, max_filters=16)
    assert net.filters == [4, 8, 16, 16, 16] and list(net.strides) == [1, 2, 2, 2, 2]
    assert net(torch.zeros(1, 1, *[size] * dims)).shape == (1, 8, *[size] * dims)
    with pytest.raises(ValueError, match="levels"):
        PlainUNet(levels=1)
    with pytest.raises(ValueError, match="base_filters"):
        PlainUNet(base_filters=64, max_filters=32)


def test_embedding_noise_perturbs_training_prompts_only():
    torch.manual_seed(0)
    # large noise: prompts are read as structure centroids, which absorb a small one
    noisy = TextPromptEncoder(embed_dim=8, embedding_noise=5.0)
    plain = TextPromptEncoder(embed_dim=8)
    plain.load_state_dict(noisy.state_dict())
    prompts = [["left atrium in LGE MRI", None]]
    noisy.eval(), plain.eval()
    assert torch.equal(noisy(prompts)[0], plain(prompts)[0])  # inference: no noise
    noisy.train()
    first, second = noisy(prompts)[0], noisy(prompts)[0]
    assert (first[0, 0] - second[0, 0]).abs().max() > 1e-3  # a new draw per call
    assert torch.equal(first[0, 1], second[0, 1])  # padding stays zero before the projection
    # seeded (as the training module does per step): a function of the seed, the global RNG untouched
    state = torch.get_rng_state()
    noisy.seed_noise(5)
    again = noisy(prompts)[0]
    noisy.seed_noise(5)
    assert torch.equal(noisy(prompts)[0], again) and torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="embedding_noise"):
        TextPromptEncoder(embedding_noise=-0.1)
