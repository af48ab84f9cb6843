"""Several Keras backends side by side: `python -m benchmarks --backend
tensorflow jax torch` (or `all`) and/or `--onednn on|off|both`.

The harness runs once per setting, each time in a fresh process with
KERAS_BACKEND (and for TensorFlow TF_ENABLE_ONEDNN_OPTS) set before Keras
is imported, so every backend is measured beside its own built-in
layers; the settings run one after the other, never at once. This
process imports no backend (a machine without TensorFlow can run
`--backend jax torch`). It prints each run's tables as they come, then a
summary of our layers' train steps (predict steps in the infer suite: time
relative to the same backend's built-in baseline, and ms) and the targets
of every setting side by side; --markdown / --json get all of it, every
run's rows included, and are rewritten after every setting (a run cut
short keeps what it measured). Every other argument goes to each run unchanged.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from benchmarks import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = "KERAS_GFRNN_BENCHMARKS_CHILD"
ONEDNN = {"on": ("1",), "off": ("0",), "both": ("1", "0")}


def parser():
    # Only the options this process handles; cli.parse documents them too.
    # The rest (and -h) goes to each run.
    p = argparse.ArgumentParser(prog="python -m benchmarks", add_help=False)
    p.add_argument("--backend", nargs="+")
    p.add_argument("--onednn", choices=sorted(ONEDNN))
    p.add_argument("--markdown")
    p.add_argument("--json")
    return p


def requested(argv):
    """Whether `argv` asks for several settings (--backend / --onednn)."""
    known, _ = parser().parse_known_args(argv)
    return bool(known.backend or known.onednn)


def settings(backends, onednn):
    """[(label, backend, environment additions)] in the order to run."""
    backends = backends or ["tensorflow"]
    order = []
    for name in backends:
        for backend in report.BACKENDS if name == "all" else [name]:
            if backend not in report.BACKENDS:
                raise SystemExit(
                    f"--backend: {backend!r} is not one of "
                    f"{', '.join(report.BACKENDS)}, all"
                )
            if backend not in order:
                order.append(backend)
    if onednn and "tensorflow" not in order:
        raise SystemExit("--onednn measures TensorFlow: add it to --backend")
    out = []
    for backend in order:
        values = ONEDNN[onednn] if backend == "tensorflow" and onednn else ()
        extras = [{"TF_ENABLE_ONEDNN_OPTS": v} for v in values] or [{}]
        for extra in extras:
            label = report.setting(backend, {**os.environ, **extra})
            out.append((label, backend, extra))
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if os.environ.get(CHILD):
        raise SystemExit("benchmarks: a run of several backends started one")
    known, rest = parser().parse_known_args(argv)
    plan = settings(known.backend, known.onednn)
    combined = {
        "cpu": report.cpu_model(),
        "cores": os.cpu_count(),
        "argv": rest,
        "settings": [label for label, _, _ in plan],
        "runs": {},
    }
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, backend, extra) in enumerate(plan):
            md, js = (
                os.path.join(tmp, f"{i}.md"),
                os.path.join(tmp, f"{i}.json"),
            )
            env = {
                **os.environ,
                "KERAS_BACKEND": backend,
                **extra,
                CHILD: "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (ROOT, os.environ.get("PYTHONPATH")) if p
                ),
            }
            command = [sys.executable, "-m", "benchmarks", *rest]
            shown = " ".join(
                [f"KERAS_BACKEND={backend}"]
                + [f"{k}={v}" for k, v in extra.items()]
                + ["python -m benchmarks"]
                + [shlex.quote(a) for a in rest]
            )
            print(f"\n## {label}\n\n`{shown}`\n", flush=True)
            start = time.perf_counter()
            code = subprocess.call(
                command + ["--markdown", md, "--json", js], env=env
            )
            run = {
                "backend": backend,
                "environment": {"KERAS_BACKEND": backend, **extra},
                "command": shown,
                "returncode": code,
                "seconds": time.perf_counter() - start,
                "markdown": read(md),
            }
            saved = read(js)
            run.update(json.loads(saved) if saved else {"results": {}})
            combined["runs"][label] = run
            if code:
                failed.append(f"{label} (exit status {code})")
            combined["summary"] = summary_rows(combined)
            write(known, combined)
    text = summary_markdown(combined)
    print("\n" + text, flush=True)
    if failed:
        raise SystemExit("benchmarks: failed: " + ", ".join(failed))
    return combined


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def summary_rows(combined):
    """Our layers' rows: per setting, the train step's time and its ratio
    to that backend's built-in baseline (the predict step's for an
    inference-only row), or why it was skipped."""
    rows = {}
    for label, run in combined["runs"].items():
        for suite, suite_rows in run["results"].items():
            for row in suite_rows:
                if not row.get("ours"):
                    continue
                key = (suite, row["model"])
                entry = rows.setdefault(
                    key,
                    {
                        "suite": suite,
                        "model": row["model"],
                        "baseline": row["baseline"],
                        "settings": {},
                    },
                )
                entry["settings"][label] = {
                    "train_ms": row.get("train_ms"),
                    "train_ratio": row.get("train_ratio"),
                    "infer_ms": row.get("infer_ms"),
                    "infer_ratio": row.get("infer_ratio"),
                    "skipped": row.get("skipped"),
                }
    return list(rows.values())


def summary_markdown(combined):
    labels = combined["settings"]
    head = (
        f"# Benchmarks on {combined['cpu']}, {combined['cores']} cores: "
        f"{', '.join(labels)}\n\n"
        "Each setting measured in its own process, one after the other, "
        "with `python -m benchmarks "
        + " ".join(shlex.quote(a) for a in combined["argv"])
        + "`."
    )
    lines = [
        "| model | compared with | "
        + " | ".join(f"{label} x | ms" for label in labels)
        + " |",
        "|---|---|" + "---:|---:|" * len(labels),
    ]
    for entry in combined.get("summary", []):
        cells = [entry["model"], entry["baseline"]]
        for label in labels:
            value = entry["settings"].get(label) or {}
            step = "train" if value.get("train_ms") is not None else "infer"
            if value.get("skipped"):
                cells += ["skipped: " + report.short_reason(value["skipped"])]
                cells += ["-"]
            elif value.get(f"{step}_ms") is None:
                cells += ["-", "-"]
            else:
                ratio = value[f"{step}_ratio"]
                cells += [
                    "-" if ratio is None else f"{ratio:.2f}",
                    f"{value[f'{step}_ms']:.1f}",
                ]
        lines.append("| " + " | ".join(cells) + " |")
    parts = [
        head,
        "",
        "## Summary: train step of our layers",
        "",
        "\n".join(lines),
        "",
        "x: train-step time relative to the same backend's built-in "
        "model named in 'compared with' (lower is faster); ms: the "
        "train step's median time (the predict step's in the infer "
        "suite).",
    ]
    goals = targets_markdown(combined)
    if goals:
        parts += ["", "## Targets per setting", "", goals]
    failed = [
        f"{label} (exit status {run['returncode']})"
        for label, run in combined["runs"].items()
        if run["returncode"]
    ]
    if failed:
        parts += ["", "Failed: " + ", ".join(failed) + "."]
    return "\n".join(parts)


def targets_markdown(combined):
    labels = combined["settings"]
    names, values = {}, {}
    for label, run in combined["runs"].items():
        for goal in run.get("targets") or report.evaluate_targets(
            run["results"]
        ):
            names.setdefault(goal["name"], report.aim_text(goal))
            values[goal["name"], label] = report.value_text(goal, met=True)
    if not names:
        return ""
    lines = [
        "| target | aim | " + " | ".join(labels) + " |",
        "|---|---:|" + "---:|" * len(labels),
    ]
    for name, aim in names.items():
        cells = [values.get((name, label), "-") for label in labels]
        lines.append(
            f"| {report.cell(name)} | {aim} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + (
        "\n\nEach cell: measured value, aim met (no aim: the train-time "
        "ratio \\| the ratio of analytic FLOPs, to the same baseline)."
    )


def write(known, combined):
    if known.markdown:
        parts = [summary_markdown(combined)]
        for label, run in combined["runs"].items():
            parts += ["", f"## {label}", "", f"`{run['command']}`", ""]
            parts.append(run["markdown"].rstrip() or "(no output)")
        with open(known.markdown, "w") as f:
            f.write("\n".join(parts) + "\n")
    if known.json:
        with open(known.json, "w") as f:
            json.dump(combined, f, indent=2)
