"""A tiny ONNX model (3 inputs -> 2 outputs) proven with EZKL, and an Infernet container
that serves it with proofs. Everything, the structured reference string included, is made
locally; nothing is downloaded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intentmesh.testing import FakeRequest, FakeResponse, LoopbackServer

LOGROWS = 12
_PROVER = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # ezkl prefers one thread
_PROOFS: dict[tuple[str, str], tuple[dict[str, Any], list[list[float]]]] = {}
WEIGHTS = [[0.5, 0.125], [-0.25, 1.0], [0.75, 0.5]]
BIAS = [0.1, -0.2]


@dataclass(frozen=True)
class Circuit:
    dir: Path
    model: Path
    compiled: Path
    settings: Path
    vk: Path
    pk: Path
    srs: Path


def build_circuit(where: Path) -> Circuit:
    import ezkl
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array(WEIGHTS, dtype=np.float32), "W")
    b = numpy_helper.from_array(np.array(BIAS, dtype=np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    c = Circuit(
        where,
        where / "model.onnx",
        where / "model.ezkl",
        where / "settings.json",
        where / "vk.key",
        where / "pk.key",
        where / "kzg.srs",
    )
    onnx.save(model, c.model)
    args = ezkl.PyRunArgs()
    args.input_visibility, args.output_visibility, args.param_visibility = (
        "public",
        "public",
        "fixed",
    )
    args.logrows, args.input_scale, args.param_scale = LOGROWS, 4, 4
    assert ezkl.gen_settings(str(c.model), str(c.settings), py_run_args=args)
    assert ezkl.compile_circuit(str(c.model), str(c.compiled), str(c.settings))
    ezkl.gen_srs(str(c.srs), LOGROWS)
    assert ezkl.setup(str(c.compiled), str(c.vk), str(c.pk), str(c.srs))
    return c


def prove(c: Circuit, inputs: list[list[float]]) -> tuple[dict[str, Any], list[list[float]]]:
    """(proof JSON, the proven outputs as floats)."""
    import ezkl

    with tempfile.TemporaryDirectory() as tmp:
        data, witness, proof = (Path(tmp) / n for n in ("in.json", "w.json", "p.json"))
        data.write_text(json.dumps({"input_data": inputs}))
        ezkl.gen_witness(str(data), str(c.compiled), str(witness))
        ezkl.prove(str(witness), str(c.compiled), str(c.pk), str(proof), str(c.srs))
        doc = json.loads(proof.read_text())
    outputs = [[float(x) for x in row] for row in doc["pretty_public_inputs"]["rescaled_outputs"]]
    return doc, outputs


class EzklContainer(LoopbackServer):
    """``POST /service_output`` with ``{"text": "{\\"input\\": [[...]]}"}`` (the ``tgi`` style)
    answers ``{"output": "<outputs JSON>", "proof": ..., "inputs", "outputs"}``.

    ``mode``: ``honest``, ``tamper`` (a flipped byte in the proof), ``lie`` (a valid proof,
    other numbers in the answer), ``other_input`` (a valid proof of a different input).
    """

    def __init__(self, circuit: Circuit, mode: str = "honest") -> None:
        super().__init__()
        self.circuit = circuit
        self.mode = mode

    async def handle(self, request: FakeRequest) -> FakeResponse:
        body = request.json()
        inputs = json.loads(body["data"]["text"])["input"]
        if self.mode == "other_input":
            inputs = [[x + 0.5 for x in row] for row in inputs]
        key = (str(self.circuit.dir), json.dumps(inputs))
        if key not in _PROOFS:
            loop = asyncio.get_running_loop()
            _PROOFS[key] = await loop.run_in_executor(_PROVER, prove, self.circuit, inputs)
        proof, outputs = _PROOFS[key]
        proof = json.loads(json.dumps(proof))
        if self.mode == "tamper":
            hex_proof = proof["hex_proof"]
            flipped = "1" if hex_proof[100] != "1" else "2"
            proof["hex_proof"] = hex_proof[:100] + flipped + hex_proof[101:]
            proof["proof"] = list(bytes.fromhex(proof["hex_proof"].removeprefix("0x")))
        shown = [[x + 1.0 for x in row] for row in outputs] if self.mode == "lie" else outputs
        reply = {
            "output": json.dumps(shown),
            "proof": proof if body.get("requires_proof") else None,
            "proof_system": "ezkl",
            "inputs": inputs,
            "outputs": outputs,
        }
        return FakeResponse.json(reply)
