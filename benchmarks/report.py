"""What the harness reports beside its timings, without importing Keras
(the parent of a several-backend run imports no backend): the CPU's name,
the label of a backend setting, and the targets, which the cases carry as
data and which are computed here from a run's rows."""

import os
import platform

BACKENDS = ("tensorflow", "jax", "torch")
ONEDNN = {"1": "on", "0": "off"}


def cpu_model():
    """The CPU's `model name` from /proc/cpuinfo (else what Python knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def setting(backend, environ=None):
    """The label of a measured setting: the backend, and on TensorFlow
    whether TF_ENABLE_ONEDNN_OPTS turned oneDNN on or off (no mention
    when it is unset: TensorFlow's own default for the CPU)."""
    environ = os.environ if environ is None else environ
    value = environ.get("TF_ENABLE_ONEDNN_OPTS")
    if backend != "tensorflow" or value is None:
        return backend
    return f"{backend} (oneDNN {ONEDNN.get(value, '=' + value)})"


def target(name, aim, baseline=None, direction="<=", metric="train_ratio"):
    """One of the issue's targets, carried by the case it measures.

    `metric` "train_ratio": the case's train-step time over that of the
    case named `baseline` (in the same suite); "dense_fraction": the
    case's GFLOP/s as a fraction of the run's dense matmul. `direction`
    "<=" or ">=": how the value must compare with `aim` to meet it.
    """
    assert direction in ("<=", ">=") and metric in (
        "train_ratio",
        "dense_fraction",
    )
    return {
        "name": name,
        "aim": aim,
        "direction": direction,
        "metric": metric,
        "baseline": baseline,
    }


def evaluate_targets(results):
    """The targets carried by `results`' rows (suite -> rows), in order,
    each with its measured `value` and whether it was `met`.

    A target whose baseline this run did not measure (a GPU-only row, a
    suite left out) is left out; one whose model was skipped on this
    backend is kept with value None and the reason in `skipped`.
    """
    out = []
    for rows in results.values():
        by_name = {row["model"]: row for row in rows}
        for row in rows:
            for goal in row.get("targets", ()):
                base = by_name.get(goal["baseline"])
                if goal["baseline"] is not None and base is None:
                    continue
                entry = {**goal, "model": row["model"], "value": None}
                entry["met"] = None
                skipped = row.get("skipped") or (base or {}).get("skipped")
                if skipped:
                    entry["skipped"] = skipped
                    out.append(entry)
                    continue
                if goal["metric"] == "dense_fraction":
                    value = row["dense_pct"] / 100
                else:
                    value = row["train_ms"] / base["train_ms"]
                entry["value"] = value
                entry["met"] = (
                    value <= goal["aim"]
                    if goal["direction"] == "<="
                    else value >= goal["aim"]
                )
                out.append(entry)
    return out


def short_reason(reason):
    """ "TensorFlow-only: why" -> "TensorFlow-only"."""
    return reason.split(":")[0]


def targets_table(evaluated):
    """Markdown table of `evaluate_targets`' output ("" when empty)."""
    if not evaluated:
        return ""
    lines = ["| target | measured | aim | met |", "|---|---:|---:|---|"]
    for goal in evaluated:
        aim = f"{goal['direction']}{goal['aim']}"
        if goal["value"] is None:
            reason = short_reason(goal.get("skipped", ""))
            lines.append(f"| {goal['name']} | - | {aim} | skipped: {reason} |")
            continue
        met = "yes" if goal["met"] else "no"
        lines.append(
            f"| {goal['name']} | {goal['value']:.2f} | {aim} | {met} |"
        )
    return "\n".join(lines)
