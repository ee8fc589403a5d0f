"""Hypothesis strategies for window geometries (kernel/pool, strides, padding, sizes)."""
from hypothesis import strategies as st


@st.composite
def windows(draw, max_size=9, max_k=4, max_c=5, max_n=3):
    """(x_shape, kernel, strides, padding) with a window that fits its input."""
    padding = draw(st.sampled_from(["valid", "same"]))
    k = (draw(st.integers(1, max_k)), draw(st.integers(1, max_k)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    lo = (k[0], k[1]) if padding == "valid" else (1, 1)
    h = draw(st.integers(lo[0], max(lo[0], max_size)))
    w = draw(st.integers(lo[1], max(lo[1], max_size)))
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    return (n, h, w, c), k, s, padding
