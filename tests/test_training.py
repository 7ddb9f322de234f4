"""The training loop's speed-ups keep its results: FLOP counts, the step, best weights, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vae_anomaly import training
from vae_anomaly.errors import CompileError
from vae_anomaly.models import MLPVAE, vae_loss
from vae_anomaly.runtime import epoch_flops, forward_flops, train_step_flops
from vae_anomaly.training import make_optimizer, make_train_step, train_vae


def _data(n: int, seed: int, shape=(1, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


def _tiny_model(seed: int = 0) -> MLPVAE:
    torch.manual_seed(seed)
    return MLPVAE((1, 8, 8), (16, 8), 4)


@pytest.mark.parametrize(
    ("image_shape", "hidden", "latent", "forward", "step"),
    [
        # 784*256 + 256*128 + 128*64 + 2*64*16 + 16*64 + 64*128 + 128*256 + 256*784 = 486,400 MACs;
        # backward = 2x forward minus the first layer's input gradient (2 * 784 * 256).
        ((1, 28, 28), (256, 128, 64), 16, 972_800, 3 * 972_800 - 2 * 784 * 256),
        # 6*4 + 2*(4*2) + 2*4 + 4*6 = 72 MACs -> 144 forward, 3*144 - 2*24 = 384 forward+backward.
        ((1, 2, 3), (4,), 2, 144, 384),
    ],
)
def test_flop_counts_match_hand_count(image_shape, hidden, latent, forward, step):
    model = MLPVAE(image_shape, hidden, latent)
    assert forward_flops(model) == forward
    assert train_step_flops(model) == step
    assert epoch_flops(model, 10, 3) == 10 * step + 3 * forward


def _reference_train(model, x, valid, *, epochs, batch_size, generator):
    """The plain loop the optimised one must reproduce: index a batch, step, deepcopy the best."""
    import copy

    params = list(model.parameters())
    square_avgs = [torch.zeros_like(p) for p in params]

    def keras_rmsprop_step():  # per tensor, Keras's rule: v = 0.9 v + 0.1 g^2; p -= lr g / sqrt(v + eps)
        with torch.no_grad():
            for p, v in zip(params, square_avgs, strict=True):
                v.mul_(0.9).addcmul_(p.grad, p.grad, value=0.1)
                p.addcdiv_(p.grad, torch.sqrt(v + 1e-7), value=-1e-3)

    train_loss, valid_loss, best, best_state = [], [], float("inf"), None
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for first in range(0, len(x), batch_size):
            batch = x[order[first : first + batch_size]]
            logits, mean, log_var = model(batch)
            loss = vae_loss(batch, logits, mean, log_var)
            model.zero_grad()
            loss.backward()
            keras_rmsprop_step()
            total += loss.item() * len(batch)
        train_loss.append(total / len(x))
        with torch.no_grad():
            logits, mean, log_var = model(valid, sample=False)
            valid_loss.append(vae_loss(valid, logits, mean, log_var).item())
        if valid_loss[-1] < best:
            best, best_state = valid_loss[-1], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return train_loss, valid_loss


def test_rmsprop_step_has_keras_epsilon_inside_the_square_root():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    optimizer = make_optimizer(model, 1e-3, 0.9, 1e-7)
    optimizer.grad.copy_(torch.tensor([1e-3, 1e-5]))
    optimizer.step()
    # v = 0.1 g^2; step = lr g / sqrt(v + 1e-7): 1e-6 / sqrt(2e-7) = 2.2361e-3 and
    # 1e-8 / sqrt(1.00001e-7) = 3.1621e-5 (torch's sqrt(v) + eps would give 3.16e-3 and 3.07e-3).
    expected = torch.tensor([1 - 2.2360680e-3, 1 - 3.1621196e-5])
    torch.testing.assert_close(optimizer.flat, expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(optimizer.square_avg, torch.tensor([1e-7, 1e-11]))


def test_optimised_loop_matches_plain_loop():
    x, valid = _data(100, 1), _data(30, 2)
    ref_model, model = _tiny_model(), _tiny_model()
    torch.manual_seed(5)
    ref_train, ref_valid = _reference_train(
        ref_model, x, valid, epochs=3, batch_size=32, generator=torch.Generator().manual_seed(3)
    )
    torch.manual_seed(5)
    history = train_vae(
        model, x, valid, epochs=3, batch_size=32, generator=torch.Generator().manual_seed(3)
    )
    assert history.train_loss == pytest.approx(ref_train, rel=1e-6)
    assert history.valid_loss == pytest.approx(ref_valid, rel=1e-6)
    for name, value in ref_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_best_validation_weights_are_restored(monkeypatch):
    """Epoch 2 has the lowest (scripted) validation loss: the weights equal those after epoch 2."""
    scripted = iter([3.0, 1.0, 2.0, 5.0])
    monkeypatch.setattr(training, "evaluate_loss", lambda *a, **k: next(scripted))
    x, valid = _data(64, 1), _data(8, 2)
    model = _tiny_model()
    torch.manual_seed(7)
    history = train_vae(model, x, valid, epochs=4, generator=torch.Generator().manual_seed(3))
    assert history.best_epoch == 2
    two_epochs = _tiny_model()
    torch.manual_seed(7)
    train_vae(two_epochs, x, None, epochs=2, generator=torch.Generator().manual_seed(3))
    for name, value in two_epochs.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    last = _tiny_model()
    torch.manual_seed(7)
    train_vae(last, x, None, epochs=4, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(last.decoder[-1].weight, model.decoder[-1].weight)


def test_same_seed_same_history():
    x, valid = _data(80, 1), _data(20, 2)
    runs = []
    for _ in range(2):
        model = _tiny_model(seed=4)
        torch.manual_seed(4)
        runs.append(
            train_vae(model, x, valid, epochs=2, generator=torch.Generator().manual_seed(4))
        )
    assert runs[0].train_loss == runs[1].train_loss
    assert runs[0].valid_loss == runs[1].valid_loss


@pytest.mark.e2e  # the slow tier: inductor compiles C++ kernels for ~10-30 s on 2 cores
@pytest.mark.parametrize("frozen", [False, True])
def test_compiled_step_gives_the_plain_step_losses(frozen):
    x = _data(80, 1).flatten(1)  # batches of 32, 32 and a last one of 16 (run eagerly)
    losses, weights = {}, {}
    for compiled in (False, True):
        model = _tiny_model()
        model.encoder[0].weight.requires_grad_(not frozen)  # frozen: left out of the flat buffer
        optimizer = make_optimizer(model, 1e-3, 0.9, 1e-7)
        step = make_train_step(model, optimizer, kl_weight=1 / 64, compile=compiled)
        torch.manual_seed(9)
        losses[compiled] = [float(step(x[i : i + 32])) for _ in range(3) for i in range(0, 80, 32)]
        weights[compiled] = model.decoder[-1].weight.detach().clone()
        if frozen:
            assert torch.equal(model.encoder[0].weight, _tiny_model().encoder[0].weight)
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    torch.testing.assert_close(weights[True], weights[False], rtol=1e-4, atol=1e-6)
    assert losses[False][0] != pytest.approx(losses[False][-1], rel=1e-6)  # the steps did learn


@pytest.mark.parametrize("kl_weight", [0.0, 1 / 64])
@pytest.mark.parametrize("image_shape", [(1, 8, 8), (3, 5, 4)])
def test_analytic_gradients_equal_autograd(kl_weight, image_shape):
    torch.manual_seed(0)
    model = MLPVAE(image_shape, (16, 8), 4)
    x = _data(10, 3, image_shape)
    noise = torch.randn(10, 4)
    loss, grads = model.loss_and_gradients(x, noise, kl_weight)

    mean, log_var = model.encode(x)
    logits = model.decode_logits(mean + torch.exp(0.5 * log_var) * noise)
    expected = vae_loss(x, logits, mean, log_var, kl_weight)
    expected.backward()
    assert float(loss) == pytest.approx(expected.item(), rel=1e-6)
    assert len(grads) == len(list(model.parameters()))
    for g, p in zip(grads, model.parameters(), strict=True):
        assert g.shape == p.shape
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-8)
    # The KL term moves the heads' gradients: a weight of 0 must not give the same numbers.
    if kl_weight:
        _, no_kl = model.loss_and_gradients(x, noise, 0.0)
        names = [name for name, _ in model.named_parameters()]
        i = names.index("codings_log_var.weight")
        assert not torch.allclose(no_kl[i], grads[i])


@pytest.mark.parametrize("kl_weight", [0.0, 0.5])
def test_bf16_gradients_are_float32_gradients_rounded(kl_weight):
    """With bfloat16 copies of the weights the layers run in bfloat16 (8 bits of mantissa): the
    gradients come back in bfloat16, within a few per cent of float32's, and not equal to them."""
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), (32, 16), 4)
    x, noise = _data(64, 3), torch.randn(64, 4)
    loss32, grads32 = model.loss_and_gradients(x, noise, kl_weight)
    params16 = [p.detach().to(torch.bfloat16) for p in model.parameters()]
    loss16, grads16 = model.gradient_function(params=params16)(x, noise, kl_weight)
    assert loss16.dtype == torch.float32  # the loss is computed in float32 from the logits
    assert float(loss16) == pytest.approx(float(loss32), rel=1e-2)
    for g16, g32 in zip(grads16, grads32, strict=True):
        assert g16.dtype == torch.bfloat16
        scale = g32.abs().max()
        assert (g16.float() - g32).abs().max() <= 0.05 * scale
    assert not all(torch.equal(g16.float(), g32) for g16, g32 in zip(grads16, grads32, strict=True))


@pytest.mark.parametrize("autograd", [False, True])
def test_bf16_training_follows_float32_training(autograd):
    x, valid = _data(96, 1), _data(32, 2)
    histories, models = {}, {}
    for precision in ("fp32", "bf16"):
        model = _AutogradOnlyVAE() if autograd else _tiny_model()
        torch.manual_seed(3)
        histories[precision] = train_vae(
            model, x, valid, epochs=4, batch_size=16, precision=precision,
            generator=torch.Generator().manual_seed(3),
        )  # fmt: skip
        models[precision] = model
    fp32, bf16 = histories["fp32"], histories["bf16"]
    assert bf16.train_loss[-1] < bf16.train_loss[0]  # it learns
    assert bf16.train_loss == pytest.approx(fp32.train_loss, rel=2e-2)
    assert bf16.valid_loss == pytest.approx(fp32.valid_loss, rel=2e-2)
    assert bf16.train_loss != fp32.train_loss  # and it did run in bfloat16
    assert all(p.dtype == torch.float32 for p in models["bf16"].parameters())  # float32 weights


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_frozen_parameters_stay_as_they_are(precision):
    """A frozen layer is left out of the update and the rest trains as autograd trains it."""
    x, valid = _data(64, 1), _data(16, 2)
    histories = {}
    for kind in ("analytic", "autograd"):
        model = _tiny_model() if kind == "analytic" else _AutogradOnlyVAE()
        vae = model if kind == "analytic" else model.vae
        vae.encoder[0].weight.requires_grad_(False)
        frozen = vae.encoder[0].weight.detach().clone()
        head = vae.codings_mean.weight.detach().clone()
        torch.manual_seed(3)
        histories[kind] = train_vae(
            model, x, valid, epochs=2, batch_size=16, precision=precision,
            generator=torch.Generator().manual_seed(3),
        )  # fmt: skip
        assert torch.equal(vae.encoder[0].weight, frozen)
        assert not torch.equal(vae.codings_mean.weight, head)
    tolerance = 1e-5 if precision == "fp32" else 2e-2
    assert histories["analytic"].train_loss == pytest.approx(
        histories["autograd"].train_loss, rel=tolerance
    )


def test_bf16_without_native_support_warns(monkeypatch):
    monkeypatch.setattr(training, "has_native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="precision bf16: this CPU has no native bfloat16"):
        train_vae(_tiny_model(), _data(16, 1), None, epochs=1, precision="bf16")


def test_bad_precision_is_an_error():
    model = _tiny_model()
    optimizer = make_optimizer(model, 1e-3, 0.9, 1e-7)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16; got 'fp16'"):
        make_train_step(model, optimizer, kl_weight=0, precision="fp16")
    with pytest.raises(
        ValueError, match="compile works with precision fp32 only; got precision='bf16'"
    ):
        make_train_step(model, optimizer, kl_weight=0, compile=True, precision="bf16")


class _AutogradOnlyVAE(nn.Module):
    """The MLP VAE without its hand-written gradients: the training step must use autograd."""

    def __init__(self) -> None:
        super().__init__()
        self.vae = _tiny_model()

    def forward(self, x, sample=True):
        return self.vae(x, sample=sample)


def test_models_without_analytic_gradients_train_through_autograd():
    x, valid = _data(64, 1), _data(16, 2)
    plain, wrapped = _tiny_model(), _AutogradOnlyVAE()
    histories = []
    for model in (plain, wrapped):
        torch.manual_seed(3)
        histories.append(
            train_vae(model, x, valid, epochs=2, generator=torch.Generator().manual_seed(3))
        )
    assert histories[1].train_loss == pytest.approx(histories[0].train_loss, rel=1e-5)
    torch.testing.assert_close(wrapped.vae.decoder[-1].weight, plain.decoder[-1].weight)


def test_a_failing_compile_is_a_clear_error(monkeypatch):
    def broken_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = _tiny_model()
    step = make_train_step(model, make_optimizer(model, 1e-3, 0.9, 1e-7), kl_weight=0, compile=True)
    with pytest.raises(
        CompileError, match=r"--compile: .*RuntimeError: InvalidCxxCompiler: No work"
    ):
        step(_data(4, 1).flatten(1))


def test_all_nan_validation_losses_warn_and_keep_the_last_weights(monkeypatch):
    monkeypatch.setattr(training, "evaluate_loss", lambda *a, **k: float("nan"))
    model = _tiny_model()
    with pytest.warns(UserWarning, match="validation loss was NaN in every epoch"):
        history = train_vae(model, _data(40, 1), _data(10, 2), epochs=2, batch_size=16)
    assert history.best_epoch == 2
    assert not torch.equal(model.encoder[0].weight, _tiny_model().encoder[0].weight)
