"""Token segments of a prompt: head, demonstration turns, query, response.

STS compares a query's SAE features with and without demonstrations in front of it. The two runs
must see the *same* query token ids, so prompts are never tokenized as one string: each part is
tokenized on its own and the ids are concatenated (docs/method.md#query-alignment).

    plain input = head + query
    ICL input   = head + demo_1 + ... + demo_t + query

With a chat template, `head` is what the template puts before the first turn (BOS, a default system
prompt), each demonstration is a rendered user+assistant exchange, and the query is the rendered
user turn plus the generation prompt. The turn texts are recovered from the template itself by
rendering growing conversations and taking differences, so any template whose renderings of a
conversation's prefixes are prefixes of each other works (ChatML, Llama 3, Gemma).
Without a chat template, a plain "question / answer" layout is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from stsflow.text.prompts import assistant_text, user_text

_S1, _S2, _S3 = "\x00STS-U1\x00", "\x00STS-A1\x00", "\x00STS-U2\x00"


@dataclass(frozen=True)
class Layout:
    """Text pieces that surround user and assistant contents."""

    head: str
    user_open: str
    user_close_and_gen: str  # end of a user turn + generation prompt
    assistant_close: str  # end of an assistant turn (its opening is in user_close_and_gen)


def chat_layout(tokenizer) -> Layout:
    """Derive the layout of a tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("tokenizer has no chat_template; set chat_template: false for this model")

    def render(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    one = [{"role": "user", "content": _S1}]
    three = one + [{"role": "assistant", "content": _S2}, {"role": "user", "content": _S3}]
    r1 = render(one, True)
    r2 = render(one + three[1:2], False)
    r3 = render(three, True)
    if not r3.startswith(r2[: r2.index(_S2)]):
        raise ValueError("chat template renders prefixes inconsistently; use chat_template: false")
    third = r3[len(r2):]  # the final user turn with its generation prompt
    user_open = third[: third.index(_S3)]
    user_close_and_gen = third[third.index(_S3) + len(_S3):]
    head = r1[: r1.index(_S1) - len(user_open)] if r1[: r1.index(_S1)].endswith(user_open) else ""
    assistant_close = r2[r2.index(_S2) + len(_S2):]
    return Layout(head, user_open, user_close_and_gen, assistant_close)


def plain_layout(tokenizer) -> Layout:
    bos = tokenizer.bos_token if getattr(tokenizer, "bos_token", None) else ""
    return Layout(head=bos, user_open="", user_close_and_gen="\n", assistant_close="\n\n")


@dataclass
class Segmenter:
    """Turns records into token-id segments for one tokenizer and layout."""

    tokenizer: object
    layout: Layout

    @classmethod
    def for_tokenizer(cls, tokenizer, use_chat_template: bool) -> "Segmenter":
        layout = chat_layout(tokenizer) if use_chat_template else plain_layout(tokenizer)
        return cls(tokenizer, layout)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def head(self) -> list[int]:
        return self._ids(self.layout.head)

    def query(self, record: dict, kind: str) -> list[int]:
        lay = self.layout
        return self._ids(lay.user_open + user_text(record, kind) + lay.user_close_and_gen)

    def query_parts(self, record: dict, kind: str) -> tuple[list[int], list[bool]]:
        """The query's ids (exactly ``query``) and, per token, whether it belongs to the user's
        text rather than the template's scaffolding around it (``<|im_start|>user\n`` …
        ``<|im_end|>\n<|im_start|>assistant\n``). Found from the tokenizer's character offsets,
        so the ids are those of one tokenization of the whole turn; a token that straddles the
        boundary counts as content if any of its characters is content."""
        lay = self.layout
        content = user_text(record, kind)
        text = lay.user_open + content + lay.user_close_and_gen
        try:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError as exc:  # slow (Python) tokenizers have no offsets
            raise ValueError("this tokenizer gives no character offsets, so the query's own "
                             "tokens cannot be told from the template's; set "
                             "sts.query_tokens: turn") from exc
        lo, hi = len(lay.user_open), len(lay.user_open) + len(content)
        counted = [bool(e > lo and s < hi) for s, e in enc["offset_mapping"]]
        return list(enc["input_ids"]), counted

    def response(self, record: dict, kind: str) -> list[int]:
        return self._ids(assistant_text(record, kind) + self.layout.assistant_close)

    def demo(self, record: dict, kind: str) -> list[int]:
        return self.query(record, kind) + self.response(record, kind)

    def context(self, demos: list[dict], kind: str) -> list[int]:
        """head + all demonstrations: the prefix shared by every ICL query."""
        ids = self.head()
        for d in demos:
            ids += self.demo(d, kind)
        return ids
