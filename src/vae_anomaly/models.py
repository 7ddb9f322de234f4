"""The VAE models: encode / reparameterize / decode / forward, and the loss as a plain function.

The seed's model is Geron's fully connected VAE (Hands-On Machine Learning, chapter 17), a
variational autoencoder after Kingma & Welling, "Auto-Encoding Variational Bayes" (2014).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

# torch.selu's constants (selu = scale * elu(x, alpha)); its backward is elu_backward with them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class MLPVAE(nn.Module):
    """The seed's fully connected VAE with selu layers and a sigmoid output.

    The encoder flattens the image and applies Dense layers of widths ``hidden`` (selu), then two
    parallel heads give the codings mean and log-variance (``latent_dim`` each). The decoder mirrors
    the widths and ends in one unit per pixel. For 28x28 images and the defaults this is the seed's
    488,112-parameter model. Weights are Glorot-uniform and biases zero, as Keras initialises them.

    Args:
        image_shape: ``(C, H, W)`` of the images; the sizes of the first and last layer follow it.
        hidden: encoder layer widths, e.g. ``(256, 128, 64)``; the decoder uses them reversed.
        latent_dim: size of the codings.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (256, 128, 64),
        latent_dim: int = 16,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.hidden = tuple(int(h) for h in hidden)
        self.latent_dim = int(latent_dim)
        n_pixels = math.prod(self.image_shape)
        widths = (n_pixels, *self.hidden)
        self.encoder = nn.Sequential(
            *(layer for a, b in pairwise(widths) for layer in (nn.Linear(a, b), nn.SELU()))
        )
        self.codings_mean = nn.Linear(self.hidden[-1], self.latent_dim)
        self.codings_log_var = nn.Linear(self.hidden[-1], self.latent_dim)
        dec_widths = (self.latent_dim, *reversed(self.hidden))
        self.decoder = nn.Sequential(
            *(layer for a, b in pairwise(dec_widths) for layer in (nn.Linear(a, b), nn.SELU())),
            nn.Linear(
                self.hidden[0], n_pixels
            ),  # logits; the sigmoid is applied in decode / the loss
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases, like Keras's Dense defaults."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(N, C, H, W)`` -> codings mean and log-variance, each ``(N, latent_dim)``."""
        h = self.encoder(x.flatten(1))
        return self.codings_mean(h), self.codings_log_var(h)

    @staticmethod
    def reparameterize(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """Sample ``z = mean + exp(log_var / 2) * eps`` with ``eps ~ N(0, I)`` (torch's global RNG)."""
        return mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Codings ``(N, latent_dim)`` -> pixel logits ``(N, C*H*W)``."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codings ``(N, latent_dim)`` -> reconstructed images ``(N, C, H, W)`` in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z)).view(-1, *self.image_shape)

    def forward(
        self, x: torch.Tensor, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images ``(N, C, H, W)`` -> (pixel logits ``(N, C*H*W)``, codings mean, codings log-variance).

        ``sample=True`` decodes a sample of the codings (training, like the seed's Sampling layer);
        ``sample=False`` decodes the codings mean (deterministic scoring).
        """
        mean, log_var = self.encode(x)
        z = self.reparameterize(mean, log_var) if sample else mean
        return self.decode_logits(z), mean, log_var

    def loss_and_gradients(
        self,
        x: torch.Tensor,
        noise: torch.Tensor,
        kl_weight: float = 0.0,
        out: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The training loss and its gradients, computed by hand instead of by autograd.

        The same forward pass as :meth:`forward` with ``sample=True`` and :func:`vae_loss`, then
        the chain rule written out layer by layer with the same ATen kernels autograd would call
        (``elu_backward`` for selu, ``mm`` for the Linear layers), so the numbers are autograd's
        (the tests compare them). Skipping the autograd engine and its gradient accumulation
        saves a fifth of a training step on a CPU. A training loop should call
        :meth:`gradient_function` once and reuse what it returns.

        Args:
            x: images ``(B, C, H, W)`` or flat ``(B, C*H*W)`` in [0, 1].
            noise: the reparameterisation's ``eps ~ N(0, I)``, ``(B, latent_dim)``.
            kl_weight: weight of the mean KL divergence, as in :func:`vae_loss`.
            out: optional tensors, one per tensor of ``self.parameters()`` and of its shape, that
                receive the gradients (e.g. views into an optimizer's flat gradient buffer): the
                kernels write into them, so no gradient is allocated or copied afterwards.

        Returns:
            The loss (0-d) and one gradient per tensor of ``self.parameters()``, in that order
            (the tensors of ``out`` when given).
        """
        return self.gradient_function(out)(x, noise, kl_weight)

    def gradient_function(
        self,
        out: Sequence[torch.Tensor | None] | None = None,
        params: Sequence[torch.Tensor] | None = None,
    ) -> Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, list[torch.Tensor]]]:
        """:meth:`loss_and_gradients` as a function ``(x, noise, kl_weight) -> (loss, grads)``
        with the layers and the ``out`` tensors looked up once.

        A step on the seed's model is about 80 small kernel calls; looking up modules and
        parameters on every call doubled the fixed cost of a step (252 against 130 us on a
        2-core CPU, measured on a tiny model), so the function holds the parameters themselves
        (not views of them: an optimizer may give them new storage) and runs straight-line
        torch calls.

        Args:
            out: as in :meth:`loss_and_gradients`, in the dtype of ``params``.
            params: tensors to compute with in place of ``self.parameters()`` (same order and
                shapes), e.g. bfloat16 copies of the weights for mixed precision. The layers then
                run in their dtype (images and noise are cast to it); the loss and its gradient
                at the logits are computed in float32.
        """
        own = list(self.parameters())
        values = list(params) if params is not None else own
        targets = list(out) if out is not None else [None] * len(own)
        for name, given in (("out", targets), ("params", values)):
            if len(given) != len(own):
                raise ValueError(f"{name} must hold {len(own)} tensors; got {len(given)}")
        dtype = values[0].dtype
        index = {id(p): i for i, p in enumerate(own)}

        def linear(m: nn.Linear) -> tuple:
            """(weight, bias, weight's out tensor, bias's out tensor, their parameter indices)"""
            w, b = index[id(m.weight)], index[id(m.bias)]
            return values[w], values[b], targets[w], targets[b], w, b

        encoder = [linear(m) for m in self.encoder if isinstance(m, nn.Linear)]
        *decoder, last = [linear(m) for m in self.decoder if isinstance(m, nn.Linear)]
        head_mean, head_log_var = linear(self.codings_mean), linear(self.codings_log_var)
        n_params = len(own)
        selu_backward = torch.ops.aten.elu_backward.default

        def backward_linear(layer, grad_out: torch.Tensor, layer_in: torch.Tensor, grads: list):
            _, _, weight_out, bias_out, w, b = layer
            grads[w] = torch.mm(grad_out.t(), layer_in, out=weight_out)
            grads[b] = torch.sum(grad_out, 0, out=bias_out)

        @torch.no_grad()
        def loss_and_gradients(x: torch.Tensor, noise: torch.Tensor, kl_weight: float = 0.0):
            x = x.flatten(1)
            noise = noise.to(dtype)  # .to() of a tensor already in dtype is the tensor itself
            # Forward, keeping each layer's input and pre-activation.
            inputs, pre = [], []
            h = x.to(dtype)
            for weight, bias, *_ in encoder:
                inputs.append(h)
                pre.append(torch.addmm(bias, h, weight.t()))
                h = torch.selu(pre[-1])
            mean = torch.addmm(head_mean[1], h, head_mean[0].t())
            log_var = torch.addmm(head_log_var[1], h, head_log_var[0].t())
            std = torch.exp(0.5 * log_var)
            z = mean + std * noise
            dec_inputs, dec_pre = [], []
            g = z
            for weight, bias, *_ in decoder:
                dec_inputs.append(g)
                dec_pre.append(torch.addmm(bias, g, weight.t()))
                g = torch.selu(dec_pre[-1])
            logits = torch.addmm(last[1], g, last[0].t()).float()
            loss = vae_loss(x, logits, mean.float(), log_var.float(), kl_weight)

            grads: list[torch.Tensor | None] = [None] * n_params
            # d BCE-with-logits (mean over B * pixels) / d logits.
            grad = torch.sigmoid(logits).sub_(x).div_(x.numel()).to(dtype)
            backward_linear(last, grad, g, grads)
            grad = grad.mm(last[0])
            for layer, layer_in, layer_pre in zip(
                reversed(decoder), reversed(dec_inputs), reversed(dec_pre), strict=True
            ):
                grad = selu_backward(grad, _SELU_ALPHA, _SELU_SCALE, 1.0, False, layer_pre)
                backward_linear(layer, grad, layer_in, grads)
                grad = grad.mm(layer[0])
            # z = mean + exp(log_var / 2) * noise; the KL term adds w * mean / B and
            # w * (exp(log_var) - 1) / (2B) (Kingma & Welling 2014, appendix B).
            grad_mean = grad
            grad_log_var = grad * noise * std * 0.5
            if kl_weight != 0:
                grad_mean = grad_mean + (kl_weight / len(x)) * mean
                grad_log_var = grad_log_var + (kl_weight / len(x)) * 0.5 * (log_var.exp() - 1)
            backward_linear(head_mean, grad_mean, h, grads)
            backward_linear(head_log_var, grad_log_var, h, grads)
            grad = grad_mean.mm(head_mean[0]) + grad_log_var.mm(head_log_var[0])
            for i in range(len(encoder) - 1, -1, -1):
                grad = selu_backward(grad, _SELU_ALPHA, _SELU_SCALE, 1.0, False, pre[i])
                backward_linear(encoder[i], grad, inputs[i], grads)
                if i > 0:  # the image needs no gradient
                    grad = grad.mm(encoder[i][0])
            return loss, grads

        return loss_and_gradients


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, ``(N,)``: ``-0.5 * sum(1 + log_var - exp(log_var) - mean^2)``."""
    return -0.5 * torch.sum(1 + log_var - log_var.exp() - mean.square(), dim=1)


def vae_loss(
    x: torch.Tensor,
    logits: torch.Tensor,
    mean: torch.Tensor,
    log_var: torch.Tensor,
    kl_weight: float = 0.0,
) -> torch.Tensor:
    """The seed's loss: binary cross-entropy averaged over pixels and images, plus a weighted KL.

    The reconstruction term is Keras's ``binary_crossentropy`` (computed from logits for stability).
    The KL term of Kingma & Welling (2014) is averaged over images and multiplied by ``kl_weight``:
    0 in the seed (its latent loss is commented out), ``1/784`` in Geron's book.

    Args:
        x: target images ``(N, C, H, W)`` in [0, 1].
        logits: decoder output ``(N, C*H*W)``.
        mean, log_var: codings ``(N, latent_dim)``.
        kl_weight: weight of the mean KL divergence.
    """
    reconstruction = F.binary_cross_entropy_with_logits(logits, x.flatten(1))
    if kl_weight == 0:
        return reconstruction
    return reconstruction + kl_weight * kl_divergence(mean, log_var).mean()


def build_model(
    name: str, image_shape: Sequence[int], hidden: Sequence[int], latent_dim: int
) -> nn.Module:
    """Build the model called ``name`` (see ``config.MODEL_NAMES``) for images of ``image_shape``."""
    if name == "mlp_vae":
        return MLPVAE(image_shape, hidden, latent_dim)
    raise ValueError(f"unknown model {name!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_summary(model: nn.Module) -> str:
    """A table of every layer of the encoder and the decoder, in the style of Keras's
    ``model.summary(expand_nested=True, show_trainable=True)``: output shape (``None`` = batch),
    parameter count and trainable flag, then the totals (488,112 for the seed's model)."""
    rows: list[tuple[str, str, int, str]] = []

    def add(name: str, shape: Sequence[int], module: nn.Module | None = None) -> None:
        params = list(module.parameters()) if module is not None else []
        count = sum(p.numel() for p in params)
        trainable = "-" if not params else ("Y" if all(p.requires_grad for p in params) else "N")
        rows.append((name, str((None, *shape)), count, trainable))

    def add_stack(prefix: str, stack: nn.Sequential, width: int) -> int:
        dense = 0
        for module in stack:
            if isinstance(module, nn.Linear):
                dense += 1
                width = module.out_features
                add(f"  {prefix}_dense_{dense} (Linear)", (width,), module)
            else:
                rows[-1] = (f"{rows[-1][0][:-1]} + {type(module).__name__.lower()})", *rows[-1][1:])
        return width

    image_shape = getattr(model, "image_shape", None)
    if not isinstance(model, MLPVAE) or image_shape is None:
        add(f"{type(model).__name__}", (), model)
    else:
        rows.append(("encoder", "", -1, ""))
        add("  input", image_shape)
        add("  flatten (Flatten)", (math.prod(image_shape),))
        add_stack("encoder", model.encoder, math.prod(image_shape))
        add("  codings_mean (Linear)", (model.latent_dim,), model.codings_mean)
        add("  codings_log_var (Linear)", (model.latent_dim,), model.codings_log_var)
        add("  sampling (mean + exp(log_var/2) * eps)", (model.latent_dim,))
        rows.append(("decoder", "", -1, ""))
        add("  input (codings)", (model.latent_dim,))
        add_stack("decoder", model.decoder, model.latent_dim)
        add("  sigmoid + reshape", image_shape)
    name_w = max(len(r[0]) for r in rows) + 2
    header = f"{'Layer (type)':<{name_w}}{'Output Shape':<20}{'Param #':>10}  Trainable"
    lines = [f'Model: "{type(model).__name__}"', "=" * len(header), header, "=" * len(header)]
    for name, shape, count, trainable in rows:
        if count < 0:
            lines.append(name)
        else:
            lines.append(f"{name:<{name_w}}{shape:<20}{count:>10,}  {trainable}")
    total = sum(p.numel() for p in model.parameters())
    trainable_total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines += [
        "=" * len(header),
        f"Total params: {total:,}",
        f"Trainable params: {trainable_total:,}",
        f"Non-trainable params: {total - trainable_total:,}",
    ]
    return "\n".join(lines)
