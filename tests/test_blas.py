"""minicnn.kernels.blas: NumPy's BLAS called from a Numba kernel, and its thread count."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn.kernels import blas

pytestmark = pytest.mark.skipif(not blas.AVAILABLE, reason="NumPy's BLAS is not an ILP64 "
                                "OpenBLAS here; the kernels keep to np.matmul")


def test_numpys_own_wheel_links_a_blas_the_kernels_can_call():
    # NumPy's wheels (what pyproject.toml installs) bundle an ILP64 OpenBLAS: the fused
    # Winograd passes must not silently fall back on them
    assert blas.AVAILABLE and blas.blas_threads() >= 1


@given(rows=st.integers(0, 40), extra=st.integers(0, 3), k=st.integers(1, 33),
       n=st.integers(1, 33), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_matmul_rows_equals_numpys_product_and_leaves_the_rows_after_alone(
        rows, extra, k, n, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows + extra, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.full((rows + extra, n), 7.0, dtype=dtype)
    blas.matmul_rows(a, b, c, rows)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c[:rows], a[:rows].astype(np.float64) @ b, rtol=tolerance,
                               atol=tolerance * k)
    np.testing.assert_array_equal(c[rows:], 7.0)


def test_one_blas_thread_sets_one_and_restores_the_count_even_after_an_error():
    before = blas.blas_threads()
    with blas.one_blas_thread():
        assert blas.blas_threads() == 1
    assert blas.blas_threads() == before
    with pytest.raises(KeyError), blas.one_blas_thread():
        raise KeyError("inside")
    assert blas.blas_threads() == before
