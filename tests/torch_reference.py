"""PyTorch's nn.RNN or nn.LSTM on the same task as `make bench`'s mini-batch rows, for a side-by-side rate.

Run by tests/bench.py through the interpreter in TORCH_PYTHON (`make bench-torch` makes one);
    torch_reference.py TEXT CELL B T m REPEATS THREADS...
prints one JSON line per thread count: {"threads": n, "chars_per_s": rate, "torch": version}, and
for an LSTM "chars_per_s_without_onednn": the rate of PyTorch's own LSTM ops, oneDNN's fused
kernel (which nn.LSTM runs on the CPU) turned off.

The same model and loop as the workbook's batch_size=32 training: one-hot inputs into nn.RNN
(tanh, m hidden units; CELL "rnn") or nn.LSTM (CELL "lstm"), a linear output layer, the cross-entropy summed over each chunk and
averaged over the B streams, gradients clipped element-wise to [-5, 5], AdaGrad eta 0.1,
B streams at evenly spaced offsets each carrying its hidden state. float32, on the CPU.
"""
import json
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore", message="TF32 acceleration")   # oneDNN's flags name GPUs we do not use


def rate(data: torch.Tensor, K: int, cell: str, B: int, T: int, m: int, n_updates: int, repeats: int) -> float:
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(K, m) if cell == "lstm" else torch.nn.RNN(K, m, nonlinearity="tanh")
    out = torch.nn.Linear(m, K)

    def zero():                                                 # the state each stream carries
        return (torch.zeros(1, B, m), torch.zeros(1, B, m)) if cell == "lstm" else torch.zeros(1, B, m)
    params = list(rnn.parameters()) + list(out.parameters())
    opt = torch.optim.Adagrad(params, lr=0.1)
    L = (len(data) - 1) // B
    starts = torch.arange(B) * L
    steps = torch.arange(T)[:, None]
    best = 0.0
    for _ in range(repeats):
        h, e = zero(), 0
        t0 = time.perf_counter()
        for _ in range(n_updates):
            if e > L - T:
                h, e = zero(), 0
            ix = starts[None, :] + e + steps                    # (T, B)
            x = torch.nn.functional.one_hot(data[ix], K).float()
            hs, h_last = rnn(x, h)
            loss = torch.nn.functional.cross_entropy(out(hs).reshape(-1, K), data[ix + 1].reshape(-1),
                                                     reduction="sum") / B
            opt.zero_grad()
            loss.backward()
            for p in params:
                p.grad.clamp_(-5.0, 5.0)
            opt.step()
            h = tuple(s.detach() for s in h_last) if cell == "lstm" else h_last.detach()
            e += T
        best = max(best, n_updates * B * T / (time.perf_counter() - t0))
    return best


def main():
    path, cell, (B, T, m, repeats, *thread_counts) = sys.argv[1], sys.argv[2], map(int, sys.argv[3:])
    text = open(path, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    for threads in thread_counts:
        torch.set_num_threads(threads)
        line = {"threads": threads, "chars_per_s": rate(data, len(chars), cell, B, T, m, 300, repeats),
                "torch": torch.__version__}
        if cell == "lstm":          # on the CPU, nn.LSTM runs oneDNN's fused LSTM kernel; its own ops without it
            with torch.backends.mkldnn.flags(enabled=False):
                line["chars_per_s_without_onednn"] = rate(data, len(chars), cell, B, T, m, 300, repeats)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
