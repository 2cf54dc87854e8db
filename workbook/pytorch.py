"""PyTorch beside rnn_core, when installed (the autograd check, the speed section): the gradients
by its automatic differentiation (the 2025-2026 course's check), and one training update for the
speed section. PyTorch is the optional extra (make torch), imported only inside these functions.
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


def torch_update(rnn: rc.RNN, X, Y, *, optimizer: str, eta: float, clip: float, mean: bool, dtype: str):
    """One training update in PyTorch on the chunks X, Y (T, B), each stream from h = 0: forward,
    loss (summed or averaged over the chunk, mean over streams), .backward(), clipping and the
    optimiser's step; returned as a function, for timing beside rnn_core."""
    import torch
    f = torch.float32 if dtype == "float32" else torch.float64
    b, c, U, W, V = (torch.tensor(a, dtype=f, requires_grad=True) for a in rnn.arrays())
    params = [b, c, U, W, V]
    opt = {"adagrad": lambda: torch.optim.Adagrad(params, lr=eta, eps=1e-8),
           "rmsprop": lambda: torch.optim.RMSprop(params, lr=eta, alpha=0.9, eps=1e-8),
           "adam": lambda: torch.optim.Adam(params, lr=eta, eps=1e-8)}[optimizer]()
    Xt, Yt = torch.as_tensor(np.asarray(X, dtype=np.int64)), torch.as_tensor(np.asarray(Y, dtype=np.int64))
    T, B = Xt.shape

    def step():
        h = torch.zeros(B, rnn.m, dtype=f)
        hs = []
        for t in range(T):
            h = torch.tanh(h @ W.T + U.T[Xt[t]] + b.T)
            hs.append(h)
        logits = torch.stack(hs) @ V.T + c.T                    # (T, B, K)
        loss = torch.nn.functional.cross_entropy(logits.reshape(T * B, -1), Yt.reshape(-1), reduction="sum")
        loss = loss / B / (T if mean else 1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, clip)
        opt.step()
    return step
