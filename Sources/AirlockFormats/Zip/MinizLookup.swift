/// A replay of how miniz 3.0.2 finds a member by name (`mz_zip_reader_locate_file(zip, name, NULL, 0)`, which is
/// what `PyTorchStreamReader::getRecordID` calls): at open, the central records are heap-sorted by name with ASCII
/// case folded (`mz_zip_reader_sort_central_dir_offsets_by_filename`, not stable); a lookup is a binary search over
/// that order with the same case-insensitive comparison, returning the first match it lands on. With duplicate names
/// (or names equal up to case) the record returned therefore depends on the count and the order of all names.
enum MinizLookup {
    @inline(__always)
    static func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c + 0x20 : c }

    /// `mz_zip_reader_filename_less`.
    static func less(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        let n = min(a.count, b.count)
        var i = 0
        var l: UInt8 = 0, r: UInt8 = 0
        while i < n {
            l = lower(a[i])
            r = lower(b[i])
            if l != r { break }
            i += 1
        }
        return i == n ? a.count < b.count : l < r
    }

    /// `mz_zip_filename_compare`: the sign of (stored name − query).
    static func compare(_ stored: [UInt8], _ query: [UInt8]) -> Int {
        let n = min(stored.count, query.count)
        var i = 0
        var l: UInt8 = 0, r: UInt8 = 0
        while i < n {
            l = lower(stored[i])
            r = lower(query[i])
            if l != r { break }
            i += 1
        }
        return i == n ? stored.count - query.count : Int(l) - Int(r)
    }

    /// The order miniz's heap sort leaves the records in.
    static func sortedOrder(_ names: [[UInt8]]) -> [Int] {
        let size = names.count
        var idx = Array(0..<size)
        guard size > 1 else { return idx }
        func siftDown(_ root0: Int, _ end: Int) {
            var root = root0
            while true {
                var child = root * 2 + 1
                if child >= end { break }
                if child + 1 < end && less(names[idx[child]], names[idx[child + 1]]) { child += 1 }
                if !less(names[idx[root]], names[idx[child]]) { break }
                idx.swapAt(root, child)
                root = child
            }
        }
        var start = (size - 2) >> 1
        while true {
            siftDown(start, size)
            if start == 0 { break }
            start -= 1
        }
        var end = size - 1
        while end > 0 {
            idx.swapAt(end, 0)
            siftDown(0, end)
            end -= 1
        }
        return idx
    }

    /// `mz_zip_locate_file_binary_search`. A C string cannot hold NUL: the query stops at the first one.
    static func locate(_ query: [UInt8], names: [[UInt8]], order: [Int]) -> Int? {
        guard order.count == names.count else { return nil }
        return locate(query, count: names.count, order: order) { names[$0] }
    }

    /// `locate` over any collection of names (no copy of them).
    static func locate(_ query0: [UInt8], count: Int, order: [Int], name: (Int) -> [UInt8]) -> Int? {
        let query = pythonName(query0)
        guard !order.isEmpty, order.count == count else { return nil }
        var l = 0, h = order.count - 1
        while l <= h {
            let m = l + (h - l) >> 1
            let index = order[m]
            let c = compare(name(index), query)
            if c == 0 { return index }
            if c < 0 { l = m + 1 } else { h = m - 1 }
        }
        return nil
    }
}
