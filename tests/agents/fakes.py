"""Deterministic, offline tool-calling chat models for the agent corpus.

:class:`ScriptedChatModel` answers each call with the next scripted :class:`AIMessage`
(with or without ``tool_calls``). It supports ``bind_tools`` (prebuilt agents call it;
the bound model is the same script), and streams a scripted answer as tokens plus one
chunk carrying the tool calls, so ``stream_mode="messages"`` sees tokens and the
streamed message still holds its tool calls (``GenericFakeChatModel`` drops them).

A script is consumed in order: a bare graph and an instrumented graph each build their
own model from the same script, so running the same inputs in the same order makes
the same calls. A model whose script runs out raises :class:`ScriptExhausted` (a test
bug, never a graph behaviour worth counting).

Usage::

    model = ScriptedChatModel.of(
        call("search", {"q": "x"}),   # an AIMessage with one tool call
        say("done"),                  # a plain answer: the agent stops
    )
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

__all__ = ["ScriptExhausted", "ScriptedChatModel", "call", "calls", "say"]

_IDS = itertools.count()


class ScriptExhausted(RuntimeError):
    """The model was called more often than its script allows (the test is wrong)."""


def say(text: str) -> AIMessage:
    """Return a scripted plain answer (no tool call: an agent stops after it)."""
    return AIMessage(content=text)


def call(name: str, args: dict[str, Any] | None = None, text: str = "") -> AIMessage:
    """Return a scripted answer that calls one tool."""
    return calls((name, args or {}), text=text)


def calls(*tools: tuple[str, dict[str, Any]], text: str = "") -> AIMessage:
    """Return a scripted answer calling several tools (in one message)."""
    return AIMessage(
        content=text,
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{name}_{i}", "type": "tool_call"}
            for i, (name, args) in enumerate(tools)
        ],
    )


class ScriptedChatModel(GenericFakeChatModel):
    """A chat model that replays a script of AIMessages; ``bind_tools`` returns itself."""

    script_name: str = "model"

    @classmethod
    def of(cls, *answers: AIMessage, name: str = "model") -> ScriptedChatModel:
        """Return a model answering with ``answers`` in order (copied, so scripts are reusable)."""
        return cls(messages=iter([a.model_copy(deep=True) for a in answers]), script_name=name)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            message = next(self.messages)
        except StopIteration:
            raise ScriptExhausted(f"{self.script_name}: script exhausted") from None
        message_ = AIMessage(content=message) if isinstance(message, str) else message
        return ChatResult(generations=[ChatGeneration(message=message_)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._generate(messages, stop=stop, **kwargs).generations[0].message
        assert isinstance(message, AIMessage)
        content = message.content if isinstance(message.content, str) else ""
        tokens = [t for t in re.split(r"(\s)", content) if t] if content else []
        for token in tokens:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token, id=message.id))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
        if message.tool_calls or not tokens:
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    id=message.id,
                    tool_call_chunks=[
                        {
                            "name": tc["name"],
                            "args": json.dumps(tc["args"]),
                            "id": tc["id"],
                            "index": i,
                            "type": "tool_call_chunk",
                        }
                        for i, tc in enumerate(message.tool_calls)
                    ],
                    chunk_position="last",
                )
            )
            if run_manager:
                run_manager.on_llm_new_token("", chunk=chunk)
            yield chunk

    @property
    def _llm_type(self) -> str:
        return "scripted-fake-chat-model"
