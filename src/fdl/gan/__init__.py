r"""Generative adversarial networks: the losses, the gradient penalties, one alternating train
step, and the metrics that score samples.

A generator :math:`G` maps a latent :math:`z \sim \mathcal N(0, I)` to a sample; a
discriminator (or *critic*) :math:`D` maps a sample to one real number, its logit
:math:`d(x)` (the probability that :math:`x` is real is :math:`\sigma(d(x))` for the
probabilistic losses). Training alternates steps on the two objectives

.. math::

    \min_D\; L_D\bigl(d(x), d(G(z))\bigr) + \lambda_{GP}\,\mathrm{GP} + \tfrac{\gamma}{2}\,R_1,
    \qquad \min_G\; L_G\bigl(d(G(z))\bigr).

* :func:`discriminator_loss` and :func:`generator_loss` hold the five losses: ``"minimax"``
  (Goodfellow et al., 2014), ``"non_saturating"`` (the same paper's practical generator
  loss), ``"least_squares"`` (Mao et al., 2017), ``"hinge"`` (Lim & Ye, 2017; Miyato et al.,
  2018) and ``"wasserstein"`` (Arjovsky et al., 2017);
* :func:`gradient_penalty` is WGAN-GP's penalty on interpolates (Gulrajani et al., 2017) and
  :func:`r1_penalty` the penalty on real data (Mescheder et al., 2018);
* :func:`make_gan_step` builds one jitted step that takes ``n_critic`` discriminator steps and
  one generator step, each with its own optimizer, threading both models' layer state;
* :func:`mode_coverage` scores samples of a Gaussian mixture (modes covered, high-quality
  samples, Metz et al., 2017) and :func:`frechet_distance` compares two sets of features as
  Gaussians (the FID of Heusel et al., 2017, in whatever feature space one gives it).

Conventions: logits are ``(B,)`` or ``(B, 1)`` (one per example); every expectation is a mean
over the batch. Every function is pure and jit-able, with its settings (loss names, weights,
``std``, ``threshold``, ``min_fraction``) static Python numbers.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl.gan import discriminator_loss, generator_loss
    >>> real, fake = jnp.array([2.0, 1.0]), jnp.array([-1.0, 0.0])
    >>> float(discriminator_loss(real, fake, "hinge"))  # mean(relu(1 - real)) + mean(relu(1 + fake))
    0.5
    >>> float(generator_loss(fake, "hinge"))  # -mean(fake)
    0.5

References:
    I. Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
    X. Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017.
    J. H. Lim and J. C. Ye, "Geometric GAN", arXiv:1705.02894, 2017.
    T. Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018.
    M. Arjovsky, S. Chintala and L. Bottou, "Wasserstein GAN", ICML 2017.
    I. Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017.
    L. Mescheder, A. Geiger and S. Nowozin, "Which Training Methods for GANs do actually
    Converge?", ICML 2018.
    L. Metz et al., "Unrolled Generative Adversarial Networks", ICLR 2017.
    M. Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium", NeurIPS 2017.
"""

from fdl.gan.losses import (
    LOSSES,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    interpolate,
    r1_penalty,
)
from fdl.gan.metrics import frechet_distance, gaussian_frechet_distance, mode_coverage
from fdl.gan.step import GAN, GANState, make_gan_step

__all__ = [
    "LOSSES",
    "discriminator_loss",
    "generator_loss",
    "interpolate",
    "gradient_penalty",
    "r1_penalty",
    "GANState",
    "GAN",
    "make_gan_step",
    "mode_coverage",
    "gaussian_frechet_distance",
    "frechet_distance",
]
