"""A checkpoint is loaded only into the network its experiment built."""

from __future__ import annotations

import yaml

from lightning_modules.inference.checkpoint_weights import network_differences

DECODER = "networks.prompt_decoder.PromptMaskDecoder"


def net(**decoder) -> dict:
    return {"model": {"net": {"class_path": "networks.segmenter.PromptSegmenter",
                              "init_args": {"decoder": {"class_path": DECODER, "init_args": decoder}}}}}


def test_differing_and_since_added_network_settings_are_named():
    key = "model.net.init_args.decoder.init_args"
    assert network_differences(yaml.safe_dump(net(num_layers=2)), net(num_layers=2)) == []
    assert network_differences(yaml.safe_dump(net(num_layers=2)), net(num_layers=3)) == [
        f"{key}.num_layers: checkpoint 2, here 3"]
    # an option the checkpoint's experiment did not write ran at its default (token_grid 8)
    old = yaml.safe_dump(net(num_layers=2))
    assert network_differences(old, net(num_layers=2, token_grid=8)) == []
    assert network_differences(old, net(num_layers=2, token_grid=4)) == [
        f"{key}.token_grid: checkpoint 8 (its default, not written then), here 4"]
    # settings outside model.net (post-processing, inferer) may differ
    other = {**net(num_layers=2), "data": {"batch_size": 4}}
    assert network_differences(yaml.safe_dump(other), net(num_layers=2)) == []


def test_training_only_network_settings_do_not_block_loading():
    def with_noise(noise) -> dict:
        config = net(num_layers=2)
        config["model"]["net"]["init_args"]["prompt_encoder"] = {
            "class_path": "networks.prompt_encoder.TextPromptEncoder", "init_args": {"embedding_noise": noise}}
        return config

    # trained without noise (or before the option existed), used with an experiment that trains with it
    assert network_differences(yaml.safe_dump(with_noise(0.0)), with_noise(1.0)) == []
    assert network_differences(yaml.safe_dump(net(num_layers=2)), with_noise(1.0)) == []
