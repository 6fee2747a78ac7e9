"""Load one model file for repeated timing: one function per local runtime.

These run inside the measuring subprocess, so each imports its runtime only when called (the
onnxruntime worker never imports torch: it starts in 0.2 s instead of 1.5 s). A runner is a
zero-argument callable that performs one inference on a fixed random input of batch 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Runner = Callable[[], object]


def _input(shape: Sequence[int]) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(tuple(shape)).astype(np.float32)


def onnxruntime_runner(path: str, input_shape: Sequence[int], threads: int = 1) -> Runner:
    """ONNX Runtime, CPU: `threads` intra-op threads, one inter-op thread, sequential, full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: _input(input_shape)}
    return lambda: session.run(None, feed)


def torch_runner(path: str, input_shape: Sequence[int], threads: int = 1) -> Runner:
    """PyTorch eager on the CPU with `threads` threads; the module was saved whole with torch.save."""
    import torch

    torch.set_num_threads(threads)
    model = torch.load(path, weights_only=False, map_location="cpu")
    model.eval()
    x = torch.from_numpy(_input(input_shape))

    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def litert_runner(path: str, input_shape: Sequence[int], threads: int = 1) -> Runner:
    """The LiteRT (TFLite) interpreter with its default XNNPACK CPU delegate, `threads` threads."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], _input(detail["shape"]))
    return interpreter.invoke


RUNNERS: dict[str, Callable[[str, Sequence[int], int], Runner]] = {
    "onnxruntime": onnxruntime_runner,
    "torch": torch_runner,
    "litert": litert_runner,
}
