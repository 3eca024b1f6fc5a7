@testable import AirlockFormats
import Testing

/// TorchScript source as `torch.jit.save` writes it, and as an attacker would write it by hand.
@Suite("TorchScript code")
struct TorchScriptCodeTests {
    static let member = "m/code/__torch__/torch/nn/modules/linear.py"

    static func scan(_ source: String) -> TorchScriptCodeReport {
        TorchScriptCode.scan(ByteView(Array(source.utf8)), member: member)
    }

    @Test("torch.jit.save's own code: classes found, operators listed, nothing flagged")
    func benign() {
        let r = Self.scan(
            """
            class Linear(Module):
              __parameters__ = ["weight", "bias", ]
              in_features : Final[int] = 4
              def forward(self: __torch__.torch.nn.modules.linear.Linear,
                input: Tensor) -> Tensor:
                _0 = ops.prim.NumToTensor(torch.size(input, 0))
                for _1 in range(4):
                  input = torch.relu(input)
                return torch.linear(input, self.weight, self.bias)
            class Helper(NamedTuple):
              x : int
            """)
        #expect(r.observations.isEmpty, "\(r.observations)")
        #expect(r.classes == ["__torch__.torch.nn.modules.linear.Linear", "__torch__.torch.nn.modules.linear.Helper"])
        #expect(r.ops == ["prim::NumToTensor"])
        #expect(r.torchCalls == ["size", "relu", "linear"])
    }

    @Test(
        "what reaches past tensors is flagged however it is spelled",
        arguments: [
            ("t = torch.from_file(\"/etc/hostname\", None, 4, dtype=0)", "torchscript.dangerous-op"),
            ("t = torch . from_file(\"/etc/shadow\")", "torchscript.dangerous-op"),
            ("t = torch.\\\n   from_file(\"/x\")", "torchscript.dangerous-op"),
            ("t = ops.aten.from_file(\"/x\")", "torchscript.dangerous-op"),
            ("t = torch.ops.aten.from_file.default(\"/x\")", "torchscript.dangerous-op"),
            ("torch.ops.load_library(\"/tmp/x.so\")", "torchscript.dangerous-op"),
            ("torch.save(x, \"/home/u/.bashrc\")", "torchscript.dangerous-op"),
            ("_0 = getattr(torch, \"save\")(x, \"/tmp/x\")", "torchscript.dangerous-op"),
            ("_0 = getattr(torch . ops . aten, \"from_file\")(\"/x\")", "torchscript.dangerous-op"),
            ("_0 = getattr(getattr(torch, \"serialization\"), \"save\")(x, \"/x\")", "torchscript.risky-op"),
            ("s = \"aten::save\"", "torchscript.dangerous-op"),
            ("y = torch.ops.evil.run(x)", "torchscript.custom-op"),
            ("y = ops.my_ns.op(x)", "torchscript.custom-op"),
            ("c = torch.classes.evil.Shell()", "torchscript.custom-class"),
            ("a : __torch__.torch.classes.evil.Shell", "torchscript.custom-class"),
            ("for i in range(10000000000):\n  x = x + 1", "torchscript.huge-loop"),
            ("for i in range(0x7fffffff_ffffffff):\n  pass", "torchscript.huge-loop"),
            ("while True:\n  x = x + 1", "torchscript.endless-loop"),
            ("while 1:\n  pass", "torchscript.endless-loop"),
            ("name = \"aten::from_file\"", "torchscript.dangerous-op"),
            ("x = \"never closed", "torchscript.unreadable"),
        ])
    func flagged(source: String, kind: String) {
        let r = Self.scan("def forward(self, x: Tensor) -> Tensor:\n  " + source + "\n  return x\n")
        #expect(r.observations.map(\.kind).contains(kind), "\(r.observations.map(\.kind))")
        let line = r.observations.first { $0.kind == kind }?.evidence.details.first { $0.0 == "line" }?.1
        #expect(line.flatMap(Int.init).map { $0 >= 2 } == true)
        #expect(r.observations.allSatisfy { $0.evidence.member == Self.member })
    }

    @Test("comments, other strings and quantized classes are not flagged")
    func quiet() {
        let r = Self.scan(
            """
            def forward(self, x: Tensor) -> Tensor:
              # torch.from_file would read a file; this comment does not
              s = "torch.from_file is only text here, not an operator name on its own"
              p : __torch__.torch.classes.quantized.LinearPackedParamsBase = self.packed
              y = ops.quantized.linear(x, p, 1.0, 0)
              for i in range(1000):
                y = torch.add(y, 1)
              return y
            """)
        #expect(r.observations.isEmpty, "\(r.observations)")
    }

    @Test("any bytes are bounded: NULs, endless strings, huge identifiers")
    func bounded() {
        for bytes in [
            [UInt8](repeating: 0x61, count: 1 << 20), [0x22] + [UInt8](repeating: 0x5C, count: 100_001),
            [0x74, 0x2E, 0x00, 0x66], Array("'''".utf8) + [UInt8](repeating: 0x0A, count: 10_000),
        ] {
            _ = TorchScriptCode.scan(ByteView(bytes), member: "code/x.py")
        }
        #expect(TorchScriptCode.moduleName("a/code/__torch__.py") == "__torch__")
        #expect(TorchScriptCode.moduleName("a/b/c.py") == nil)
    }
}
