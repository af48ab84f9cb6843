"""What the harness reports beside its timings, without importing Keras
(the parent of a several-backend run imports no backend): the CPU's name,
the label of a backend setting, and the targets: the cases carry them as
data (`target`), the harness measures each on its case's row and its
baseline's (`measure`), and the tables here and in benchmarks/multi.py
print them."""

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


# The metrics a target can measure. RELATIVE ones compare the case's row
# with its baseline's; "dense_fraction" with the run's dense matmul.
# "ops_*": ops per time step (benchmarks/opcount.py) over the baseline's.
OPS = ("ops_train_fwd", "ops_train_bwd", "ops_predict")
RELATIVE = (
    "train_ratio",
    "infer_ratio",
    "gflops_ratio",
    "time_vs_flops",
) + OPS
METRICS = RELATIVE + ("dense_fraction",)


def target(name, aim, baseline=None, direction="<=", metric="train_ratio"):
    """One of the issue's targets, carried by the case it measures.

    `metric` "train_ratio" / "infer_ratio": the case's train-step /
    inference time over that of `baseline`; "ops_train_fwd" /
    "ops_train_bwd" / "ops_predict": its ops per time step over the
    baseline's (the `ops` suite); "gflops_ratio": its effective
    GFLOP/s over the baseline's; "dense_fraction": its GFLOP/s as a
    fraction of the run's dense matmul; "time_vs_flops": reported with no
    aim (`aim=None`), the train-time ratio beside the ratio of analytic
    FLOPs. `baseline`: the case compared with (a `harness.Case` of the
    same suite; None: the case's own baseline). `direction` "<=" or
    ">=": how the value must compare with `aim` to meet it.
    """
    if metric not in METRICS:
        raise ValueError(
            f"Argument `metric` must be one of {', '.join(METRICS)}. "
            f"Received: metric={metric!r}"
        )
    if direction not in ("<=", ">="):
        raise ValueError(
            "Argument `direction` must be '<=' or '>='. "
            f"Received: direction={direction!r}"
        )
    if (aim is None) != (metric == "time_vs_flops"):
        raise ValueError(
            "Argument `aim` must be None for metric='time_vs_flops' (it is "
            "reported, not aimed at) and a number otherwise. "
            f"Received: aim={aim!r}"
        )
    return {
        "name": name,
        "aim": aim,
        "direction": direction,
        "metric": metric,
        "baseline": baseline,
    }


def measure(goal, row, base=None):
    """`goal` (a `target`) measured on `row` (a case's row) against `base`
    (its baseline's row; None for "dense_fraction"): the target's fields,
    the `model`, the `baseline`'s name, the measured `value` and whether
    it was `met` (None without an aim). Where either row was skipped on
    this backend, value and met are None and `skipped` says why; a
    "time_vs_flops" entry also has the `flop_ratio`."""
    entry = {key: goal[key] for key in ("name", "aim", "direction", "metric")}
    entry["model"] = row["model"]
    entry["baseline"] = None if base is None else base["model"]
    entry["value"] = entry["met"] = None
    skipped = row.get("skipped") or (base or {}).get("skipped")
    if skipped:
        entry["skipped"] = skipped
        return entry
    metric = goal["metric"]
    if metric in OPS and (row[metric] is None or base[metric] is None):
        entry["skipped"] = "no op count on this backend"
        return entry
    if metric in OPS:
        value = row[metric] / base[metric]
    elif metric == "dense_fraction":
        value = row["dense_pct"] / 100
    elif metric == "gflops_ratio":
        value = row["gflops"] / base["gflops"]
    elif metric == "infer_ratio":
        value = row["infer_ms"] / base["infer_ms"]
    else:
        value = row["train_ms"] / base["train_ms"]
    if metric == "time_vs_flops":
        entry["flop_ratio"] = row["train_gflop"] / base["train_gflop"]
    entry["value"] = value
    if goal["aim"] is not None:
        entry["met"] = (
            value <= goal["aim"]
            if goal["direction"] == "<="
            else value >= goal["aim"]
        )
    return entry


def evaluate_targets(results):
    """The measured targets (`measure`) of `results`' rows (suite ->
    rows), in order."""
    return [
        goal
        for rows in results.values()
        for row in rows
        for goal in row.get("targets", ())
    ]


def aim_text(goal):
    """A target's aim as a table cell: "<=1.25", or "no aim"."""
    if goal["aim"] is None:
        return "no aim"
    return f"{goal['direction']}{goal['aim']}"


def value_text(goal, met=False):
    """A measured target as a table cell: "0.83", "1.40 \\| 1.31" (time
    ratio | FLOP ratio), with `met` " yes" / " no" after an aimed value,
    or "skipped: reason"."""
    if goal["value"] is None:
        return "skipped: " + short_reason(goal.get("skipped", ""))
    text = f"{goal['value']:.2f}"
    if goal.get("flop_ratio") is not None:
        text += f" \\| {goal['flop_ratio']:.2f}"
    if met and goal["met"] is not None:
        text += " yes" if goal["met"] else " no"
    return text


def cell(text):
    """`text` in a markdown table cell (its pipes escaped)."""
    return text.replace("|", "\\|")


def short_reason(reason):
    """ "TensorFlow-only: why" -> "TensorFlow-only"."""
    return reason.split(":")[0]


def targets_table(evaluated):
    """Markdown table of `evaluate_targets`' output ("" when empty)."""
    if not evaluated:
        return ""
    lines = ["| target | measured | aim | met |", "|---|---:|---:|---|"]
    for goal in evaluated:
        if goal["value"] is None:
            met = "skipped: " + short_reason(goal.get("skipped", ""))
            value = "-"
        else:
            met = {True: "yes", False: "no", None: "reported"}[goal["met"]]
            value = value_text(goal)
        lines.append(
            f"| {cell(goal['name'])} | {value} | {aim_text(goal)} | {met} |"
        )
    return "\n".join(lines)
