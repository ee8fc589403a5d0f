"""Conv2D, and the functions that set how the Conv2Ds built afterwards compute."""
from __future__ import annotations

from minicnn.kernels.winograd import Pooling
from minicnn.layers import conv_algorithms
from minicnn.layers.base import KernelLayer
from minicnn.layers.conv_algorithms import change_settings, check_algorithm
from minicnn.registry import register
from minicnn.shapes import normalize_padding, normalize_tuple, window_2d


# The settings of minicnn.layers.conv_algorithms, as functions. Each changes them for the
# Conv2Ds built afterwards in this context (`with conv_settings(...)` changes them for a
# block only); a built layer keeps its plan.

def set_workspace_limit(nbytes) -> int:
    """Bound the workspace of the Conv2Ds built from now on (bytes; None: no bound), in
    training and at inference: its im2col matrix, or Winograd's transformed tiles, are built
    for as many images at a time as fit (at least one). Returns the previous bound."""
    return _change("set_workspace_limit", workspace_limit=nbytes).workspace_limit


def set_winograd_min_channels(channels) -> tuple:
    """Conv2Ds built from now on with algorithm 'auto' compute 3x3 stride-1 kernels with at
    least this many input channels by Winograd's algorithm instead of im2col. channels: one
    number (or None: never) for training and inference, or a pair (training, inference); the
    default is 32 for both. Returns the previous setting, as a pair."""
    return _change("set_winograd_min_channels",
                   winograd_min_channels=channels).winograd_min_channels


def set_winograd_tile(m) -> int:
    """Winograd's output tile for the Conv2Ds built from now on that take it: 4 for
    F(4x4, 3x3) (the default: 4x fewer multiply-adds than im2col, rounding a few millionths
    of the output's scale in float32) or 2 for F(2x2, 3x3) (2.25x fewer, rounding as
    im2col's). Returns the previous tile."""
    return _change("set_winograd_tile", winograd_tile=m).winograd_tile


def _change(function, **changes):
    try:
        return change_settings(**changes)
    except ValueError as error:
        raise ValueError(f"{function}: {error}") from None


@register()
class Conv2D(KernelLayer):
    """2-D convolution (cross-correlation, as Keras), with bias and activation.

    Input  X: ndarray of shape (N, H, W, C_in)
    Kernel W: ndarray of shape (K_h, K_w, C_in, C_out)   bias b: (C_out,)
    Output Y: ndarray of shape (N, H_out, W_out, C_out)

        Z[n, i, j, o] = b[o] + sum_{p, q, c} X_pad[n, i*S_h + p, j*S_w + q, c] * W[p, q, c, o]
        Y = act(Z)

    Output size: 'valid' H_out = floor((H - K_h) / S_h) + 1; 'same' H_out = ceil(H / S_h),
    with P = max((H_out - 1)*S_h + K_h - H, 0) zero rows, floor(P/2) on top, the rest
    below (the same for W). Parameters: K_h*K_w*C_in*C_out + C_out.

    Computed as im2col + one matrix product (minicnn.kernels.conv):
        cols = im2col(X)  (N*H_out*W_out, K_h*K_w*C_in);   Z = cols @ W_2d + b
    Forward caches cols, W and Y. Backward, with dZ = act'(dY):
        dW = cols^T @ dZ,   db = sum_{n,i,j} dZ,   dX = col2im(dZ @ W_2d^T)
    When the whole batch's cols would exceed the workspace limit (set_workspace_limit),
    forward keeps X instead and backward rebuilds cols for a few images at a time.

    algorithm: 'auto' (the default), 'im2col', 'winograd4' or 'winograd2'. With 'auto',
    3x3 stride-1 kernels over enough input channels take Winograd's F(4x4, 3x3)
    (minicnn.kernels.winograd4; F(2x2, 3x3) with set_winograd_tile(2),
    minicnn.kernels.winograd): the same Z and gradients up to rounding, with 4x (2.25x)
    fewer multiply-adds. The choice is made when the layer is built and kept in
    `layer.plan` (minicnn.layers.conv_algorithms); model.summary(show_algorithms=True)
    shows it.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 input_shape=None, name=None, trainable=True, dtype="float32",
                 algorithm="auto"):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         input_shape=input_shape, name=name, trainable=trainable, dtype=dtype)
        label = self._label()
        self.filters = self._positive_int(filters, "filters")
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", label)
        self.strides = normalize_tuple(strides, 2, "strides", label)
        self.padding = normalize_padding(padding, label)
        self._algorithm = check_algorithm(algorithm, label)
        self.plan = None                  # a ConvPlan, made when the layer is built
        self._forward_algorithm = None    # the algorithm whose cache backward consumes

    @property
    def algorithm(self) -> str:
        """The algorithm asked for: 'auto' or a name of conv_algorithms.ALGORITHMS."""
        return self._algorithm

    @algorithm.setter
    def algorithm(self, name) -> None:
        self._algorithm = check_algorithm(name, self._label())
        if self.built:
            self._make_plan()

    def build(self, input_shape, rng=None):
        output_shape = super().build(input_shape, rng)
        self._make_plan()
        return output_shape

    def _make_plan(self):
        out_hw = self.output_shape[1:3] if self.output_shape is not None else None
        self.plan = conv_algorithms.plan(self._algorithm, self.kernel.shape, self.strides,
                                         self._activation_code, self._label(), out_hw=out_hw)

    def compute_output_shape(self, input_shape):
        self._require_rank(input_shape, 4, "(N, H, W, C_in)")
        _, h, w, _ = input_shape
        win = window_2d(h, w, self.kernel_size, self.strides, self.padding)
        if win.h_out <= 0 or win.w_out <= 0:
            raise self._error(f"kernel_size {self.kernel_size} is larger than its input "
                              f"(H, W) = {(h, w)} with padding='valid'")
        self._pads = win[2:]
        return (None, win.h_out, win.w_out, self.filters)

    def _kernel_shape(self, input_shape):
        return self.kernel_size + (input_shape[-1], self.filters)

    def forward(self, x, training=False, keep_cache=None):
        x = self._check_input(x)
        keep_cache = training if keep_cache is None else keep_cache
        algorithm = self.plan.training if keep_cache else self.plan.inference
        y, self._logits, self._cache = algorithm.forward(
            x, self.kernel, self.bias, self.strides, self._pads, self._activation_code,
            keep_cache, self.plan.workspace_limit)
        self._forward_algorithm = algorithm if keep_cache else None
        return y

    def forward_before_pooling(self, x):
        """Z = conv(X, W) at inference, without the bias and the activation: for a
        max-pooling right after this layer to apply them to its own, smaller, output
        (MaxPooling2D.forward_after_conv). X (N, H, W, C_in) -> Z (N, H_out, W_out, C_out)."""
        x = self._check_input(x)
        z, _, self._cache = self.plan.inference.forward(
            x, self.kernel, None, self.strides, self._pads, 0, False,
            self.plan.workspace_limit)
        self._forward_algorithm = None
        return z

    def pools(self, pooling) -> bool:
        """Whether forward_pooled runs this layer and `pooling`, the MaxPooling2D right after
        it, in one pass at inference: the inference algorithm computes the pooling in its
        output pass (Winograd's F(4x4, 3x3)'s output transform, or im2col's bands for a
        small kernel: minicnn.kernels.im2col_bands), for windows that tile the output from
        its corner: every 2x2 pooling of the lecture's CNN and of VGG16."""
        pool_size, strides, pads, _ = pooling.window()
        return self.plan.inference.pools(pool_size, strides, pads, self.kernel.shape)

    def forward_pooled(self, x, pooling):
        """Inference through this linear or ReLU layer and the pooling after it (pools()
        holds): Y = act(maxpool(conv(X)) + b), the numbers of forward_before_pooling and
        the pooling's forward_after_conv without writing the convolution's output.
        X (N, H, W, C_in) -> Y (N, H_pool, W_pool, C_out)."""
        x = self._check_input(x)
        pool_size, _, _, out_hw = pooling.window()
        self._cache = self._forward_algorithm = None
        pooling.forget()
        return self.plan.inference.forward_pooled(
            x, self.kernel, self.bias, self.strides, self._activation_code, self._pads,
            Pooling(pool_size, out_hw), self.plan.workspace_limit)

    def backward_from_dz(self, dz, db, need_dx=True):
        """Backward from dZ (N, H_out, W_out, C_out) and its sum db (C_out,) when the layer
        after has applied the activation's derivative already (MaxPooling2D's
        backward_through_relu). Returns dX like backward."""
        return self._backward(dz, need_dx, from_logits=True, db=db)

    def _backward(self, dy, need_dx, from_logits, db=None):
        cache = self._require_cache()
        train = self.trainable
        # The cache is freed here, so its workspace can take dZ @ W^T once dW is done.
        # Scratch arrays are not kept between steps: the allocator hands the same memory
        # back next step (minicnn.runtime), and the process holds only what one step needs.
        dx, dw, db = self._forward_algorithm.backward(
            dy, cache, need_dx=need_dx, need_dw=train, need_db=train and self.use_bias,
            from_logits=from_logits, db=db)
        self._set_grads(dw, db)
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "algorithm": self.algorithm}
