import pytest
import torch

from carve.compress import fold, lowrank, relative_error, svd_factors
from carve.compress.factorisation import Factorized, rank_for_energy
from carve.zoo import create_model

from .conftest import TINY_SPEC


def test_svd_error_decreases_with_rank_and_vanishes_at_full_rank():
    w = torch.randn(48, 96, generator=torch.Generator().manual_seed(0))
    errors = [relative_error(w, r) for r in (4, 12, 24, 36, 48)]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-5
    a, b = svd_factors(w, 12)
    assert a.shape == (12, 96) and b.shape == (48, 12)
    assert rank_for_energy(w, 0.5) < rank_for_energy(w, 0.9) <= 48


def test_lowrank_factorises_where_it_pays_and_stays_close():
    torch.manual_seed(0)
    model = create_model(TINY_SPEC).eval()
    x = torch.randn(2, 3, 32, 32)
    full, _ = lowrank(model, energy=1.0, min_saving=0.0)
    assert not any(isinstance(m, Factorized) for m in full.modules())  # full rank never pays
    cut, spec = lowrank(model, energy=0.6, min_saving=0.25)
    n = sum(isinstance(m, Factorized) for m in cut.modules())
    assert n == len(cut.lowrank_layers) > 0 and spec == model.spec
    for layer in cut.lowrank_layers:
        assert layer["rank"] < layer["full"]
    fine, _ = lowrank(model, energy=0.95, min_saving=0.0)
    with torch.no_grad():
        ref = model(x)
        err_fine = (fine(x) - ref).norm() / ref.norm()
        err_cut = (cut(x) - ref).norm() / ref.norm()
        folded, _ = fold(cut)
        assert (folded(x) - cut(x)).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())
    assert err_fine < err_cut


def test_lowrank_bad_arguments():
    model = create_model(TINY_SPEC)
    with pytest.raises(ValueError, match="energy"):
        lowrank(model, energy=1.5)
    with pytest.raises(ValueError, match="min_saving"):
        lowrank(model, min_saving=1.0)
