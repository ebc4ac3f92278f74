"""The engine against PyTorch, as ratios within one run (bench/engine.sh).

    /usr/bin/python3 bench/engine_run.py ENGINE_BENCH WORK_DIR ROUNDS

Sets up one case (bench/engine_torch.py setup), then for 1 and 2 threads
alternates ROUNDS runs of the engine and of PyTorch, each run timing several
calls and keeping its median. Prints the Markdown body of the section.
"""

import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "reference"))

import tst_reference as ref  # noqa: E402

PY = "/usr/bin/python3"
TORCH = os.path.join(HERE, "engine_torch.py")


def run(cmd):
    env = dict(os.environ)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    times = [float(line.split()[1]) for line in out.splitlines()
             if line.split()[0] in ("forecast", "train", "sgemm")]
    return statistics.median(times)


def forward_flops(config, batch):
    """Multiply-adds times two of one forecast batch, from the shapes."""
    n, d, f = config.num_patches, config.d_model, config.d_ff
    nnz = sum(len(keys) for keys in ref.attention_keys(config.attention, config.window, n))
    per_layer = 2 * n * d * 3 * d + 4 * nnz * d + 2 * n * d * d + 4 * n * d * f
    head = 2 * n * d * config.horizon * len(config.quantiles)
    return batch * (2 * n * config.patch_len * d + config.n_layers * per_layer + head)


def main():
    engine, work, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    case = os.path.join(work, "target1")
    subprocess.run([PY, TORCH, "setup", case], check=True)
    config = ref.Config(context=336, horizon=96, patch_len=16, patch_stride=8, d_model=64,
                        n_heads=4, n_layers=3, d_ff=128, window=16, attention="local")
    flops = forward_flops(config, 1024)
    rows = []
    for threads in (1, 2):
        results = {"fwd_c": [], "fwd_t": [], "train_c": [], "train_t": [], "sgemm": []}
        for _ in range(rounds):
            results["fwd_c"].append(run([engine, "forecast", case, str(threads), "5"]))
            results["fwd_t"].append(run([PY, TORCH, "forecast", case, str(threads), "5"]))
            results["train_c"].append(run([engine, "train", case, str(threads), "20", "64"]))
            results["train_t"].append(run([PY, TORCH, "train", case, str(threads), "20", "64"]))
            results["sgemm"].append(run([engine, "sgemm", str(threads), "5", "2048"]))
        med = {k: statistics.median(v) for k, v in results.items()}
        peak = 2 * 2048 ** 3 / med["sgemm"] / 1e9
        achieved = flops / med["fwd_c"] / 1e9
        rows.append((threads, med, peak, achieved))
    error = subprocess.run([PY, TORCH, "compare", case], check=True, capture_output=True,
                           text=True).stdout.split()[1]

    print("| threads | forward, tst | forward, PyTorch | speed-up | training step, tst "
          "| training step, PyTorch | speed-up | tst GFLOP/s | sgemm peak GFLOP/s "
          "| share of peak |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for threads, med, peak, achieved in rows:
        print(f"| {threads} | {med['fwd_c'] * 1e3:.1f} ms | {med['fwd_t'] * 1e3:.1f} ms "
              f"| {med['fwd_t'] / med['fwd_c']:.2f}x | {med['train_c'] * 1e3:.1f} ms "
              f"| {med['train_t'] * 1e3:.1f} ms | {med['train_t'] / med['train_c']:.2f}x "
              f"| {achieved:.1f} | {peak:.1f} | {100 * achieved / peak:.0f}% |")
    print()
    print(f"- Forward: one batch of 1,024 windows, {flops / 1e9:.2f} GFLOP counted from the "
          "shapes (linear layers, attention scores and weighted sums over the pattern's "
          "pairs, head), tst_model_forecast against TstModel.forecast under "
          "torch.inference_mode. Training step: forward with dropout 0.1, backward, "
          "gradient clipping at 1 and AdamW, batch 64 (torch.optim.AdamW).")
    print(f"- Each figure is the median over {rounds} alternating runs of each side, each run "
          "the median of 5 forecasts or 20 steps after one untimed call. The sgemm peak is "
          "cblas_sgemm of 2048 x 2048 matrices in the same OpenBLAS.")
    print(f"- The two forecasts agree to a relative error of {error}.")


if __name__ == "__main__":
    main()
