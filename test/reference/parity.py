"""Compare the C engine with the PyTorch reference on seeded random cases.

Usage: /usr/bin/python3 parity.py DRIVER [--seed N] [--keep DIR] [--only NAME] [--verbose]

For each case, draws a configuration, float32 weights, raw windows and
targets, runs parity_driver (the C engine: forward, backward, forecast and 20
AdamW steps on one batch) and tst_reference (PyTorch), and checks:

  start   the attention pattern (exactly), the normalized inputs (1e-6),
          the normalized predictions and the forecasts with random
          calibration offsets (1e-4), against the float64 reference, and the
          calibration record the engine saves (exactly)
  steps   at each AdamW step k, from the engine's own parameters params_k:
          the loss (1e-4) and every parameter gradient (1e-3) against the
          float64 reference, the gradient norm (1e-4), and the update
          params_{k+1} - params_k (1e-3) against the reference AdamW applied
          to the engine's gradients
  trajectory  the engine's free-running losses and gradient norms against a
          float32 reference run from the same start (1e-3 per step), while
          that run is stable (see check_trajectory)

Each number is the largest relative error ||c - r|| / ||r|| (2-norm over a
tensor's elements) that passes, with the floors described at the constants
below for quantities that are zero in exact arithmetic. Prints "ok - NAME" or
"not ok - NAME: CHECK relative error E > TOL" per case, then
"N passed, N failed", and exits non-zero when a case failed.
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

import export
import tst_reference as ref

TOL_NORMALIZED_INPUT = 1e-6
TOL_FORWARD = 1e-4
TOL_GRADIENT = 1e-3
GRADIENT_NORM_FLOOR = 1e-4
TOL_UPDATE = 1e-3
# An update smaller than this share of its tensor's norm is compared as if
# it were this large, because rounding the float32 parameter alone costs
# about 6e-8 of it.
UPDATE_NORM_FLOOR = 1e-3
TOL_STEP = 1e-3
# The reference trajectory counts as stable while float32 and float64 runs
# agree to this relative error and no prediction is within TIE_DISTANCE
# (normalized units) of its target.
STABLE_REFERENCE = 1e-4
TIE_DISTANCE = 1e-4
MAX_FAILURES_SHOWN = 12
# A loss is compared as if it were at least this share of the starting loss:
# with one output the loss is |u| times a level, and as the prediction
# reaches its target a float32 rounding of it becomes a large relative error.
LOSS_FLOOR = 1e-2
ADAMW_STEPS = 20

# Each case fixes some fields; the rest are drawn from the case's seed.
# "Odd" sizes: N not a multiple of W, unused oldest steps ((L - P) % S != 0),
# one head, one layer, H = 1, one token, windows of 1 and wider than N.
NAMED_CASES = [
    ("dense_patched", dict(attention="dense", context=48, patch_len=8, patch_stride=4)),
    ("local_patched_unused_steps",
     dict(attention="local", context=40, patch_len=6, patch_stride=3, window=5)),
    ("logsparse_patched",
     dict(attention="logsparse", context=64, patch_len=4, patch_stride=2, window=3)),
    ("dense_unpatched", dict(attention="dense", context=20, patch_len=1, patch_stride=1)),
    ("local_unpatched_odd_window",
     dict(attention="local", context=30, patch_len=1, patch_stride=1, window=4)),
    ("logsparse_unpatched",
     dict(attention="logsparse", context=50, patch_len=1, patch_stride=1, window=2)),
    ("one_head_one_layer_h1",
     dict(n_heads=1, d_model=6, n_layers=1, horizon=1, quantiles=[0.3])),
    ("local_window_1", dict(attention="local", window=1, context=24, patch_len=2, patch_stride=2)),
    ("logsparse_window_1",
     dict(attention="logsparse", window=1, context=40, patch_len=2, patch_stride=1)),
    ("local_window_wider_than_tokens", dict(attention="local", window=50)),
    ("single_token", dict(context=12, patch_len=12, patch_stride=3)),
    ("stride_equals_patch", dict(context=33, patch_len=5, patch_stride=5)),
    ("constant_rows_no_median_quantile",
     dict(quantiles=[0.05, 0.3, 0.8, 0.95], edge_rows=True, batch=4)),
    ("batch_1_no_clipping", dict(batch=1, max_norm=0.0)),
    ("strong_clipping_and_decay", dict(max_norm=0.05, weight_decay=0.5)),
    ("three_layers_wide_ffn", dict(n_layers=3, d_ff=64, n_heads=4, d_model=16)),
]
N_RANDOM_CASES = 8


def draw_case(seed, overrides):
    """Draw a configuration and training settings, then apply the overrides."""
    rng = np.random.default_rng(seed)
    context = int(overrides.get("context", rng.integers(8, 65)))
    patch_len = int(overrides.get("patch_len", rng.integers(1, min(8, context) + 1)))
    patch_stride = int(overrides.get("patch_stride", rng.integers(1, patch_len + 1)))
    n_heads = int(overrides.get("n_heads", rng.choice([1, 2, 4])))
    d_model = int(overrides.get("d_model", n_heads * rng.integers(2, 7)))
    # LayerNorm over 2 channels maps every token to about (-1, 1) or (1, -1)
    # and its gradient spikes when the two are close, so float32 rounding
    # alone changes the AdamW trajectory. 4 is a multiple of n_heads 1 or 2.
    d_model = max(d_model, 4)
    # A single 0.5 level is left out: its pinball gradients of +-0.5 / (B H)
    # cancel exactly across an even batch, and AdamW then turns float32 noise
    # in the zero gradients into full-size steps.
    quantile_sets = [[0.4], [0.1, 0.5, 0.9], [0.025, 0.1, 0.5, 0.9, 0.975], [0.2, 0.7]]
    config = ref.Config(
        context=context,
        horizon=int(overrides.get("horizon", rng.integers(1, 9))),
        patch_len=patch_len,
        patch_stride=patch_stride,
        d_model=d_model,
        n_heads=n_heads,
        n_layers=int(overrides.get("n_layers", rng.integers(1, 3))),
        d_ff=int(overrides.get("d_ff", rng.integers(4, 33))),
        dropout=0.0,
        attention=overrides.get("attention", str(rng.choice(["dense", "local", "logsparse"]))),
        window=int(overrides.get("window", rng.integers(1, 7))),
        quantiles=list(overrides.get("quantiles",
                                     quantile_sets[rng.integers(len(quantile_sets))])),
    )
    training = dict(
        batch=int(overrides.get("batch", rng.integers(1, 6))),
        steps=ADAMW_STEPS,
        learning_rate=3e-3,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=float(overrides.get("weight_decay", rng.choice([0.0, 0.1]))),
        max_norm=float(overrides.get("max_norm", rng.choice([0.0, 0.5, 1.0]))),
    )
    return config, training, overrides.get("edge_rows", False)


def draw_weights(model, rng):
    """Draw float32 weights for every tensor: near the init, but with non-trivial
    LayerNorm weights, biases and positions so that each gradient is exercised."""
    tensors = []
    for name, param in model.ordered_parameters():
        shape = tuple(param.shape)
        if ref.is_layer_norm(name) and name.endswith("weight"):
            values = 1.0 + rng.uniform(-0.3, 0.3, shape)
        elif name == "pos" or name.endswith("bias"):
            values = rng.uniform(-0.1, 0.1, shape)
        else:
            bound = 1.5 / math.sqrt(shape[1])
            values = rng.uniform(-bound, bound, shape)
        tensors.append((name, values.astype(np.float32)))
    return tensors


def draw_series(config, batch, edge_rows, rng):
    """Draw raw windows x (B, L) and targets y (B, H) at varied levels and scales.

    With edge_rows, row 0 is constant (scale 1) and row 1 varies too little
    around a large mean for its deviation to count (s <= 1e-10 |mean|).
    """
    length = config.context + config.horizon
    t = np.arange(length)
    rows = []
    for _ in range(batch):
        level = rng.uniform(-50, 50)
        spread = math.exp(rng.uniform(-2, 3))
        period = rng.uniform(4, 24)
        shape = np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
        noise = np.cumsum(rng.normal(0, 0.3, length))
        rows.append(level + spread * (shape + noise))
    series = np.array(rows)
    if edge_rows:
        series[0] = 7.0
        series[0, config.context:] += rng.normal(0, 1, config.horizon)
        series[1] = 1e6 + 1e-6 * rng.normal(0, 1, length)
    return series[:, :config.context].copy(), series[:, config.context:].copy()


def write_case(directory, config, training, weights, calibration, x, y):
    lines = [
        f"context {config.context}",
        f"horizon {config.horizon}",
        f"patch_len {config.patch_len}",
        f"patch_stride {config.patch_stride}",
        f"d_model {config.d_model}",
        f"n_heads {config.n_heads}",
        f"n_layers {config.n_layers}",
        f"d_ff {config.d_ff}",
        f"attention {config.attention}",
        f"window {config.window}",
        "quantiles " + " ".join(repr(float(q)) for q in config.quantiles),
    ]
    lines += [f"{key} {value!r}" for key, value in training.items()]
    with open(os.path.join(directory, "case.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(directory, "weights.tstw"), "wb") as f:
        f.write(export.write_blob(weights, calibration))
    x.astype("<f8").tofile(os.path.join(directory, "x.f64"))
    y.astype("<f8").tofile(os.path.join(directory, "y.f64"))


def read_driver_output(directory, config, training):
    def values(name, dtype, shape):
        return np.fromfile(os.path.join(directory, name), dtype=dtype).reshape(shape)

    def blob(name):
        with open(os.path.join(directory, name), "rb") as f:
            return export.read_blob(f.read())

    def calibration_of(name):
        with open(os.path.join(directory, name), "rb") as f:
            return export.read_blob_calibration(f.read())[1]

    batch, n_quantiles = training["batch"], len(config.quantiles)
    out = {
        "xn": values("xn.f32", "<f4", (batch, config.context)),
        "pred": values("pred.f32", "<f4", (batch, config.horizon, n_quantiles)),
        "forecast": values("forecast.f64", "<f8", (batch, config.horizon, n_quantiles)),
        "params": [blob(f"params_{k}.tstw") for k in range(training["steps"] + 1)],
        "calibration": calibration_of("params_0.tstw"),
        "grads": [blob(f"grads_{k}.tstw") for k in range(training["steps"])],
        "step_loss": [],
        "step_grad_norm": [],
    }
    with open(os.path.join(directory, "pattern.txt")) as f:
        out["pattern"] = [[int(key) for key in line.split()] for line in f]
    with open(os.path.join(directory, "result.txt")) as f:
        for line in f:
            fields = line.split()
            if fields[0] == "step":
                out["step_loss"].append(float(fields[2]))
                out["step_grad_norm"].append(float(fields[3]))
    return out


def reference_model(config, weights, dtype):
    model = ref.TstModel(config).to(dtype)
    set_parameters(model, weights)
    return model


def set_parameters(model, tensors):
    with torch.no_grad():
        for (_, values), (_, param) in zip(tensors, model.ordered_parameters()):
            param.copy_(torch.from_numpy(values))


def make_optimizer(model, training):
    return ref.AdamW(model.ordered_parameters(), lr=training["learning_rate"],
                     beta1=training["beta1"], beta2=training["beta2"],
                     eps=training["eps"], weight_decay=training["weight_decay"])


def free_run(config, training, weights, xn, yn, dtype):
    """Train a reference model for the case's steps; return the losses, the
    gradient norms and, per step, the smallest |u| of the pinball loss."""
    model = reference_model(config, weights, dtype)
    optimizer = make_optimizer(model, training)
    losses, norms, closest = [], [], []
    for _ in range(training["steps"]):
        model.zero_grad(set_to_none=False)
        pred = model(xn)
        loss = ref.pinball_loss(pred, yn, config.quantiles)
        loss.backward()
        losses.append(loss.item())
        closest.append(float((yn.to(dtype)[:, :, None] - pred).abs().min()))
        norms.append(optimizer.step(training["max_norm"]))
    return losses, norms, closest


def relative_error(c, r, floor=0.0):
    """Return ||c - r|| / max(||r||, floor), or inf when the shapes differ."""
    c = np.asarray(c, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if c.shape != r.shape:
        return math.inf
    denominator = max(np.linalg.norm(r), floor)
    difference = np.linalg.norm(c - r)
    if denominator == 0:
        return difference
    return difference / denominator


def check(checks, label, c, r, tol, floor=0.0):
    checks.append((label, relative_error(c, r, floor), tol))


def gradient_floor(grads):
    """Return GRADIENT_NORM_FLOOR times the norm of all gradients together.

    A gradient that is zero in exact arithmetic (the head bias when the
    pinball signs cancel across the batch) is float32 noise in the engine, so
    no tensor's norm counts as smaller than this floor.
    """
    total = sum(float(np.sum(np.asarray(g, dtype=np.float64) ** 2)) for _, g in grads)
    return GRADIENT_NORM_FLOOR * math.sqrt(total)


def check_start(checks, config, x, y, c_out):
    """Compare the pattern, normalization, forward pass and forecast at the start."""
    x = torch.from_numpy(x)
    xn, mean, scale = ref.normalize(x)
    yn = ref.normalize_targets(torch.from_numpy(y), mean, scale)
    r_pattern = ref.attention_keys(config.attention, config.window, config.num_patches)
    differing = sum(c_row != r_row for c_row, r_row in zip(c_out["pattern"], r_pattern))
    differing += abs(len(c_out["pattern"]) - len(r_pattern))
    checks.append(("attention pattern: rows that differ", differing, 0))

    model = reference_model(config, c_out["params"][0], torch.float64)
    with torch.no_grad():
        model.calibration.copy_(torch.from_numpy(c_out["calibration"]))
    pred = model(xn)
    check(checks, "xn", c_out["xn"], xn.numpy(), TOL_NORMALIZED_INPUT)
    check(checks, "pred", c_out["pred"], pred.detach().numpy(), TOL_FORWARD)
    check(checks, "forecast", c_out["forecast"], model.forecast(x).numpy(), TOL_FORWARD)
    return xn, yn


def check_steps(checks, config, training, xn, yn, c_out):
    """Check every AdamW step of the engine from the engine's own state.

    Step k starts from the engine's parameters params_k: the reference (float64)
    recomputes the loss and every gradient there, then applies its AdamW
    update to params_k with the engine's gradients grads_k, and the result
    must match params_{k+1}. No error carries over from one step to the next.
    """
    model = ref.TstModel(config).double()
    optimizer = make_optimizer(model, training)
    names = [name for name, _ in model.ordered_parameters()]
    for k in range(training["steps"]):
        c_params, c_grads = c_out["params"][k], c_out["grads"][k]
        if [name for name, _ in c_params] != names or [name for name, _ in c_grads] != names:
            checks.append((f"step {k} tensor names", math.inf, 0.0))
            return
        set_parameters(model, c_params)
        model.zero_grad(set_to_none=False)
        loss = ref.pinball_loss(model(xn), yn, config.quantiles)
        loss.backward()
        if k == 0:
            loss_floor = LOSS_FLOOR * loss.item()
        check(checks, f"step {k} loss", c_out["step_loss"][k], loss.item(), TOL_FORWARD,
              loss_floor)
        floor = gradient_floor([(n, p.grad.numpy()) for n, p in model.ordered_parameters()])
        for (name, c_grad), (_, param) in zip(c_grads, model.ordered_parameters()):
            check(checks, f"step {k} grad {name}", c_grad, param.grad.numpy(),
                  TOL_GRADIENT, floor)

        grads = [torch.from_numpy(g.astype(np.float64)) for _, g in c_grads]
        norm = optimizer.step(training["max_norm"], grads=grads)
        check(checks, f"step {k} grad norm", c_out["step_grad_norm"][k], norm, TOL_FORWARD)
        for (name, before), (_, after), (_, param) in zip(
                c_params, c_out["params"][k + 1], model.ordered_parameters()):
            c_update = after.astype(np.float64) - before
            r_update = param.detach().numpy() - before
            check(checks, f"step {k} update {name}", c_update, r_update, TOL_UPDATE,
                  UPDATE_NORM_FLOOR * np.linalg.norm(before))


def check_trajectory(checks, config, training, weights, xn, yn, c_out):
    """Compare the engine's free-running step losses with a float32 reference run.

    Rounding differences grow along a trajectory: AdamW moves a parameter by
    about a full learning rate whatever the size of its gradient, and a
    prediction that crosses its target flips the pinball gradient. Steps from
    the first one where float32 and float64 reference runs disagree, or where
    a prediction comes within TIE_DISTANCE of its target, are not compared.
    Returns the number of steps compared.
    """
    r32_loss, r32_norm, closest = free_run(config, training, weights, xn, yn, torch.float32)
    r64_loss, r64_norm, _ = free_run(config, training, weights, xn, yn, torch.float64)
    compared = 0
    for k in range(training["steps"]):
        stable = (relative_error(r32_loss[k], r64_loss[k]) <= STABLE_REFERENCE
                  and relative_error(r32_norm[k], r64_norm[k]) <= STABLE_REFERENCE)
        if not stable:
            break
        check(checks, f"trajectory step {k} loss", c_out["step_loss"][k], r32_loss[k], TOL_STEP,
              LOSS_FLOOR * r32_loss[0])
        compared += 1
        # At a tie the gradient itself jumps, so only the loss is comparable.
        if closest[k] < TIE_DISTANCE:
            break
        check(checks, f"trajectory step {k} grad norm", c_out["step_grad_norm"][k],
              r32_norm[k], TOL_STEP)
    return compared


def compare(config, training, weights, x, y, c_out):
    """Return (label, error, tolerance) for every check, and the number of
    trajectory steps compared."""
    checks = []
    xn, yn = check_start(checks, config, x, y, c_out)
    check_steps(checks, config, training, xn, yn, c_out)
    compared = check_trajectory(checks, config, training, weights, xn, yn, c_out)
    return checks, compared


def describe_error(label, error, tol):
    """Format one check; every label except the pattern's is a relative error."""
    relation = "<=" if error <= tol else ">"
    if label.startswith("attention pattern"):
        return f"{label} {error:g} {relation} {tol:g}"
    return f"{label} relative error {error:.3g} {relation} {tol:g}"


def describe(config, training):
    return (f"L={config.context} H={config.horizon} P={config.patch_len} "
            f"S={config.patch_stride} N={config.num_patches} D={config.d_model} "
            f"NH={config.n_heads} layers={config.n_layers} F={config.d_ff} "
            f"{config.attention} W={config.window} Q={len(config.quantiles)} "
            f"B={training['batch']} wd={training['weight_decay']} "
            f"max_norm={training['max_norm']}")


def run_case(driver, name, seed, overrides, work_dir, verbose):
    """Run one case; print its result line and return True when it passed."""
    config, training, edge_rows = draw_case(seed, overrides)
    rng = np.random.default_rng(seed + 1000)
    weights = draw_weights(ref.TstModel(config), rng)
    x, y = draw_series(config, training["batch"], edge_rows, rng)
    # Offsets of either sign, large enough to cross neighbouring levels.
    calibration = rng.uniform(-0.5, 0.5, (config.horizon, len(config.quantiles)))
    calibration = calibration.astype(np.float32)

    directory = os.path.join(work_dir, name)
    os.makedirs(directory, exist_ok=True)
    write_case(directory, config, training, weights, calibration, x, y)
    run = subprocess.run([driver, directory], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"not ok - {name}: parity_driver failed: {run.stderr.strip()}")
        return False

    c_out = read_driver_output(directory, config, training)
    checks, compared = compare(config, training, weights, x, y, c_out)
    check(checks, "calibration saved as loaded", c_out["calibration"], calibration, 0.0)
    failures = [(label, error, tol) for label, error, tol in checks if not error <= tol]
    if failures:
        label, error, tol = failures[0]
        print(f"not ok - {name}: {describe_error(label, error, tol)}")
        print(f"# {describe(config, training)}")
        for label, error, tol in failures[1:MAX_FAILURES_SHOWN]:
            print(f"#   also {describe_error(label, error, tol)}")
        if len(failures) > MAX_FAILURES_SHOWN:
            print(f"#   and {len(failures) - MAX_FAILURES_SHOWN} more failed checks")
    else:
        print(f"ok - {name}")
    if compared < training["steps"]:
        print(f"# {name}: trajectory compared for {compared} of {training['steps']} steps")
    if verbose:
        print(f"# {describe(config, training)}")
        for label, error, tol in checks:
            print(f"#   {describe_error(label, error, tol)}")
    sys.stdout.flush()
    return not failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("driver", help="path of the built parity_driver")
    parser.add_argument("--seed", type=int, default=20240601,
                        help="base seed; case i uses seed + 7 i (default 20240601)")
    parser.add_argument("--keep", metavar="DIR",
                        help="write the case files into DIR and keep them")
    parser.add_argument("--only", metavar="NAME", help="run only the case NAME")
    parser.add_argument("--verbose", action="store_true",
                        help="print every compared error, not only failures")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cases = list(NAMED_CASES) + [(f"random_{i}", {}) for i in range(N_RANDOM_CASES)]
    # Seeds follow the position in the full list, so --only reproduces a case.
    cases = [(name, args.seed + 7 * index, overrides)
             for index, (name, overrides) in enumerate(cases)]
    if args.only:
        cases = [case for case in cases if case[0] == args.only]
        if not cases:
            sys.exit(f"parity.py: no case named {args.only!r}")

    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="tst-parity-") as temporary:
        work_dir = args.keep or temporary
        for name, seed, overrides in cases:
            if run_case(os.path.abspath(args.driver), name, seed, overrides, work_dir,
                        args.verbose):
                passed += 1
            else:
                failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
