"""Accuracy of a trained model (``edgebnn eval``): top-1 and top-5 on a data set's validation split."""

from __future__ import annotations

import os

from edgebnn import data, runs
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.progress import progress_bar


def evaluate(run_or_model: str | os.PathLike, dataset: str | None = None, *, batch_size: int = 128,
             progress: bool = False, checkpoint: str | None = None) -> dict:
    """``dict(top1, top5, n, dataset, model, checkpoint)`` of a run folder (its own data set and input size by
    default; ``checkpoint``: its best model, the default, or its last) or a saved model (``dataset`` required).
    Accuracies are fractions in [0, 1]."""
    import tensorflow as tf  # lazy: loads TensorFlow


    model, info = runs.load_model(run_or_model, checkpoint)
    name = dataset or info.get("dataset")
    if not name:
        raise OptionError("{source} is a bare model: say which data set to evaluate on with {dataset}",
                          source=run_or_model)
    size = int(model.input_shape[1])
    imported = info.get("status") == "imported" and info.get("mean") and info.get("std")
    ds = data.load(name, input_size=size, batch_size=batch_size, seed=int(info.get("seed") or 0),
                   normalisation=(info["mean"], info["std"]) if imported else None)
    classes = int(model.output_shape[-1])
    if ds.num_classes != classes:
        raise EdgebnnError(f"{run_or_model} gives {classes} classes but {name} has {ds.num_classes}")
    k5 = min(5, classes)

    @tf.function(autograph=False)  # AutoGraph: ~30 s more tracing, nothing gained
    def batch(x, y):
        logits = model(x, training=False)
        return (tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, 1), tf.int64)),
                tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, k5), tf.int64)), tf.shape(y, tf.int64)[0])

    top1 = top5 = n = 0
    for x, y in progress_bar(ds.val, desc=f"eval {name}", unit="batch", enable=progress):
        a, b, c = batch(x, y)
        top1, top5, n = top1 + int(a), top5 + int(b), n + int(c)
    return {"top1": top1 / n, "top5": top5 / n, "n": n, "dataset": name, "model": str(run_or_model),
            "checkpoint": info.get("checkpoint")}
