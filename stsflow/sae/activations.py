"""Residual-stream activations of token windows at one layer, in batches: what SAE training
reads and what the quality figures are measured on."""

from __future__ import annotations

import torch

from stsflow.models.batching import pad_batch


def window_batch(chunk: list[tuple[list[int], int]]):
    """Padded ids and mask of token windows ``(ids, skip)``, and the positions to use: all but
    each window's first ``skip`` (the chat head)."""
    ids, mask = pad_batch([w for w, _ in chunk])
    keep = mask.bool()
    for r, (_, skip) in enumerate(chunk):
        keep[r, :skip] = False
    return ids, mask, keep


class ActivationStream:
    """Residual-stream activations at ``layer`` over token windows, shuffled in a buffer, cycled
    until ``total_tokens`` have been yielded, in batches of ``batch_tokens`` rows.

    Each window is ``(ids, skip)``: the first ``skip`` positions (the chat head, whose first
    token carries the huge-norm "attention sink" activations) are run but not used. Extraction
    never encodes them either: they live in the cached prefix.

    The order: each pass over the windows draws a permutation of them, run ``model_batch``
    windows at a time; once ``8 * batch_tokens`` activations are buffered they are shuffled and
    yielded in whole batches, the remainder kept for the next. One seeded generator draws both.
    ``state_dict`` holds where the stream is (generator, pass, buffer, batches ready), so that
    an interrupted SAE training goes on with the very batches it would have read."""

    def __init__(self, model, layer: int, windows: list[tuple[list[int], int]], *,
                 batch_tokens: int, total_tokens: int, model_batch: int, seed: int,
                 device: str):
        from stsflow.models.tap import LayerTap

        self.model, self.windows, self.device = model, windows, device
        self.batch_tokens, self.total, self.model_batch = batch_tokens, total_tokens, model_batch
        self.tap = LayerTap(model, layer)
        self.gen = torch.Generator().manual_seed(seed)
        self.order: list[int] | None = None
        self.pos = 0
        self.buffer: list[torch.Tensor] = []
        self.buffered = 0
        self.ready: torch.Tensor | None = None  # shuffled activations, yielded batch by batch
        self.next_row = self.n_full = 0
        self.yielded = 0

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self.yielded >= self.total:
            raise StopIteration
        while self.ready is None:
            self._fill()
        out = self.ready[self.next_row:self.next_row + self.batch_tokens]
        self.next_row += self.batch_tokens
        self.yielded += self.batch_tokens
        if self.next_row >= self.n_full:
            self.buffer = [self.ready[self.n_full:]]
            self.buffered = self.ready.shape[0] - self.n_full
            self.ready = None
        return out

    def _fill(self) -> None:
        if self.order is None or self.pos >= len(self.order):
            self.order = torch.randperm(len(self.windows), generator=self.gen).tolist()
            self.pos = 0
        chunk = [self.windows[i] for i in self.order[self.pos:self.pos + self.model_batch]]
        self.pos += self.model_batch
        ids, mask, keep = window_batch(chunk)
        with torch.no_grad():
            acts = self.tap.run(self.model, input_ids=ids.to(self.device),
                                attention_mask=mask.to(self.device))
        self.buffer.append(acts[keep.to(self.device)].float().cpu())
        self.buffered += self.buffer[-1].shape[0]
        if self.buffered >= 8 * self.batch_tokens:
            flat = torch.cat(self.buffer)
            self.ready = flat[torch.randperm(flat.shape[0], generator=self.gen)]
            self.n_full = flat.shape[0] // self.batch_tokens * self.batch_tokens
            self.next_row = 0

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "order": self.order, "pos": self.pos,
                "buffer": torch.cat(self.buffer) if self.buffer else None,
                "buffered": self.buffered, "ready": self.ready, "next_row": self.next_row,
                "n_full": self.n_full, "yielded": self.yielded}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.order, self.pos = state["order"], state["pos"]
        self.buffer = [] if state["buffer"] is None else [state["buffer"]]
        self.buffered, self.ready = state["buffered"], state["ready"]
        self.next_row, self.n_full, self.yielded = (state["next_row"], state["n_full"],
                                                    state["yielded"])


def activation_batches(model, layer: int, windows: list[tuple[list[int], int]], *,
                       batch_tokens: int, total_tokens: int, model_batch: int, seed: int,
                       device: str) -> ActivationStream:
    """The activation batches of ``ActivationStream`` (see there)."""
    return ActivationStream(model, layer, windows, batch_tokens=batch_tokens,
                            total_tokens=total_tokens, model_batch=model_batch, seed=seed,
                            device=device)


@torch.no_grad()
def layer_residuals(model, layer: int, windows: list[tuple[list[int], int]], *,
                    model_batch: int, device: str) -> torch.Tensor:
    """Residual-stream rows at ``layer`` of the encoded positions of ``windows``, in window
    order, float32 on the CPU: one pass of the model (stopped after the layer)."""
    from stsflow.models.tap import LayerTap

    tap = LayerTap(model, layer)
    rows = []
    for start in range(0, len(windows), model_batch):
        ids, mask, keep = window_batch(windows[start:start + model_batch])
        acts = tap.run(model, input_ids=ids.to(device), attention_mask=mask.to(device))
        rows.append(acts[keep.to(device)].float().cpu())
    return torch.cat(rows)


def covering_windows(windows: list[tuple[list[int], int]], tokens: int, seed: int) -> list[int]:
    """Indices of windows, in a seeded order, until their encoded positions reach ``tokens``
    (every window when they hold fewer): the windows whose residuals train an SAE."""
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen, total = [], 0
    for i in order:
        if total >= tokens:
            break
        chosen.append(i)
        total += len(windows[i][0]) - windows[i][1]
    return chosen


class ResidualStream:
    """Batches of ``batch_tokens`` rows of ``acts`` (residuals kept in memory), every pass over
    them in a fresh seeded order, until ``total_tokens`` rows have been yielded. ``state_dict``
    holds where the stream is, so that an interrupted SAE training goes on with the very batches
    it would have read (as ``ActivationStream``)."""

    def __init__(self, acts: torch.Tensor, *, batch_tokens: int, total_tokens: int, seed: int):
        if acts.shape[0] < batch_tokens:
            raise ValueError(f"{acts.shape[0]} residual rows, fewer than one batch of "
                             f"{batch_tokens}")
        self.acts, self.batch_tokens, self.total = acts, batch_tokens, total_tokens
        self.gen = torch.Generator().manual_seed(seed)
        self.order: torch.Tensor | None = None
        self.pos = 0
        self.yielded = 0

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self.yielded >= self.total:
            raise StopIteration
        if self.order is None or self.pos + self.batch_tokens > self.acts.shape[0]:
            self.order = torch.randperm(self.acts.shape[0], generator=self.gen)
            self.pos = 0
        out = self.acts[self.order[self.pos:self.pos + self.batch_tokens]]
        self.pos += self.batch_tokens
        self.yielded += self.batch_tokens
        return out

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "order": self.order, "pos": self.pos,
                "yielded": self.yielded}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.order, self.pos, self.yielded = state["order"], state["pos"], state["yielded"]


def residual_batches(acts: torch.Tensor, *, batch_tokens: int, total_tokens: int,
                     seed: int) -> ResidualStream:
    """The batches of ``ResidualStream`` (see there)."""
    return ResidualStream(acts, batch_tokens=batch_tokens, total_tokens=total_tokens, seed=seed)
