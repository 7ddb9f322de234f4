import math

import pytest
import torch

from vae_anomaly.models import MLPVAE, count_parameters, kl_divergence, vae_loss


def test_seed_model_has_488112_parameters():
    assert count_parameters(MLPVAE((1, 28, 28))) == 488_112


def test_layer_sizes_follow_the_image_shape():
    model = MLPVAE((3, 10, 12), hidden=(32, 16), latent_dim=4)
    x = torch.rand(5, 3, 10, 12)
    logits, mean, log_var = model(x)
    assert logits.shape == (5, 360) and mean.shape == (5, 4) and log_var.shape == (5, 4)
    assert model.decode(mean).shape == (5, 3, 10, 12)
    # 360*32+32 + 32*16+16 + 2*(16*4+4) + 4*16+16 + 16*32+32 + 32*360+360
    assert count_parameters(model) == 11552 + 528 + 136 + 80 + 544 + 11880


def test_keras_initialisation():
    model = MLPVAE()
    first = model.encoder[0]
    assert torch.all(first.bias == 0)
    limit = math.sqrt(6 / (784 + 256))  # Glorot uniform
    assert first.weight.abs().max() <= limit
    assert first.weight.abs().max() > 0.9 * limit


def test_deterministic_forward_uses_the_mean():
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), hidden=(16,), latent_dim=2)
    x = torch.rand(4, 1, 8, 8)
    a, _, _ = model(x, sample=False)
    b, _, _ = model(x, sample=False)
    c, _, _ = model(x, sample=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loss_is_keras_bce_plus_weighted_kl():
    x = torch.tensor([[[[0.0, 1.0]]]])
    logits = torch.tensor([[0.0, 0.0]])  # sigmoid = 0.5 -> BCE = ln 2 per pixel
    mean, log_var = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    assert vae_loss(x, logits, mean, log_var).item() == pytest.approx(math.log(2))
    assert kl_divergence(mean, log_var).item() == pytest.approx(0.5)  # -0.5 * (1 + 0 - 1 - 1)
    assert vae_loss(x, logits, mean, log_var, kl_weight=2.0).item() == pytest.approx(
        math.log(2) + 1.0
    )
