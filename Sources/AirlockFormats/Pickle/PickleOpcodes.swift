/// Pickle opcodes (protocols 0–5), as in CPython's `pickle.py`.
enum Op {
    static let MARK: UInt8 = 0x28  // (
    static let STOP: UInt8 = 0x2E  // .
    static let POP: UInt8 = 0x30  // 0
    static let POP_MARK: UInt8 = 0x31  // 1
    static let DUP: UInt8 = 0x32  // 2
    static let FLOAT: UInt8 = 0x46  // F
    static let INT: UInt8 = 0x49  // I
    static let BININT: UInt8 = 0x4A  // J
    static let BININT1: UInt8 = 0x4B  // K
    static let LONG: UInt8 = 0x4C  // L
    static let BININT2: UInt8 = 0x4D  // M
    static let NONE: UInt8 = 0x4E  // N
    static let PERSID: UInt8 = 0x50  // P
    static let BINPERSID: UInt8 = 0x51  // Q
    static let REDUCE: UInt8 = 0x52  // R
    static let STRING: UInt8 = 0x53  // S
    static let BINSTRING: UInt8 = 0x54  // T
    static let SHORT_BINSTRING: UInt8 = 0x55  // U
    static let UNICODE: UInt8 = 0x56  // V
    static let BINUNICODE: UInt8 = 0x58  // X
    static let APPEND: UInt8 = 0x61  // a
    static let BUILD: UInt8 = 0x62  // b
    static let GLOBAL: UInt8 = 0x63  // c
    static let DICT: UInt8 = 0x64  // d
    static let EMPTY_DICT: UInt8 = 0x7D  // }
    static let APPENDS: UInt8 = 0x65  // e
    static let GET: UInt8 = 0x67  // g
    static let BINGET: UInt8 = 0x68  // h
    static let INST: UInt8 = 0x69  // i
    static let LONG_BINGET: UInt8 = 0x6A  // j
    static let LIST: UInt8 = 0x6C  // l
    static let EMPTY_LIST: UInt8 = 0x5D  // ]
    static let OBJ: UInt8 = 0x6F  // o
    static let PUT: UInt8 = 0x70  // p
    static let BINPUT: UInt8 = 0x71  // q
    static let LONG_BINPUT: UInt8 = 0x72  // r
    static let SETITEM: UInt8 = 0x73  // s
    static let TUPLE: UInt8 = 0x74  // t
    static let EMPTY_TUPLE: UInt8 = 0x29  // )
    static let SETITEMS: UInt8 = 0x75  // u
    static let BINFLOAT: UInt8 = 0x47  // G
    // protocol 2
    static let PROTO: UInt8 = 0x80
    static let NEWOBJ: UInt8 = 0x81
    static let EXT1: UInt8 = 0x82
    static let EXT2: UInt8 = 0x83
    static let EXT4: UInt8 = 0x84
    static let TUPLE1: UInt8 = 0x85
    static let TUPLE2: UInt8 = 0x86
    static let TUPLE3: UInt8 = 0x87
    static let NEWTRUE: UInt8 = 0x88
    static let NEWFALSE: UInt8 = 0x89
    static let LONG1: UInt8 = 0x8A
    static let LONG4: UInt8 = 0x8B
    // protocol 3
    static let BINBYTES: UInt8 = 0x42  // B
    static let SHORT_BINBYTES: UInt8 = 0x43  // C
    // protocol 4
    static let SHORT_BINUNICODE: UInt8 = 0x8C
    static let BINUNICODE8: UInt8 = 0x8D
    static let BINBYTES8: UInt8 = 0x8E
    static let EMPTY_SET: UInt8 = 0x8F
    static let ADDITEMS: UInt8 = 0x90
    static let FROZENSET: UInt8 = 0x91
    static let NEWOBJ_EX: UInt8 = 0x92
    static let STACK_GLOBAL: UInt8 = 0x93
    static let MEMOIZE: UInt8 = 0x94
    static let FRAME: UInt8 = 0x95
    // protocol 5
    static let BYTEARRAY8: UInt8 = 0x96
    static let NEXT_BUFFER: UInt8 = 0x97
    static let READONLY_BUFFER: UInt8 = 0x98

    /// The opcode's name, or `0xNN` for bytes that are not opcodes.
    static func name(_ op: UInt8) -> String {
        switch op {
        case MARK: "MARK"
        case STOP: "STOP"
        case POP: "POP"
        case POP_MARK: "POP_MARK"
        case DUP: "DUP"
        case FLOAT: "FLOAT"
        case INT: "INT"
        case BININT: "BININT"
        case BININT1: "BININT1"
        case LONG: "LONG"
        case BININT2: "BININT2"
        case NONE: "NONE"
        case PERSID: "PERSID"
        case BINPERSID: "BINPERSID"
        case REDUCE: "REDUCE"
        case STRING: "STRING"
        case BINSTRING: "BINSTRING"
        case SHORT_BINSTRING: "SHORT_BINSTRING"
        case UNICODE: "UNICODE"
        case BINUNICODE: "BINUNICODE"
        case APPEND: "APPEND"
        case BUILD: "BUILD"
        case GLOBAL: "GLOBAL"
        case DICT: "DICT"
        case EMPTY_DICT: "EMPTY_DICT"
        case APPENDS: "APPENDS"
        case GET: "GET"
        case BINGET: "BINGET"
        case INST: "INST"
        case LONG_BINGET: "LONG_BINGET"
        case LIST: "LIST"
        case EMPTY_LIST: "EMPTY_LIST"
        case OBJ: "OBJ"
        case PUT: "PUT"
        case BINPUT: "BINPUT"
        case LONG_BINPUT: "LONG_BINPUT"
        case SETITEM: "SETITEM"
        case TUPLE: "TUPLE"
        case EMPTY_TUPLE: "EMPTY_TUPLE"
        case SETITEMS: "SETITEMS"
        case BINFLOAT: "BINFLOAT"
        case PROTO: "PROTO"
        case NEWOBJ: "NEWOBJ"
        case EXT1: "EXT1"
        case EXT2: "EXT2"
        case EXT4: "EXT4"
        case TUPLE1: "TUPLE1"
        case TUPLE2: "TUPLE2"
        case TUPLE3: "TUPLE3"
        case NEWTRUE: "NEWTRUE"
        case NEWFALSE: "NEWFALSE"
        case LONG1: "LONG1"
        case LONG4: "LONG4"
        case BINBYTES: "BINBYTES"
        case SHORT_BINBYTES: "SHORT_BINBYTES"
        case SHORT_BINUNICODE: "SHORT_BINUNICODE"
        case BINUNICODE8: "BINUNICODE8"
        case BINBYTES8: "BINBYTES8"
        case EMPTY_SET: "EMPTY_SET"
        case ADDITEMS: "ADDITEMS"
        case FROZENSET: "FROZENSET"
        case NEWOBJ_EX: "NEWOBJ_EX"
        case STACK_GLOBAL: "STACK_GLOBAL"
        case MEMOIZE: "MEMOIZE"
        case FRAME: "FRAME"
        case BYTEARRAY8: "BYTEARRAY8"
        case NEXT_BUFFER: "NEXT_BUFFER"
        case READONLY_BUFFER: "READONLY_BUFFER"
        default: "0x" + hex2(op)
        }
    }

    static func hex2(_ b: UInt8) -> String {
        let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }
}
