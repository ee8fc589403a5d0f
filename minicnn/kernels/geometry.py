"""Output size of a sliding window once its paddings are known (pure arithmetic)."""


def window_output_size(size, k, stride, pad_before, pad_after):
    """floor((size + P_before + P_after - K) / S) + 1."""
    return (size + pad_before + pad_after - k) // stride + 1
