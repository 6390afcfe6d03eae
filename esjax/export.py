"""``python -m esjax.export RUN_DIR --format onnx|npz``: a run's policy as one file for
code without esjax; it computes what ``esjax.load_policy`` does (``esjax.run.portable``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from esjax.errors import ConfigError
from esjax.parsing import DefaultsFormatter, OneLineParser
from esjax.run.portable import Policy, PortablePolicy, portable_policy
from esjax.run.rundir import write_atomically

FORMATS = ("onnx", "npz")
ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # what onnxruntime releases of the last years all read


def to_onnx(p: PortablePolicy):
    """An ONNX model (onnx.ModelProto): input ``obs`` (N, ob_dim) float32, output
    ``actions`` (N, ac_dim) float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    x = "obs"
    if p.normalize:
        x = node("Sub", [x, const("ob_mean", p.ob_mean)], "ob_centered")
        x = node("Div", [x, const("ob_std", p.ob_std)], "ob_scaled")
        lo, hi = const("ob_clip_low", -p.ob_clip), const("ob_clip_high", p.ob_clip)
        x = node("Clip", [x, lo, hi], "ob_normalized")
    hidden = {"tanh": ("Tanh", {}), "relu": ("Relu", {}), "lrelu": ("LeakyRelu", {"alpha": 0.2}),
              "elu": ("Elu", {"alpha": 1.0})}[p.nonlin]  # fmt: skip
    for i, (w, b) in enumerate(p.layers):
        x = node("MatMul", [x, const(f"W{i}", w)], f"matmul{i}")
        x = node("Add", [x, const(f"b{i}", b)], f"layer{i}")
        if i < len(p.layers) - 1:
            x = node(hidden[0], [x], f"hidden{i}", **hidden[1])
    if p.ac_bins:
        shape = numpy_helper.from_array(np.array([-1, p.ac_dim, p.ac_bins], np.int64), "bins_shape")
        inits.append(shape)
        x = node("Reshape", [x, "bins_shape"], "logits")
        x = node("ArgMax", [x], "bin", axis=2, keepdims=0)
        x = node("Cast", [x], "bin_float", to=TensorProto.FLOAT)
        step = (p.ac_high - p.ac_low) / (p.ac_bins - 1)
        x = node("Mul", [x, const("bin_width", step)], "bin_offset")
        x = node("Add", [x, const("bin_low", p.ac_low)], "binned")
    # As the workers: an infinite output becomes NaN (clipping would hide a diverged policy).
    overflow = node("IsInf", [x], "overflow")
    x = node("Where", [overflow, const("nan", np.nan), x], "finite_or_nan")
    x = node("Max", [x, const("ac_low", p.ac_low)], "above_low")
    node("Min", [x, const("ac_high", p.ac_high)], "actions")
    graph = helper.make_graph(
        nodes, f"esjax policy for {p.env}",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", p.ob_dim])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["N", p.ac_dim])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="esjax")  # fmt: skip
    model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(model, {"env": p.env, "checkpoint": str(p.checkpoint)})
    onnx.checker.check_model(model)
    return model


def npz_arrays(p: PortablePolicy) -> dict[str, np.ndarray]:
    """The arrays of the npz format (docs/runs.md: "A policy without esjax" loads them)."""
    arrays = {
        "env": np.array(p.env), "checkpoint": np.array(p.checkpoint),
        "num_layers": np.array(len(p.layers)), "nonlin": np.array(p.nonlin),
        "normalize": np.array(p.normalize), "ob_mean": p.ob_mean, "ob_std": p.ob_std,
        "ob_clip": np.array(p.ob_clip, np.float32), "ac_bins": np.array(p.ac_bins),
        "ac_low": p.ac_low, "ac_high": p.ac_high,
    }  # fmt: skip
    for i, (w, b) in enumerate(p.layers):
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    return arrays


def onnx_max_difference(path: Path, p: PortablePolicy, count: int = 1000, seed: int = 0):
    """Largest |ONNX - esjax| action difference over ``count`` random observations (mean +
    3 std x standard normal, so clipping is exercised), by onnxruntime; None without it."""
    try:
        import onnxruntime
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    obs = (p.ob_mean + 3 * p.ob_std * rng.standard_normal((count, p.ob_dim))).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["actions"], {"obs": obs})
    want = np.asarray(Policy(p)(obs))
    return float(np.max(np.abs(got - want)))


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m esjax.export",
        description="Write a run's policy (observation normalization, network, action "
        "clipping) as one file that runs without esjax.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by esjax.train")
    p.add_argument("--format", choices=FORMATS, default="onnx",
                   help="onnx (for onnxruntime and any ONNX runtime) or npz (plain NumPy "
                   "arrays; docs/runs.md shows a 20-line loader)")  # fmt: skip
    p.add_argument("--checkpoint", default=None,
                   help="best, latest or a generation number (default: best, or latest for "
                   "a run that has no evaluation)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="file to write (default RUN_DIR/policy_CHECKPOINT.FORMAT)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.checkpoint is None:
            args.checkpoint = "best"
            try:
                policy = portable_policy(args.run_dir, "best")
            except ConfigError as e:
                if "no best checkpoint" not in str(e):
                    raise
                args.checkpoint = "latest"  # a run without evaluations has no best
                policy = portable_policy(args.run_dir, "latest")
        else:
            policy = portable_policy(args.run_dir, args.checkpoint)
    except ConfigError as e:
        parser.fail(str(e))
    out = args.out or args.run_dir / f"policy_{args.checkpoint}.{args.format}"
    if out.is_dir():
        parser.fail(f"--out {out} is a folder: give a file name")
    if out.exists() and not args.force:
        parser.fail(f"{out} exists: pass --force to replace it, or --out another file")
    if not out.absolute().parent.is_dir():
        parser.fail(f"--out {out}: folder {out.parent} does not exist")
    if args.format == "onnx":
        try:
            import onnx
        except ImportError:
            parser.fail("--format onnx needs the onnx package: pip install 'esjax[export]' "
                         "(make setup installs it)")  # fmt: skip

    def write(tmp: Path) -> None:
        if args.format == "onnx":
            onnx.save(to_onnx(policy), tmp)
        else:
            with open(tmp, "wb") as f:
                np.savez(f, **npz_arrays(policy))

    try:
        write_atomically(out, write)
    except ConfigError as e:
        parser.fail(str(e))
    shapes = f"obs ({policy.ob_dim},) -> actions ({policy.ac_dim},)"
    print(f"{policy.env} checkpoint {policy.checkpoint} ({args.checkpoint}): {out} "
          f"({out.stat().st_size:,} bytes; {shapes})")  # fmt: skip
    if args.format == "onnx":
        diff = onnx_max_difference(out, policy)
        if diff is not None:
            print(f"checked with onnxruntime: max |action difference| {diff:.1e} on 1,000 "
                  "random observations")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
