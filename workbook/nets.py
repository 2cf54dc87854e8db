"""The two cells a run can train, by the name its `cell` parameter gives ("rnn", "lstm"): for
each, the functions the notebooks call, so that a notebook says net.synthesize(...) once for
both. The vanilla RNN's are rnn_core's (the assignment); the LSTM's are workbook/lstm.py's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import rnn_core as rc
from workbook import batched, lstm, pytorch


@dataclass(frozen=True)
class Net:
    name: str                  # the `cell` parameter's value
    label: str                 # in tables: "vanilla RNN", "LSTM"
    title: str                 # in sentences: "a vanilla RNN", "an LSTM"
    init: Callable             # (K, m, rng=, init=, sigma=) -> model
    loss_and_grads: Callable   # (model, x, y, s0) -> (loss, gradients, last state): one stream
    batched_loss_and_grads: Callable   # (model, X, Y, S0, reset_ix=) -> the same for streams side by side
    numerical_grads: Callable  # (model, x, y, s0, h=) -> centred differences
    complex_step_grads: Callable
    torch_grads: Callable      # (model, x, y, s0) -> PyTorch's autograd
    synthesize: Callable       # (model, s0, x0, n, rng=, temperature=, top_p=, stop_ix=, greedy=)
    feed: Callable             # (model, s0, ix) -> the state after reading ix

    def n_params(self, K: int, m: int) -> int:
        return lstm.n_params(self.name, K, m)


NETS = {
    "rnn": Net("rnn", "vanilla RNN", "a vanilla RNN", rc.init_rnn, rc.loss_and_grads, batched.loss_and_grads,
               rc.numerical_grads, rc.complex_step_grads, pytorch.torch_grads, rc.synthesize, rc.feed),
    "lstm": Net("lstm", "LSTM", "an LSTM", lstm.init_lstm, lstm.loss_and_grads, lstm.loss_and_grads,
                lstm.numerical_grads, lstm.complex_step_grads, pytorch.torch_lstm_grads, lstm.synthesize, lstm.feed),
}


def of(model) -> Net:
    """The Net of a model (its class says which)."""
    return NETS["lstm" if lstm.is_lstm(model) else "rnn"]
