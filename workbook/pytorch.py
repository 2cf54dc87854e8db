"""PyTorch beside rnn_core and the LSTM, when installed (the autograd check, the speed section): the
gradients by its automatic differentiation (the 2025-2026 course's check), and one training update
for the speed section. PyTorch is the optional extra (make torch), imported only inside these functions.
"""
from __future__ import annotations

import functools

import numpy as np

import rnn_core as rc


@functools.lru_cache(maxsize=1)
def torch_version() -> str | None:
    """PyTorch's version if it can be imported here, else None (it is an optional extra)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def one_thread() -> None:
    """PyTorch on one thread, for timing beside numpy: with more, its idle threads spin on for a
    while after each call, on the cores that the next implementation is timed on (which then
    took several times as long)."""
    import torch
    torch.set_num_threads(1)


def use_torch(check_torch) -> bool:
    """Whether the checked value check_torch asks for PyTorch here: "auto" when it is installed,
    True (params.check has made sure it is), False never."""
    return check_torch is not False and torch_version() is not None


def torch_grads(rnn: rc.RNN, x, y, h0) -> rc.RNN:
    """Gradients of the chunk's summed loss by PyTorch's automatic differentiation: the forward
    pass written with torch operations on the same float64 parameters, then .backward()."""
    import torch
    P = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in zip(rc.RNN.NAMES, rnn.arrays())}
    h = torch.tensor(np.asarray(h0, dtype=np.float64).reshape(-1, 1))
    loss = torch.zeros((), dtype=torch.float64)
    for xt, yt in zip(np.asarray(x).tolist(), np.asarray(y).tolist()):
        h = torch.tanh(P["W"] @ h + P["U"][:, xt:xt + 1] + P["b"])
        loss = loss - torch.log_softmax(P["V"] @ h + P["c"], dim=0)[yt, 0]
    loss.backward()
    return rc.RNN(*(P[n].grad.numpy() for n in rc.RNN.NAMES))


def torch_lstm(P, dtype):
    """torch.nn.LSTM holding the LSTM P's weights (PyTorch's own gate order, i, f, g, o, and its
    own bias b_ih, b from P, beside b_hh = 0), and its output layer V, c as a Linear."""
    import torch
    m, K = P.m, P.K
    order = np.r_[m:4 * m, :m]                       # ours: o, i, f, g; PyTorch's: i, f, g, o
    cell = torch.nn.LSTM(K, m, dtype=dtype)
    out = torch.nn.Linear(m, K, dtype=dtype)
    with torch.no_grad():
        cell.weight_ih_l0.copy_(torch.tensor(P.U[order]))
        cell.weight_hh_l0.copy_(torch.tensor(P.W[order]))
        cell.bias_ih_l0.copy_(torch.tensor(P.b[order, 0]))
        cell.bias_hh_l0.zero_()
        out.weight.copy_(torch.tensor(P.V))
        out.bias.copy_(torch.tensor(P.c[:, 0]))
    return cell, out, order


def torch_lstm_grads(P, x, y, s0):
    """Gradients of the chunk's summed loss of the LSTM P by PyTorch: torch.nn.LSTM (its own
    implementation, gate order and biases) on the same float64 weights, from the state s0 (2m, 1)
    = [h; C], with one-hot inputs, then .backward(); returned in P's layout."""
    import torch
    from workbook.lstm import LSTM
    m, K = P.m, P.K
    cell, out, order = torch_lstm(P, torch.float64)
    s0 = np.asarray(s0, dtype=np.float64).reshape(-1)
    h0 = torch.tensor(s0[:m]).reshape(1, 1, m)
    c0 = torch.tensor(s0[m:]).reshape(1, 1, m)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(np.asarray(x, dtype=np.int64)), K).to(torch.float64)
    hs, _ = cell(onehot[:, None, :], (h0, c0))
    loss = torch.nn.functional.cross_entropy(out(hs[:, 0, :]), torch.as_tensor(np.asarray(y, dtype=np.int64)),
                                             reduction="sum")
    loss.backward()
    back = np.argsort(order)                          # PyTorch's rows back into o, i, f, g
    b = (cell.bias_ih_l0.grad.numpy())[back, None]
    return LSTM(b, out.bias.grad.numpy()[:, None].copy(), cell.weight_ih_l0.grad.numpy()[back],
                cell.weight_hh_l0.grad.numpy()[back], out.weight.grad.numpy().copy())


def torch_update(rnn: rc.RNN, X, Y, *, optimizer: str, eta: float, clip: float, mean: bool, dtype: str):
    """One training update in PyTorch on the chunks X, Y (T, B), each stream from a zero state:
    forward, loss (summed or averaged over the chunk, mean over streams), .backward(), clipping
    and the optimiser's step; returned as a function, for timing beside ours. A vanilla RNN is
    written with torch operations; an LSTM is torch.nn.LSTM (one-hot inputs) and a Linear."""
    import torch
    from workbook.lstm import is_lstm
    f = torch.float32 if dtype == "float32" else torch.float64
    Xt, Yt = torch.as_tensor(np.asarray(X, dtype=np.int64)), torch.as_tensor(np.asarray(Y, dtype=np.int64))
    T, B = Xt.shape
    if is_lstm(rnn):
        cell, out, _ = torch_lstm(rnn, f)
        params = [*cell.parameters(), *out.parameters()]
        onehot = torch.nn.functional.one_hot(Xt, rnn.K).to(f)

        def logits():
            hs, _ = cell(onehot)                                    # (T, B, m), from zero states
            return out(hs)
    else:
        b, c, U, W, V = (torch.tensor(a, dtype=f, requires_grad=True) for a in rnn.arrays())
        params = [b, c, U, W, V]

        def logits():
            h = torch.zeros(B, rnn.m, dtype=f)
            hs = []
            for t in range(T):
                h = torch.tanh(h @ W.T + U.T[Xt[t]] + b.T)
                hs.append(h)
            return torch.stack(hs) @ V.T + c.T                     # (T, B, K)
    opt = {"adagrad": lambda: torch.optim.Adagrad(params, lr=eta, eps=1e-8),
           "rmsprop": lambda: torch.optim.RMSprop(params, lr=eta, alpha=0.9, eps=1e-8),
           "adam": lambda: torch.optim.Adam(params, lr=eta, eps=1e-8)}[optimizer]()

    def step():
        loss = torch.nn.functional.cross_entropy(logits().reshape(T * B, -1), Yt.reshape(-1), reduction="sum")
        loss = loss / B / (T if mean else 1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, clip)
        opt.step()
    return step
