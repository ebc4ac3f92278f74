"""The PyTorch side of the engine benchmarks (bench/engine.sh, bench/attention.sh).

Run with Debian's interpreter, /usr/bin/python3, which has python3-torch.

    engine_torch.py setup DIR KEY=VALUE...   write config.txt, weights.tstw,
                                             x.f64 and y.f64 for engine_bench
    engine_torch.py forecast DIR THREADS REPS
    engine_torch.py train DIR THREADS REPS BATCH
    engine_torch.py compare DIR               relative error of the engine's
                                             forecast.f64 against PyTorch's

The model is test/reference/tst_reference.py, loaded with the same weights
blob as the engine. Every timed call prints "MODE SECONDS".
"""

import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "reference"))

import export  # noqa: E402
import tst_reference as ref  # noqa: E402

INT_KEYS = ("context", "horizon", "patch_len", "patch_stride", "d_model", "n_heads",
            "n_layers", "d_ff", "window", "batch")


def read_config(directory):
    values = {}
    with open(os.path.join(directory, "config.txt")) as f:
        for line in f:
            key, _, rest = line.strip().partition(" ")
            values[key] = rest
    config = ref.Config(
        **{k: int(values[k]) for k in INT_KEYS if k != "batch"},
        dropout=float(values["dropout"]),
        attention=values["attention"],
        quantiles=[float(q) for q in values["quantiles"].split()],
    )
    return config, int(values["batch"])


def load(directory):
    config, batch = read_config(directory)
    model = ref.TstModel(config)
    with open(os.path.join(directory, "weights.tstw"), "rb") as f:
        tensors = dict(export.read_blob(f.read()))
    with torch.no_grad():
        for name, param in model.ordered_parameters():
            param.copy_(torch.from_numpy(tensors[name]))
    x = np.fromfile(os.path.join(directory, "x.f64"), dtype="<f8")
    y = np.fromfile(os.path.join(directory, "y.f64"), dtype="<f8")
    x = torch.from_numpy(x.reshape(-1, config.context)[:batch].copy())
    y = torch.from_numpy(y.reshape(-1, config.horizon)[:batch].copy())
    return config, model, x, y


def setup(directory, pairs):
    """Draw a model from a seed and windows of a noisy daily cycle."""
    values = dict(context=336, horizon=96, patch_len=16, patch_stride=8, d_model=64,
                  n_heads=4, n_layers=3, d_ff=128, window=16, batch=1024,
                  attention="local", dropout=0.1, seed=1)
    for pair in pairs:
        key, _, value = pair.partition("=")
        values[key] = value if key == "attention" else float(value)
    os.makedirs(directory, exist_ok=True)
    config = ref.Config(**{k: int(values[k]) for k in INT_KEYS if k != "batch"},
                        dropout=float(values["dropout"]), attention=values["attention"])
    batch = int(values["batch"])
    torch.manual_seed(int(values["seed"]))
    model = ref.TstModel(config)
    ref.init_parameters(model)
    weights = [(name, p.detach().numpy()) for name, p in model.ordered_parameters()]
    with open(os.path.join(directory, "weights.tstw"), "wb") as f:
        f.write(export.write_blob(weights))
    rng = np.random.default_rng(int(values["seed"]))
    steps = np.arange(config.context + config.horizon)
    phase = rng.uniform(0, 24, size=(batch, 1))
    level = rng.uniform(-5, 5, size=(batch, 1))
    series = level + np.sin(2 * np.pi * (steps + phase) / 24) + 0.1 * rng.standard_normal(
        (batch, steps.size))
    series[:, :config.context].astype("<f8").tofile(os.path.join(directory, "x.f64"))
    series[:, config.context:].astype("<f8").tofile(os.path.join(directory, "y.f64"))
    lines = [f"{k} {int(values[k])}" for k in INT_KEYS]
    lines += [f"attention {config.attention}", f"dropout {config.dropout!r}",
              "quantiles " + " ".join(repr(q) for q in config.quantiles)]
    with open(os.path.join(directory, "config.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def bench_forecast(directory, reps):
    _, model, x, _ = load(directory)
    model.eval()
    with torch.inference_mode():
        model.forecast(x)
        for _ in range(reps):
            start = time.perf_counter()
            out = model.forecast(x)
            print(f"forecast {time.perf_counter() - start:.6f}", flush=True)
    np.save(os.path.join(directory, "torch_forecast.npy"), out.numpy())


def bench_train(directory, reps, batch):
    config, model, x, y = load(directory)
    x, y = x[:batch], y[:batch]
    xn, mean, scale = ref.normalize(x)
    yn = ref.normalize_targets(y, mean, scale)
    decayed = [p for name, p in model.ordered_parameters() if p.dim() == 2 and name != "pos"]
    other = [p for name, p in model.ordered_parameters() if not (p.dim() == 2 and name != "pos")]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.01},
                                   {"params": other, "weight_decay": 0.0}], lr=1e-3)
    model.train()
    for r in range(reps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = ref.pinball_loss(model(xn), yn, config.quantiles)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if r > 0:
            print(f"train {time.perf_counter() - start:.6f}", flush=True)


def compare(directory):
    config, _ = read_config(directory)
    theirs = np.load(os.path.join(directory, "torch_forecast.npy"))
    ours = np.fromfile(os.path.join(directory, "forecast.f64"), dtype="<f8")
    ours = ours.reshape(theirs.shape)
    error = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
    print(f"relative_error {error:.3g}")


def main():
    mode, directory = sys.argv[1], sys.argv[2]
    if mode == "setup":
        setup(directory, sys.argv[3:])
        return
    if mode == "compare":
        compare(directory)
        return
    threads, reps = int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    if mode == "forecast":
        bench_forecast(directory, reps)
    elif mode == "train":
        bench_train(directory, reps, int(sys.argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
