"""The ``paper`` presets behave as the reference study's code does, where that is numeric.

Reference facts (YiHsiu7893/RSNA_Anomaly_Detection, Julian-Wyatt/AnoDDPM, the VAE-GAN port and
EGBAD) are restated here from the reference, not from our code, and our models must meet them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from monai.networks.blocks import SpatialAttentionBlock
from monai.networks.nets.diffusion_model_unet import AttnDownBlock

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.models.anoddpm.lightning_model import AnoDDPM
from cxr_anomaly.models.bigan.lightning_model import BiGAN
from cxr_anomaly.models.presets import load_preset
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.models.vaegan.lightning_model import VAEGAN
from tiny import SIZE, TINY_PARAMS

opensimplex = pytest.importorskip("opensimplex")


def _paper(name: str) -> dict[str, Any]:
    return dict(load_preset(name, "paper").model_params)


def _reference_simplex_std(seeds: int = 3, size: int = 64) -> float:
    """The reference's raw noise: six octaves, persistence 0.8, feature size 64 px halving per
    octave, t as the third coordinate, no normalisation (its ``rand_3d_fixed_T_octaves``)."""
    values = []
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        noise = opensimplex.OpenSimplex(seed)
        t = float(rng.integers(0, 800))
        total, frequency, amplitude = np.zeros((size, size)), 64.0, 1.0
        for _ in range(6):
            total += (
                amplitude
                * noise.noise3array(
                    np.arange(size) / frequency,
                    np.arange(size) / frequency,
                    np.array([t / frequency]),
                )[0]
            )
            frequency /= 2
            amplitude *= 0.8
        values.append(total.ravel())
    return float(np.concatenate(values).std())


def _noise_level_at_depth(preset: str) -> float:
    """Standard deviation of the noise a simplex preset adds to an image at its depth."""
    params = _paper("anoddpm-simplex") if preset == "paper" else None
    params = params or dict(load_preset("anoddpm-simplex", preset).model_params)
    # The noise does not depend on the network: make it small.
    params.update(
        channels=[8, 16], attention_resolutions=[], num_head_channels=8, norm_num_groups=8
    )
    model = build_model("anoddpm-simplex", params)
    assert isinstance(model, AnoDDPM)
    depth = model.cfg.depth
    torch.manual_seed(0)
    noise = model._training_noise(torch.zeros(16, 1, 64, 64), torch.full((16,), depth - 1))
    alpha_bar = model.scheduler.alphas_cumprod[depth - 1]
    return float((1 - alpha_bar).sqrt() * noise.std())


def test_paper_simplex_adds_the_references_noise_level_at_depth_200() -> None:
    betas = np.linspace(5e-5, 0.01, 2000)  # the reference: linear, scale 1000 / T
    reference = math.sqrt(1 - np.prod(1 - betas[:200])) * _reference_simplex_std()
    assert _noise_level_at_depth("paper") == pytest.approx(reference, rel=0.15)
    # The quick and long presets scale simplex noise to unit variance on a 1000-step schedule:
    # several times the reference's noise at the same depth (declared in docs/reference-study.md).
    for preset in ("quick", "long"):
        assert _noise_level_at_depth(preset) > 3 * reference


def test_paper_unet_attends_at_32_16_and_8_pixels_with_two_heads() -> None:
    model = build_model("anoddpm-gaussian", _paper("anoddpm-gaussian"))
    assert isinstance(model, AnoDDPM)
    unet = model.unet
    kinds = [type(block).__name__ for block in unet.down_blocks]
    assert kinds == ["DownBlock", "AttnDownBlock", "AttnDownBlock", "AttnDownBlock"]
    assert type(unet.middle_block).__name__ == "AttnMidBlock"
    for block in unet.down_blocks[1:]:
        assert isinstance(block, AttnDownBlock)
        for attention in block.attentions:
            assert isinstance(attention, SpatialAttentionBlock)
            assert attention.attn.num_heads == 2
    sides = [64 // 2**level for level, kind in enumerate(kinds) if kind.startswith("Attn")]
    assert sides == [32, 16, 8]


def test_paper_diffusion_trains_below_800_and_clips_the_gradient_norm_at_1() -> None:
    params = {**TINY_PARAMS["anoddpm-gaussian"], "timesteps": 100, "depth": 12}
    model = build_model("anoddpm-gaussian", {**params, "train_timesteps": 80})
    assert isinstance(model, AnoDDPM)
    assert model.cfg.training_t_limit == 80
    paper = _paper("anoddpm-gaussian")
    assert (paper["train_timesteps"], paper["gradient_clip_norm"]) == (800, 1.0)
    clipped = build_model("anoddpm-gaussian", {**params, "gradient_clip_norm": 1.0})
    assert isinstance(clipped, AnoDDPM)
    for p in clipped.unet.parameters():
        p.grad = torch.full_like(p, 10.0)
    clipped.on_before_optimizer_step(torch.optim.SGD(clipped.unet.parameters(), lr=0.1))
    grads: list[torch.Tensor] = []
    for p in clipped.unet.parameters():
        assert p.grad is not None
        grads.append(p.grad.flatten())
    norm = torch.cat(grads).norm()
    assert float(norm) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="train_timesteps"):
        build_model("anoddpm-gaussian", {**params, "train_timesteps": 101})


def test_egbad_score_is_the_sum_weighted_l1_of_pixels_and_features() -> None:
    model = build_model("bigan", {**TINY_PARAMS["bigan"], "fm_reduction": "sum"}).eval()
    assert isinstance(model, BiGAN)
    x = torch.rand(3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    score = model.infer(x).scores["fm"]
    nets = model.test_nets()
    with torch.no_grad():
        signed = x * 2 - 1
        z = nets.encoder(signed)
        recon = nets.generator(z)
        _, f_real = nets.discriminator(signed, z)
        _, f_recon = nets.discriminator(recon, z)
    by_hand = [
        0.9 * float((signed[i] - recon[i]).abs().sum())
        + 0.1 * float((f_real[i] - f_recon[i]).abs().sum())
        for i in range(3)
    ]
    np.testing.assert_allclose(score.numpy(), by_hand, rtol=1e-5)
    paper = _paper("bigan")
    assert (paper["fm_reduction"], paper["fm_weight"], paper["default_score"]) == ("sum", 0.1, "fm")


def test_separate_batches_step_the_discriminator_and_the_generator_on_different_images() -> None:
    model = build_model(
        "bigan", {**TINY_PARAMS["bigan"], "separate_batches": True}, TrainConfig(batch_size=8)
    )
    assert isinstance(model, BiGAN)
    seen: list[torch.Tensor] = []
    forward = model.nets.discriminator.forward

    def spy(x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(x.detach().clone())
        return forward(x, z)

    model.nets.discriminator.forward = spy  # type: ignore[method-assign]
    optimizers = model.configure_optimizers()
    # A stub handing back the raw optimizers, not Lightning's overloaded optimizers() wrappers.
    model.optimizers = lambda: optimizers  # type: ignore[method-assign, assignment]
    model.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    images = torch.rand(8, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    model.training_step((images, torch.zeros(8)), 0)
    real_d, _, real_g, _ = seen  # D step: (x, E(x)), (G(z), z); then the G/E step's pair
    assert real_d.shape[0] == real_g.shape[0] == 4
    torch.testing.assert_close(real_d, images[:4] * 2 - 1)
    torch.testing.assert_close(real_g, images[4:] * 2 - 1)


def test_vaegan_port_layers_initialisation_and_losses() -> None:
    model = build_model("vaegan", _paper("vaegan"))
    assert isinstance(model, VAEGAN)
    ups = [m for m in model.decoder.ups.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in ups] == [
        (256, 256, (6, 6)),
        (256, 128, (6, 6)),
        (128, 32, (6, 6)),
    ]
    slopes = {
        m.negative_slope
        for net in (model.decoder, model.discriminator)
        for m in net.modules()
        if isinstance(m, torch.nn.LeakyReLU)
    }
    assert slopes == {0.2} and not any(
        isinstance(m, torch.nn.ReLU) for m in model.decoder.modules()
    )
    block = model.encoder.convs[0]
    assert isinstance(block, torch.nn.Sequential)
    conv = block[0]
    assert isinstance(conv, torch.nn.Conv2d)
    assert float(conv.weight.detach().std()) == pytest.approx(0.02, rel=0.15)
    assert model.decoder(torch.zeros(2, 128)).shape == (2, 1, 64, 64)


def test_vaegan_port_step_updates_each_network_in_its_order() -> None:
    params = {**TINY_PARAMS["vaegan"], "losses": "port", "leaky_slope": 0.2, "init_std": 0.02}
    model = build_model("vaegan", params, TrainConfig(batch_size=4))
    before = {
        n: [p.clone() for p in getattr(model, n).parameters()]
        for n in ("encoder", "decoder", "discriminator")
    }
    optimizers = model.configure_optimizers()
    # A stub handing back the raw optimizers, not Lightning's overloaded optimizers() wrappers.
    model.optimizers = lambda: optimizers  # type: ignore[method-assign, assignment]
    model.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    images = torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    model.training_step((images, torch.zeros(4)), 0)
    for name, old in before.items():
        new = list(getattr(model, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(old, new, strict=True)), name
    with pytest.raises(ValueError, match="losses"):
        build_model("vaegan", {**TINY_PARAMS["vaegan"], "losses": "paper"})
