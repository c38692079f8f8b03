"""DCP-NAS's settings: the published method by default, each choice documented with the
equation it reads (``backbones/search/dcpnas.py`` is the method)."""
from __future__ import annotations

from typing import Literal

from backbones.search import tangent as tp
from backbones.search.base import CommonSearchConfig
from backbones.settings import Count, Fraction, NonNegativeFloat, PositiveFloat


class DCPNASConfig(CommonSearchConfig):
    """DCP-NAS settings on top of the common supernet ones (DARTS CIFAR-10 defaults).

    The defaults are the published method (the book's §4.4): GGN second order, D weighted 5e-3
    and L_R 0.2, decoupled optimization on. Naming: ``lambda_r`` weighs the reconstruction
    error L_R and ``mu`` the tangent distance D, as in docs/methods.md; the book's Eq. 4.32
    uses the letters the other way round (-G + lambda D + mu L_R)."""

    #: tangent propagation: the distance term mu * D(alpha_hat) (False = CP-NAS-like Child)
    tangent: bool = True
    #: the reconstruction error lambda_r * L_R(w_hat, beta) in the Child's weight loss
    recon: bool = True
    #: decoupled optimization: psi~ updates and backtracking (Eqs. 4.50-4.53)
    decouple: bool = True
    #: D between the Child's architecture gradient and the tangent: fnorm | l1 | cosine
    distance: tp.Distance = "fnorm"
    #: Hessian of G in dD/dalpha_hat. The book's method is the Generalized Gauss-Newton
    #: approximation (Eqs. 4.36-4.41): ``ggn_exact`` computes the GGN product itself
    #: (deterministic; the default, the published method); ``ggn`` estimates it from
    #: ``ggn_samples`` label draws (the Fisher's sampled form); ``exact`` uses the true Hessian
    #: (double backward; Table 4.3's "without GGN" rows, ablation ``dcpnas-exact``).
    second_order: tp.SecondOrder = "ggn_exact"
    #: label draws per example for the Fisher estimate (each is one backward pass to alpha)
    ggn_samples: Count = 1
    #: weight of L_R = ||w_hat - beta sign(w_hat)||^2 (a sum over every binary weight). The
    #: book's Eq. 4.32 reads -G + lambda D + mu L_R with "5e3 and 0.2": L_R gets 0.2 (the
    #: published default) and D 5e-3 (the exponent's minus sign read as lost in extraction;
    #: §4.4.7 says accuracy falls once the D weight passes ~1e-3). Our earlier reading (0.2 on D,
    #: 5e-3 on L_R) is the ablation ``dcpnas-scaled-weights``: measured on C=8, 5 cells, 0.2 on
    #: L_R makes its weight gradient 8-14x the KL's (L_R dominates the Child's weight update).
    lambda_r: NonNegativeFloat = 0.2
    #: weight of D (see ``lambda_r``): 5e-3, the book's. D compares architecture gradients
    #: (|dG/dalpha_hat| ~ 4e-2 over 224 entries); measured on C=8, 5 cells, mu = 5e-3 makes
    #: mu dD/dalpha_hat 0.2-0.5% of dKL/dalpha_hat (norms), 0.2 makes it 8-20%.
    mu: NonNegativeFloat = 5e-3
    #: backtracking threshold: an op type is backtracked when at least this fraction of the M
    #: op types have a smaller weight norm R(w_m) (0.5 = the top half; 0 = all)
    tau: Fraction = 0.5
    #: eta_1 of eta = eta_1 eta_2 in Eq. 4.52: the architecture learning rate of Eq. 4.49
    #: (None = arch_lr)
    eta1: PositiveFloat | None = None
    #: eta_2 of eta = eta_1 eta_2: with psi~ ~ 1 and eta_1 = 3e-4 the backtracking adds about
    #: 3e-5 alpha^t per step, a ~2x drift of the backtracked alphas over a 50-epoch search
    eta2: NonNegativeFloat = 0.1
    #: step size of the psi~ update (Eq. 4.51). dL/dpsi~ = eta alpha^t dL/dalpha~ is ~3e-5 x
    #: 0.3 x 3e-3 ~ 3e-8 per entry and step, so 1e4 lets a consistent signal move psi~ by ~0.1
    #: per CIFAR epoch (390 steps), while step-to-step noise adds up to ~0.1 over a search
    eta_psi: NonNegativeFloat = 1e4
    #: initial value of psi~ (the paper does not say; 1 = backtrack by eta alpha^t at once)
    psi_init: NonNegativeFloat = 1.0
    #: batch of the Child's architecture step: val (bi-level, as DARTS) | train (single pass)
    child_arch_batch: Literal["val", "train"] = "val"
    #: the Parent's architecture and weight steps run every k-th step (1 = every step). §4.4's
    #: premise is that the real-valued Parent converges faster than the 1-bit Child, so it can
    #: be updated less often: on the other steps it only runs forward (no gradients) to give
    #: the Child its logits, the tangent of its last update is reused, and psi~ is not updated
    #: (Eq. 4.51 needs the Parent's gradient at the backtracked alpha~)
    parent_every: Count = 1
    #: how backtracking ranks the ops: ``book`` by R(w_m) = ||w_m||^2 as Eq. 4.53 writes it
    #: (parameter-free ops by their fixed kernels: the identity's C dwarfs every 1-bit conv's
    #: (0.02 |M|)^2 n, so skip-connect is always in the backtracked top half); ``relative`` by
    #: R(w_m) / R(w_m at initialisation), a scale-free reading (every op starts at 1, an op
    #: ranks high when its weights grew; ablation ``dcpnas-norm-backtrack``)
    backtrack_norm: Literal["book", "relative"] = "book"
