"""Checks exported ONNX files with the reference tools: onnx.checker (full_check, i.e. with shape
inference) and, when installed, an onnxruntime-python session. Prints one JSON line per file.

    .venv/bin/python scripts/reference/check_onnx.py model.onnx [more.onnx ...]

Exit status 1 if any file fails. Used by tests/it/export.rs when a Python with `onnx` is found.
"""
import json, sys
import onnx


def main():
    bad = 0
    for path in sys.argv[1:]:
        out = {"file": path}
        try:
            m = onnx.load(path)
            onnx.checker.check_model(m, full_check=True)
            out.update(ir_version=m.ir_version, opsets={o.domain: o.version for o in m.opset_import},
                       inputs=[i.name for i in m.graph.input], outputs=[o.name for o in m.graph.output],
                       nodes=[n.op_type for n in m.graph.node],
                       metadata={p.key: p.value for p in m.metadata_props}, checker="ok")
            try:
                import onnxruntime as ort
                s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                out["onnxruntime"] = {o.name: o.shape for o in s.get_outputs()}
            except ImportError:
                out["onnxruntime"] = "not installed"
        except Exception as e:  # report every file, then fail
            out["error"] = f"{type(e).__name__}: {e}"[:500]
            bad += 1
        print(json.dumps(out))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
