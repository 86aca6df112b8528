"""Deployment folds: weight rewrites of a copy of the model that keep its function and let LCE's converter emit
fewer float ops. The converter drops an add of zero and a multiply by one, so each fold moves a constant to where
it costs nothing and leaves zeros and ones behind. Every fold is proven by the conversion's parity check, which
compares the flatbuffer with the original (unfolded) Keras model.

1. A BatchNorm whose only consumer is a conv's sign (a 1-bit input quantizer: a twin's Hardtanh is none), every
   scale s_c = g_c / sqrt(v_c + eps) > 0:
   sign(s_c (x - m_c) + b_c) = sign(x - t_c) with t_c = m_c - b_c / s_c, so it becomes a threshold x - t:
   one SUB before the sign instead of MUL + ADD.
   A layer with any s_c <= 0 is left alone: flipping that channel's kernel would also flip the +1 padding.
2. RPReLU's shifts, f(x) = PReLU(x - gamma) + zeta:
   - zeta is pushed forward through what is linear in a per-channel constant (Add, average pooling, Concatenate,
     1x1 or unpadded real convs, Dense) into what absorbs it: RSign's threshold (alpha - k), a BatchNorm's moving
     mean (m - k), a bias (b + W k), the next RPReLU's gamma (gamma - k), k being the constant the path carries.
     When any path reaches something else (a sign, a padded conv, the model's output) zeta stays.
   - gamma then moves into the BatchNorm of the residual branch that feeds the RPReLU: PReLU(BN(y) + s - gamma)
     = PReLU(BN'(y) + s) with beta' = beta - gamma (per half when two branches are concatenated).
   What is left of each RPReLU is one PRELU.
3. One threshold per residual stream: a BatchNorm's output carried on through max or average pooling and identity
   shortcut Adds (XNOR-Net++'s stream, which no activation touches) can carry any per-channel offset k, made good
   wherever it is absorbed (thresholds t - k, BatchNorm means m - k, biases b + W k). With k the threshold of one
   sign that reads the stream, sign(x - t) = sign(x') with x' = x - t, and that SUB goes away: one per stage, since
   a stream starts again at each downsampling block's shortcut BatchNorm. The other thresholds cannot go: each
   block's output joins the stream after a PReLU, which passes no offset through, so every further threshold on
   the stream needs its own op.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from edgebnn.archs import custom_objects

OUTPUT = "<model output>"


class Graph:
    """Producers and consumers of each layer of a functional Keras model, by layer name."""

    def __init__(self, model):
        self.layers = {layer.name: layer for layer in model.layers}
        self.producers: dict[str, list[str]] = {}
        self.consumers: dict[str, list[str]] = defaultdict(list)
        for spec in model.get_config()["layers"]:
            names = [item[0] for node in spec["inbound_nodes"] for item in _node_items(node)]
            self.producers[spec["name"]] = names
            for p in names:
                self.consumers[p].append(spec["name"])
        for out in model.outputs:
            self.consumers[out.node.layer.name].append(OUTPUT)

    def only_consumer(self, name: str) -> str | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None


def _node_items(node) -> list:
    """The ``[layer name, node index, tensor index, kwargs]`` entries of one inbound node (tf-keras' layout)."""
    return [item for item in node if isinstance(item, list | tuple) and item and isinstance(item[0], str)]


def _kind(layer) -> str:
    import tensorflow as tf  # lazy: loads TensorFlow

    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq
    from edgebnn.archs.reactnet import RPReLU, RSign  # lazy: the architectures load TensorFlow and Larq

    for cls, kind in ((RPReLU, "rprelu"), (RSign, "rsign"), (tf.keras.layers.BatchNormalization, "bn"),
                      (tf.keras.layers.Add, "add"), (tf.keras.layers.Concatenate, "concat"),
                      (tf.keras.layers.AveragePooling2D, "pool"), (tf.keras.layers.GlobalAveragePooling2D, "pool"),
                      (tf.keras.layers.MaxPooling2D, "pool"),
                      (tf.keras.layers.Dense, "dense")):
        if isinstance(layer, cls):
            return kind
    if isinstance(layer, tf.keras.layers.Conv2D):
        quantizer = getattr(layer, "input_quantizer", None)
        if quantizer is None:
            return "conv"
        # a sign on the input (binary, or step 1's real weights); any other quantizer (the twin's Hardtanh) is
        # neither a sign a threshold can stand for nor linear
        return "binary_conv" if stats.signs_its_input(layer) else "other"
    return "other"


def _bn_scale(bn) -> np.ndarray:
    gamma = bn.gamma.numpy() if bn.gamma is not None else 1.0
    return gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)


# ------------------------------------------------------------------------------- 1. BatchNorm -> threshold
def threshold_batchnorms(graph: Graph) -> dict[str, np.ndarray]:
    """Fold 1's candidates: BatchNorms that only feed a binary conv's sign, every scale positive, with the
    threshold t_c = m_c - b_c / s_c that replaces each (sign(s (x - m) + b) = sign(x - t) for s > 0)."""
    found = {}
    for name, layer in graph.layers.items():
        user = graph.only_consumer(name)
        if _kind(layer) != "bn" or user is None or user == OUTPUT or _kind(graph.layers[user]) != "binary_conv":
            continue
        s = _bn_scale(layer)
        if np.all(s > 0):
            beta = layer.beta.numpy() if layer.beta is not None else 0.0
            found[name] = (layer.moving_mean.numpy() - beta / s).astype(np.float32)
    return found


# ------------------------------------------------------------------------------------ 2. RPReLU shifts
def _absorb(graph: Graph, user: str, source: str, k: np.ndarray, updates: list, into_rprelu: bool) -> bool:
    """Absorb (or pass on) a per-channel offset k that ``source``'s output now lacks (max and average pooling,
    Adds, 1x1 or unpadded convs and Dense pass it on, linearly) into consumer ``user``. Appends (variable, change)
    pairs to ``updates``; False when some path cannot absorb it. ``into_rprelu``: an RPReLU's gamma may take it
    (fold 2, which moves gamma on afterwards), else it is a path that cannot."""
    if user == OUTPUT:
        return False
    layer = graph.layers[user]
    kind = _kind(layer)
    if kind == "rsign":
        updates.append((layer.alpha, -k))
        return True
    if kind == "bn":
        updates.append((layer.moving_mean, -k))
        return True
    if kind == "rprelu" and into_rprelu:
        updates.append((layer.gamma, -k))
        return True
    if kind in ("add", "pool"):
        return _push(graph, user, k, updates, into_rprelu)
    if kind == "concat":
        sizes = [int(graph.layers[p].output.shape[-1]) for p in graph.producers[user]]
        start = sum(sizes[:graph.producers[user].index(source)])
        wide = np.zeros(sum(sizes), np.float32)
        wide[start:start + k.size] = k
        return _push(graph, user, wide, updates, into_rprelu)
    if kind == "conv" and (layer.padding == "valid" or tuple(layer.kernel_size) == (1, 1)):
        moved = np.einsum("hwio,i->o", layer.kernel.numpy(), k)
        if layer.use_bias:
            updates.append((layer.bias, moved))
            return True
        return _push(graph, user, moved, updates, into_rprelu)
    if kind == "dense":
        moved = k @ layer.kernel.numpy()
        if layer.use_bias:
            updates.append((layer.bias, moved))
            return True
        return _push(graph, user, moved, updates, into_rprelu)
    return False


def _push(graph: Graph, name: str, k: np.ndarray, updates: list, into_rprelu: bool = True) -> bool:
    return all(_absorb(graph, user, name, k, updates, into_rprelu) for user in graph.consumers.get(name, [OUTPUT]))


def _apply(updates: list) -> None:
    """Add each change to its variable (a variable reached twice, through two paths, gets both)."""
    for variable, delta in updates:
        variable.assign(variable.numpy() + delta.astype(np.float32))


def _residual_batchnorms(graph: Graph, name: str) -> list[tuple[object, slice]] | None:
    """For an RPReLU fed by Add(BN(...), shortcut) (or a Concatenate of such Adds): each BN with the channels of the
    RPReLU's input it adds to. None when the input is not of that form."""
    [source] = graph.producers[name]
    kind = _kind(graph.layers[source])
    adds = graph.producers[source] if kind == "concat" else [source]
    found, start = [], 0
    for add in adds:
        if _kind(graph.layers[add]) != "add" or graph.only_consumer(add) is None:
            return None
        bns = [p for p in graph.producers[add] if _kind(graph.layers[p]) == "bn" and graph.only_consumer(p) == add]
        if not bns:
            return None
        width = int(graph.layers[add].output.shape[-1])
        found.append((graph.layers[bns[0]], slice(start, start + width)))
        start += width
    return found


def fold_rprelu_shifts(graph: Graph) -> list[str]:
    """Fold 2, in graph order: zeta pushed forward, then gamma into the residual branch's BatchNorm. Returns the
    names of the RPReLUs left without shifts."""
    cleared = []
    for name, layer in graph.layers.items():
        if _kind(layer) != "rprelu":
            continue
        updates: list = []
        zeta = layer.zeta.numpy()
        if np.any(zeta) and _push(graph, name, zeta, updates):
            _apply(updates)
            layer.zeta.assign(np.zeros_like(zeta))
        gamma = layer.gamma.numpy()
        targets = _residual_batchnorms(graph, name)
        if np.any(gamma) and targets:
            for bn, part in targets:
                bn.beta.assign(bn.beta.numpy() - gamma[part])
            layer.gamma.assign(np.zeros_like(gamma))
        if not np.any(layer.gamma.numpy()) and not np.any(layer.zeta.numpy()):
            cleared.append(name)
    return cleared


# ------------------------------------------------------------------------- 3. One threshold per stream
def _stream_thresholds(graph: Graph, name: str) -> list[str]:
    """The thresholds (RSign layers, nonzero) that read ``name``'s output as it is carried on through pooling and
    Adds, in graph order."""
    found, todo, seen = [], [name], set()
    while todo:
        for user in graph.consumers.get(todo.pop(0), []):
            if user == OUTPUT or user in seen:
                continue
            seen.add(user)
            kind = _kind(graph.layers[user])
            if kind == "rsign" and np.any(graph.layers[user].alpha.numpy()):
                found.append(user)
            elif kind in ("add", "pool"):
                todo.append(user)
    return found


def _changed_once(updates: list, variable) -> bool:
    """True when ``variable`` is reached by one path only (two would move it by 2k, not clearing it)."""
    return sum(v is variable for v, _ in updates) == 1


def fold_stream_thresholds(graph: Graph) -> list[str]:
    """Fold 3: for each BatchNorm whose output stream reaches a threshold and can absorb an offset everywhere it
    goes (no RPReLU on the way, nothing padded), beta - t of the stream's first threshold t, which becomes zero.
    Returns the thresholds cleared."""
    cleared = []
    for name, layer in graph.layers.items():
        targets = _stream_thresholds(graph, name) if _kind(layer) == "bn" and layer.beta is not None else []
        if not targets:
            continue
        alpha, updates = graph.layers[targets[0]].alpha, []
        k = alpha.numpy().copy()
        if _push(graph, name, k, updates, into_rprelu=False) and _changed_once(updates, alpha):
            _apply(updates)
            layer.beta.assign(layer.beta.numpy() - k)
            cleared.append(targets[0])
    return cleared


def deployment_model(model) -> tuple[object, dict[str, list[str]]]:
    """A copy of ``model`` with folds 1 to 3 applied; the folds done, by kind, with the layers they touched.
    Fold 1 swaps each BatchNorm for a threshold layer (x - t, the same layer as RSign's) of the same name: a
    unit-scale BatchNorm would still convert to a MUL by one."""
    import tensorflow as tf  # lazy: loads TensorFlow

    from edgebnn.archs.reactnet import RSign  # lazy: the architectures load TensorFlow and Larq

    thresholds = threshold_batchnorms(Graph(model))

    def clone(layer):
        if layer.name in thresholds:
            return RSign(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    with tf.keras.utils.custom_object_scope(custom_objects()):
        copy = tf.keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        target = copy.get_layer(layer.name)
        if layer.name in thresholds:
            target.set_weights([thresholds[layer.name]])
        else:
            target.set_weights(layer.get_weights())
    folds = {"batchnorm_threshold": sorted(thresholds), "rprelu_shifts": fold_rprelu_shifts(Graph(copy)),
             "stream_threshold": fold_stream_thresholds(Graph(copy))}
    return copy, {k: v for k, v in folds.items() if v}
