"""The conversion report as a short table for the terminal."""

from __future__ import annotations


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _conversion_rows(report: dict) -> list[tuple[str, str]]:
    conv, size = report["conversion"], report["size"]
    rows = [
        ("source", f"{report['source']['path']} ({report['source']['kind']}"
                   + (f", {_checkpoint(report['source']['checkpoint'])}" if report["source"].get("checkpoint")
                      else "") + ")"),
        ("target", f"{report['target']['name']} (LCE target {report['target']['lce_target']}, "
                   f"runner {report['target']['runner'] or 'none named'})"),
        ("flatbuffer", f"{report['output']}  {_mb(report['bytes'])}  sha256 {report['sha256'][:16]}..."),
        ("float TFLite", f"{_mb(size['float_tflite_bytes'])}  (compression x{size['compression']:.2f})"),
        ("Keras params", f"{size['keras']['params']:,}"),
        ("conversion", f"{conv['seconds']:.1f} s on {report['machine']}"),
        ("binary convs", f"{conv['binary_converted']}/{conv['binary_convs']} became LceBconv2d "
                         f"({_pct(conv['binary_fraction'])} binary); {conv['lce_bconv2d']} LceBconv2d ops"),
    ]
    for lost in conv["not_binary"]:
        rows.append(("  NOT binary", f"{lost['layer']} -> {lost['became']}"))
    if conv["other_binary_layers"]:
        rows.append(("  stay float", ", ".join(conv["other_binary_layers"]) + " (LCE has no binary dense/depthwise)"))
    per = conv["float_ops_per_binary_conv"]
    rows.append(("float ops", f"{conv['float_ops']}" + (f" ({per:.2f} per binary conv)" if per is not None else "")))
    rows.append(("ops", ", ".join(f"{k} {v}" for k, v in conv["ops"].items())))
    for fold, layers in conv.get("folds", {}).items():
        rows.append(("  folded", f"{fold.replace('_', ' ')}: {len(layers)} layer(s), proven by the check below"))
    for problem in conv.get("problems", []):
        rows.append(("  PROBLEM", problem))
    if conv.get("int8"):
        rows += _int8_rows(conv["int8"])
    return rows


def _int8_rows(int8: dict) -> list[tuple[str, str]]:
    """The int8 islands: which layers, the calibration, the ops that compute on int8."""
    cal = int8["calibration"]
    rows = [("precision", f"int8 islands: {len(int8['layers'])} real-valued layer(s) int8, the rest as float; "
                          f"ranges from {cal['images']} {cal['dataset']} images ({cal['split']} split)"),
            ("  int8 layers", ", ".join(int8["layers"]) or "none"),
            *([("  kept float", ", ".join(int8["kept_float"]) + f" (shallower than K = {int8['min_depth']}: "
                                "slower in int8)")] if int8.get("kept_float") else []),
            ("  int8 ops", ", ".join(f"{k} {v}" for k, v in int8["int8_ops"].items()) or "none")]
    rows += [("  PROBLEM", problem) for problem in int8.get("problems", [])]
    return rows


def _samples(indices: list[int], most: int = 20) -> str:
    shown = ", ".join(str(i) for i in indices[:most])
    return shown + (f" and {len(indices) - most} more" if len(indices) > most else "")


def _int8_check_rows(check: dict) -> list[tuple[str, str]]:
    """An int8 proof's verdict: top-1 agreement against the threshold, the samples that differ."""
    ok = check["top1_agreement"] >= check["min_agreement"]
    rows = [("  int8 verdict", f"top-1 agreement {_pct(check['top1_agreement'])} "
                               f"{'>=' if ok else 'BELOW'} {100 * check['min_agreement']:g}% asked "
                               "(an int8 proof is judged by agreement, not by 1e-3)")]
    if check["top1_disagreements"]:
        rows.append(("  differ from Keras", "samples " + _samples(check["top1_disagreements"])))
    if "host_disagreements" in check:
        differ = check["host_disagreements"]
        rows.append(("  vs host interpreter", ("top-1 differs on samples " + _samples(differ)) if differ else
                     f"same top-1 on every sample (max abs diff {check['host_max_abs_diff']:.3g})"))
    return rows


def check_rows(check: dict | None, label: str = "proof",
               what: str = "LCE interpreter (1 thread) vs Keras") -> list[tuple[str, str]]:
    """Rows for one proof (``report["check"]`` or a device proof): differences, agreement, sign ties."""
    if check is None:
        return [(label, "skipped (--check-samples 0)")]
    if check.get("error"):
        return [(label, check["error"])]
    rows = [
        (label, f"{check['samples']} {check['dataset']} samples, {what}"),
    ]
    if check.get("min_agreement") is not None:
        rows += _int8_check_rows(check)
    rows += [
        ("  max abs diff", f"{check['max_abs_diff']:.3g} ({check['relative_diff']:.2e} of output scale "
                           f"{check['output_scale']:.3g})"),
        ("  within 1e-3", f"{check['within_tolerance']}/{check['samples']} samples"),
        ("  top-1 agreement", _pct(check["top1_agreement"])),
        ("  top-1 accuracy", f"Keras {_pct(check['keras_top1'])}, flatbuffer {_pct(check['tflite_top1'])}"),
    ]
    if check.get("beyond_tolerance") and check.get("min_agreement") is None:
        tied = sum(b["sign_tie"] for b in check["beyond_tolerance"])
        rows.append(("  beyond 1e-3", f"{len(check['beyond_tolerance'])} samples, {tied} of them at a sign tie "
                                      f"(an activation within float rounding of 0 flipped one bit); without ties "
                                      f"max diff {check['relative_diff_untied']:.2e} of scale"))
        if check["unexplained"]:
            rows.append(("  UNEXPLAINED", f"{check['unexplained']} samples differ with no sign tie: "
                                          "the flatbuffer computes something else"))
    return rows


def table(rows: list[tuple[str, str]]) -> str:
    """``rows`` as two aligned columns."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _checkpoint(c: dict) -> str:
    """``best epoch 3 of the run, val top-1 98.1%``: which saved model of a run was converted."""
    top1 = f", val top-1 {100 * c['val_top1']:.1f}%" if c.get("val_top1") is not None else ""
    return f"{c['which']} checkpoint: epoch {c.get('epoch')}{top1}"


def device_check_rows(check: dict) -> list[tuple[str, str]]:
    """Rows for one proof on a device's runner (:mod:`edgebnn.conversion.on_device`)."""
    fed = (f"one batch of {check['batch']}" + (f", sample 0 alone within {check['batch1_max_abs_diff']:.2g}"
                                               if "batch1_max_abs_diff" in check else "")
           if check.get("batch", 1) > 1 else f"{check.get('invocations')} invocations of one sample")
    rows = check_rows(check, label=f"proof on {check['device']}",
                      what=f"{check['runner']} ({check['kernels']}; {fed}) vs Keras")
    return rows[:1] + [("  device", check["machine"])] + rows[1:]


def format_report(report: dict) -> str:
    """The conversion report as a short table."""
    rows = _conversion_rows(report) + check_rows(report.get("check"))
    for check in (report.get("device_checks") or {}).values():
        rows += device_check_rows(check)
    for name, base in report.get("baselines", {}).items():
        line = f"{base['file']}  {_mb(base['bytes'])}  ({base['note']})"
        if base.get("check"):
            line += f"; agrees with its Keras twin on {_pct(base['check']['top1_agreement'])} top-1"
        rows.append((f"baseline {name}", line))
    if report.get("report_file"):
        rows.append(("report", report["report_file"]))
    return table(rows)
