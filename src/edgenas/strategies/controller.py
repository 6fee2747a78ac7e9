"""The RNN controller: an LSTM policy that samples a space's decisions one after another.

MnasNet reuses NASNet's controller: one LSTM layer of 100 units. At each step the LSTM reads an
embedding of the previous decision's choice (a learned start vector at step 0), and a per-decision
linear head turns its state into logits over that decision's choices. Sampling step by step makes
later decisions conditional on earlier ones; the same pass with the choices forced
("teacher forcing") gives the log-probability and entropy of any architecture, batched, which is
what policy-gradient updates need.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ControllerPolicy(nn.Module):
    """LSTM policy over ordered categorical decisions.

    `temperature` divides the logits and `tanh_constant` (NASNet/ENAS) bounds them as
    `c * tanh(logits)`, both to keep the policy from collapsing onto one architecture early.
    """

    def __init__(
        self,
        num_choices: Sequence[int],
        hidden_size: int = 100,
        temperature: float = 1.0,
        tanh_constant: float | None = None,
    ) -> None:
        super().__init__()
        self.num_choices = tuple(int(n) for n in num_choices)
        self.hidden_size = hidden_size
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in self.num_choices)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in self.num_choices)
        for module in (*self.embeddings, *self.heads):
            nn.init.uniform_(module.weight, -0.1, 0.1)
        for head in self.heads:
            nn.init.zeros_(head.bias)

    def _logits(self, step: int, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.heads[step](hidden) / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _steps(self, batch: int, choose):
        """Run the LSTM over every decision.

        `choose(step, log_probs)` returns the chosen index per row, given the [B, n] log-probabilities
        of that step. (Plain log-softmax rather than torch.distributions: sampling happens on every
        ask, and the distribution objects cost more than the LSTM itself.)
        """
        x = self.start.expand(batch, -1)
        state = None
        log_prob = torch.zeros(batch)
        entropy = torch.zeros(batch)
        chosen = []
        for step in range(len(self.num_choices)):
            h, c = self.lstm(x, state)
            state = (h, c)
            log_probs = torch.log_softmax(self._logits(step, h), dim=-1)
            index = choose(step, log_probs)
            log_prob = log_prob + log_probs.gather(1, index.unsqueeze(1)).squeeze(1)
            entropy = entropy - (log_probs.exp() * log_probs).sum(-1)
            chosen.append(index)
            x = self.embeddings[step](index)
        return torch.stack(chosen, dim=1), log_prob, entropy

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None) -> tuple[tuple[int, ...], float]:
        """One architecture (an index per decision) and its log-probability under the policy."""

        def draw(step: int, log_probs: torch.Tensor) -> torch.Tensor:
            return torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)

        indices, log_prob, _ = self._steps(1, draw)
        return tuple(int(i) for i in indices[0]), float(log_prob[0])

    def evaluate(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy (summed over decisions) of a batch [B, D] of architectures."""
        indices = indices.long()
        _, log_prob, entropy = self._steps(indices.shape[0], lambda step, lp: indices[:, step])
        return log_prob, entropy

    @torch.no_grad()
    def probabilities(self, indices: Sequence[int]) -> list[torch.Tensor]:
        """The policy's distribution at each step along one architecture (for inspection and tests)."""
        forced = torch.tensor([list(indices)])
        probs: list[torch.Tensor] = []

        def record(step: int, log_probs: torch.Tensor) -> torch.Tensor:
            probs.append(log_probs[0].exp())
            return forced[:, step]

        self._steps(1, record)
        return probs
