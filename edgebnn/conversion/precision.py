"""``convert --precision int8``: int8 islands around the real-valued convolutions, the rest as it was.

A BNN's float half on an ARM core is its real-valued convolutions (the stem, the 1x1 downsample shortcuts): in
Bi-Real-18 at 224 px they are 56% of LCE's aarch64 instructions. LCE's converter (0.16) quantizes what a graph
marks with fake-quant ops (``tf.quantization.fake_quant_with_min_max_vars``, as quantization-aware training leaves
them) and nothing else, so the construction is a rewritten copy of the deployment model
(:func:`int8_islands`, the way :mod:`edgebnn.conversion.fold` rewrites a copy for its folds):

1. Each real-valued conv (a ``Conv2D`` with no kernel quantizer and no sign on its input; a twin's Hardtanh input
   is applied first) deep enough that int8 is faster (K = kh kw c_in >= :data:`MIN_INT8_DEPTH`) becomes an island;
   when its only consumer is a BatchNorm, the BatchNorm goes into its weights:
   W'_o = W_o s_o, b'_o = (b_o - m_o) s_o + beta_o, s_o = gamma_o / sqrt(v_o + eps); the BatchNorm becomes an
   identity (which converts to nothing).
2. The conv computes y = FQ_out(conv(FQ_in(x), FQW(W')) + b'): FQ_in / FQ_out fake-quantize to 8 bits with one
   range per tensor, [min(0, lo), max(0, hi)] of what that tensor held on the calibration images
   (:data:`CALIBRATION_IMAGES` training images of the run's data set, through the deployment model); FQW
   fake-quantizes each output channel's kernel symmetrically to [-max|W'_o|, max|W'_o|] (narrow range, the
   per-channel int8 weights TFLite's CONV_2D takes).
3. LCE's converter turns each FQ_in into a QUANTIZE, the conv into an int8 CONV_2D (int32 bias at scale
   s_in s_w,o) and FQ_out into a DEQUANTIZE: an island. Same-scale neighbours may join it (the shortcut's average
   pool before the 1x1 conv, the stem's max-pool after it), which is as exact in int8 as in float; the QUANTIZE
   then sits before the pool, so an input range is taken where the pool reads (a pool's output holds less).

Nothing else gets a range, so every other op stays float: the binary convs stay ``LceBconv2d`` (their sign reads
the float after DEQUANTIZE), and the ops whose int8 kernels run slower than their float selves on ARM (per-channel
SUB and PRELU, i.e. RSign and RPReLU, fall to TFLite's reference int8 kernels; MUL; the int8 MEAN) never become
int8. The classifier (Dense) gets the same treatment (per-tensor weights) only with ``classifier=True``: off by
default, see :data:`INT8_CLASSIFIER`. An int8 flatbuffer cannot meet the float proof's 1e-3 of the output scale;
it is judged by top-1 agreement with the Keras model (:func:`agreement_failure`).
"""

from __future__ import annotations

import functools

import numpy as np

from edgebnn import data
from edgebnn.archs import custom_objects
from edgebnn.errors import OptionError
from edgebnn.tflite import fields, file
from edgebnn.tflite.describe import read_ops

PRECISIONS = ("float", "int8")
DEFAULT_PRECISION = "float"
CALIBRATION_IMAGES = 256  # training images whose tensor ranges set the fake-quant ranges
DEFAULT_MIN_AGREEMENT = 0.99  # the int8 proof: top-1 agreement with Keras over the check samples
# The classifier stays float: an int8 FULLY_CONNECTED with the QUANTIZE/DEQUANTIZE it needs cost more than the
# float FC it replaced, +0.19 M aarch64 instructions per inference on bireal-18 and reactnet-18 at 224 px, 1000
# classes, both on cortex-a72 and cortex-a76 (LCE 0.16's aarch64 runner under QEMU 1 thread, randomised parameters).
INT8_CLASSIFIER = False
# A conv stays float when its reduction depth K = kh kw c_in is under this. Counted on cortex-a72 (LCE 0.16's aarch64
# runner, 224 px): int8 CONV_2D costs about 0.24 instructions per MAC plus 18.5 per output element (requantizing),
# float about 0.6 per MAC, so int8 wins from K of about 51 on. ReActNet-A's 3x3 stem over RGB (K = 27) took 9.99 M
# instructions in int8 against 6.77 M in float; Bi-Real-18's 7x7 one (K = 147) 42.86 M against 68.25 M.
MIN_INT8_DEPTH = 64
INT8, FLOAT32 = 9, 0  # TFLite TensorType values


def parse_precision(precision: str | None) -> str:
    """``"float"`` or ``"int8"`` (None is float), else one line naming both."""
    value = (precision or DEFAULT_PRECISION).strip().lower()
    if value not in PRECISIONS:
        raise OptionError("{precision} must be one of {choices}, not {value}", choices=", ".join(PRECISIONS),
                          value=precision)
    return value


def check_min_agreement(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise OptionError("{min_agreement} must be a fraction from 0 to 1 (0.99 is 99%), not {value}", value=value)
    return float(value)


# ------------------------------------------------------------------------------------------ which layers
def _depth(layer) -> int:
    """K = kh kw c_in: the multiply-adds behind each output element."""
    return int(np.prod(layer.kernel_size)) * int(layer.input_shape[-1])


def _is_real_conv(layer) -> bool:
    import tensorflow as tf  # lazy: loads TensorFlow

    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    if not isinstance(layer, tf.keras.layers.Conv2D) or isinstance(
            layer, tf.keras.layers.DepthwiseConv2D | tf.keras.layers.SeparableConv2D | tf.keras.layers.Conv2DTranspose):
        return False
    if getattr(layer, "groups", 1) != 1 or getattr(layer, "kernel_quantizer", None) is not None:
        return False
    return not stats.signs_its_input(layer) and layer.activation in (None, tf.keras.activations.linear)


def _is_classifier(layer, model) -> bool:
    import tensorflow as tf  # lazy: loads TensorFlow

    return (type(layer) is tf.keras.layers.Dense and len(layer.input_shape) == 2
            and layer.activation in (None, tf.keras.activations.linear)
            and any(out.node.layer is layer for out in model.outputs))


def _consumers(model) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for spec in model.get_config()["layers"]:
        for node in spec["inbound_nodes"]:
            for item in node:
                if isinstance(item, list | tuple) and item and isinstance(item[0], str):
                    found.setdefault(item[0], []).append(spec["name"])
    return found


def _folded_batchnorm(layer, model, consumers: dict):
    """The BatchNorm that is ``layer``'s only consumer (and not a model output), or None."""
    import tensorflow as tf  # lazy: loads TensorFlow

    users = consumers.get(layer.name, [])
    if len(users) != 1 or any(out.node.layer is layer for out in model.outputs):
        return None
    bn = model.get_layer(users[0])
    if type(bn) is not tf.keras.layers.BatchNormalization or len(bn.moving_mean.shape) != 1:
        return None
    return bn if bn.axis in ([-1], [3], -1, 3) else None


def _fold(layer, bn) -> tuple[np.ndarray, np.ndarray]:
    """(W', b'): the conv's kernel and bias with ``bn`` folded in (W s, (b - m) s + beta)."""
    kernel = layer.kernel.numpy()
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[-1], np.float32)
    if bn is None:
        return kernel, bias
    gamma = bn.gamma.numpy() if bn.gamma is not None else 1.0
    beta = bn.beta.numpy() if bn.beta is not None else 0.0
    s = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    return (kernel * s).astype(np.float32), ((bias - bn.moving_mean.numpy()) * s + beta).astype(np.float32)


# ------------------------------------------------------------------------------------------ the layers
@functools.cache
def _mixins():
    """The fake-quant mixins (made on first use: they subclass Keras layers, which load TensorFlow)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    def fq(x, lo, hi):
        return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)

    class Int8Island:
        """y = FQ_out(conv(FQ_in(x), FQW(W)) + b) (module docstring); ``input_range``/``output_range`` config."""

        def __init__(self, *args, input_range=(0.0, 1.0), output_range=(0.0, 1.0), **kwargs):
            super().__init__(*args, **kwargs)
            self.input_range = tuple(float(v) for v in input_range)
            self.output_range = tuple(float(v) for v in output_range)

        @tf.autograph.experimental.do_not_convert  # straight-line code: nothing for autograph to rewrite
        def convolution_op(self, inputs, kernel):
            m = tf.maximum(tf.reduce_max(tf.abs(kernel), axis=[0, 1, 2]), 1e-12)
            kernel = tf.quantization.fake_quant_with_min_max_vars_per_channel(kernel, -m, m, num_bits=8,
                                                                              narrow_range=True)
            return super().convolution_op(fq(inputs, *self.input_range), kernel)

        @tf.autograph.experimental.do_not_convert
        def call(self, inputs, training=None):  # noqa: ARG002  (Keras passes it to a call it cannot inspect)
            return fq(super().call(inputs), *self.output_range)

        def get_config(self):
            return {**super().get_config(), "input_range": self.input_range, "output_range": self.output_range}

    class Int8Dense(tf.keras.layers.Dense):
        """The classifier as an island: per-tensor symmetric weights (TFLite's int8 FULLY_CONNECTED)."""

        def __init__(self, *args, input_range=(0.0, 1.0), output_range=(0.0, 1.0), **kwargs):
            super().__init__(*args, **kwargs)
            self.input_range = tuple(float(v) for v in input_range)
            self.output_range = tuple(float(v) for v in output_range)

        @tf.autograph.experimental.do_not_convert
        def call(self, inputs, training=None):  # noqa: ARG002  (Keras passes it to a call it cannot inspect)
            m = tf.maximum(tf.reduce_max(tf.abs(self.kernel)), 1e-12)
            kernel = tf.quantization.fake_quant_with_min_max_vars(self.kernel, -m, m, num_bits=8, narrow_range=True)
            y = tf.matmul(fq(inputs, *self.input_range), kernel)
            if self.use_bias:
                y = tf.nn.bias_add(y, self.bias)
            return fq(y, *self.output_range)

        def get_config(self):
            return {**super().get_config(), "input_range": self.input_range, "output_range": self.output_range}

    return Int8Island, Int8Dense


@functools.cache
def _island_class(cls):
    """``cls`` (a Conv2D, a twin's QuantConv2D, a PyTorch-placed one) with the fake-quant mixin in front."""
    return type(f"Int8{cls.__name__}", (_mixins()[0], cls), {})


# ------------------------------------------------------------------------------------------ calibration
def calibration_images(dataset: str, n: int, input_shape) -> np.ndarray:
    """The first ``n`` training images of ``dataset`` (normalised, unaugmented), at the model's input size."""
    size = int(input_shape[0]) if input_shape and input_shape[0] else None
    ds = data.load(dataset, input_size=size, batch_size=max(1, min(n, 64)), augment="none")
    xs, have = [], 0
    for x, _ in ds.train:
        xs.append(x.numpy())
        have += len(xs[-1])
        if have >= n:
            break
    return np.concatenate(xs)[:n].astype(np.float32)


def _pooled_from(tensor):
    """The tensor a pooling layer reads, when ``tensor`` is a pool's output (the converter quantizes before the pool,
    so the range must hold what the pool reads, not only what it gives); else ``tensor``."""
    import tensorflow as tf  # lazy: loads TensorFlow

    layer = tensor.node.layer
    pools = (tf.keras.layers.AveragePooling2D, tf.keras.layers.MaxPooling2D)
    return _pooled_from(layer.input) if isinstance(layer, pools) else tensor


def _ranges(model, plan: dict, x: np.ndarray) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Per island layer: ((lo, hi) of its input after its input quantizer, read before any pooling that feeds it,
    (lo, hi) of its output after the folded BatchNorm), each widened to hold 0 (a zero point must exist)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    names = list(plan)
    tensors = []
    for name in names:
        layer, bn = model.get_layer(name), plan[name]
        tensors += [_pooled_from(layer.input), (bn or layer).output]
    probe = tf.keras.Model(model.inputs, tensors)
    lo = np.full(len(tensors), np.inf)
    hi = np.full(len(tensors), -np.inf)
    for i in range(0, len(x), 32):
        outs = probe(x[i:i + 32], training=False)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        for j, t in enumerate(outs):
            if j % 2 == 0:
                quantizer = getattr(model.get_layer(names[j // 2]), "input_quantizer", None)
                t = quantizer(t) if quantizer is not None else t
            t = np.asarray(t)
            lo[j], hi[j] = min(lo[j], float(t.min())), max(hi[j], float(t.max()))
    widened = [(min(0.0, float(a)), max(0.0, float(b))) for a, b in zip(lo, hi, strict=True)]
    return {name: (widened[2 * k], widened[2 * k + 1]) for k, name in enumerate(names)}


def int8_islands(model, x: np.ndarray, classifier: bool = INT8_CLASSIFIER,
                 min_depth: int | None = None) -> tuple[object, dict]:
    """A copy of (deployment) ``model`` whose real-valued convs (and the classifier when ``classifier``) are
    fake-quantized islands calibrated on images ``x`` (module docstring), those of reduction depth ``min_depth``
    (default :data:`MIN_INT8_DEPTH`) or more; and the facts for the report: ``{"layers", "batchnorms_folded",
    "min_depth", "kept_float" (the shallower real convs), "classifier", "ranges"}``."""
    import tensorflow as tf  # lazy: loads TensorFlow

    consumers = _consumers(model)
    min_depth = MIN_INT8_DEPTH if min_depth is None else min_depth
    real = [layer for layer in model.layers if _is_real_conv(layer)]
    plan = {layer.name: _folded_batchnorm(layer, model, consumers) for layer in real if _depth(layer) >= min_depth}
    if classifier:
        plan.update({layer.name: None for layer in model.layers if _is_classifier(layer, model)})
    ranges = _ranges(model, plan, x) if plan else {}
    folded = {bn.name: name for name, bn in plan.items() if bn is not None}
    weights = {name: _fold(model.get_layer(name), bn) for name, bn in plan.items()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in plan:
            (lo_in, hi_in), (lo_out, hi_out) = ranges[layer.name]
            config.update(use_bias=True, input_range=(lo_in, hi_in), output_range=(lo_out, hi_out))
            cls = _mixins()[1] if isinstance(layer, tf.keras.layers.Dense) else _island_class(layer.__class__)
            return cls.from_config(config)
        if layer.name in folded:
            return tf.keras.layers.Activation("linear", name=layer.name)
        return layer.__class__.from_config(config)

    with tf.keras.utils.custom_object_scope(custom_objects()):
        copy = tf.keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.name in folded:
            continue
        copy.get_layer(layer.name).set_weights(list(weights[layer.name]) if layer.name in plan
                                               else layer.get_weights())
    return copy, {"layers": list(plan), "batchnorms_folded": sorted(folded), "min_depth": min_depth,
                  "kept_float": [f"{layer.name} (K = {_depth(layer)})" for layer in real if layer.name not in plan],
                  "classifier": any(isinstance(model.get_layer(n), tf.keras.layers.Dense) for n in plan),
                  "ranges": {name: {"input": list(r[0]), "output": list(r[1])} for name, r in ranges.items()}}


# ------------------------------------------------------------------------------------------ the flatbuffer
def int8_ops(flatbuffer: bytes) -> dict[str, int]:
    """How many ops of each type compute on int8 (their first input is an int8 tensor; a QUANTIZE's output)."""
    model = file.check(flatbuffer)
    ops = read_ops(flatbuffer)
    graph: fields.SubGraph = model.subgraphs[0]
    counts: dict[str, int] = {}
    for op, described in zip(graph.operators, ops, strict=True):
        t = op.outputs[0] if described["type"] == "QUANTIZE" else (op.inputs[0] if op.inputs else -1)
        if t >= 0 and graph.tensors[t].type == INT8:
            counts[described["type"]] = counts.get(described["type"], 0) + 1
    return counts
