"""The local OpenAI-compatible inference server (vLLM on GPU hosts, CPU engines elsewhere)."""

__all__: list[str] = []
